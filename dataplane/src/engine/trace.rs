//! "Why did this packet go there?": the pipeline's decisions for one packet, stage by stage.

use std::fmt;

use super::{Engine, Iface};
use crate::{Config, ConfigError, buffer::Packet};

/// One stage's decision.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub stage: &'static str,
    pub decision: String,
}

impl Step {
    pub fn new(stage: &'static str, decision: String) -> Step {
        Step { stage, decision }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<10} {}", self.stage, self.decision)
    }
}

/// Runs `frame`, arriving on interface `iface`, through a fresh engine built from `config`, and
/// returns every decision in order. Offline there is no neighbor table, so a packet that would be
/// forwarded is traced to its egress with the next hop's MAC left unresolved (zero).
pub fn trace(config: &Config, iface: &str, frame: &[u8]) -> Result<Vec<Step>, Vec<ConfigError>> {
    let mut names: Vec<String> = Vec::new();
    for p in &config.ports {
        if !names.contains(&p.name) {
            names.push(p.name.clone());
        }
    }
    let ifaces = names.iter().map(|n| Iface { name: n.clone(), mac: [0; 6] }).collect();
    let mut engine = Engine::new(config.clone(), ifaces)?;
    engine.assume_neighbors = true;
    let Some(i) = engine.iface(iface) else {
        return Err(vec![ConfigError {
            path: "iface".into(),
            message: format!("the config has no interface {iface:?}"),
        }]);
    };
    let mut pkt = Packet::new(i, frame);
    Ok(engine.process_traced(&mut pkt, 0))
}
