//! "Why did this packet go there?": the pipeline's decisions for one packet, stage by stage.

use std::fmt;

use super::{Engine, Iface};
use crate::{Config, ConfigError, buffer::Packet};

/// One decision, by the pipeline stage that made it and what it looked at.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// The pipeline stage, named as its module is: `ingress`, `local`, `decide`, `forward`,
    /// `rewrite`, `icmp` (an error sent back), and the final `verdict`.
    pub pipeline: &'static str,
    /// What within it: parse, port, tunnel, host, ttl, nat, classify, translate, route, mtu,
    /// neighbor, ...
    pub stage: &'static str,
    pub decision: String,
}

impl Step {
    pub fn new(pipeline: &'static str, stage: &'static str, decision: String) -> Step {
        Step { pipeline, stage, decision }
    }
}

/// The pipeline stage of a step recorded in module `module` (a `module_path!()`): the stage
/// modules are named for their stages; the neighbor lookup is the forward stage's.
pub fn pipeline_of(module: &'static str) -> &'static str {
    match module.rsplit_once("::") {
        Some((_, "neighbors")) => "forward",
        Some((_, last)) => last,
        None => module,
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<8} {:<10} {}", self.pipeline, self.stage, self.decision)
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
