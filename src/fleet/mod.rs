//! The gateway's side of the fleet: the agent (`hutong_fleet::agent`) applies through the
//! gateway's own change path, the one the agent API's `POST /v1/config` takes, so a config from
//! the store is staged, costed, installed atomically and recorded exactly like a local apply.

use std::{future::Future, path::Path, pin::Pin, sync::Arc, time::Duration};

use anyhow::Result;

use dataplane::Config;
use hutong_common::Stat;
use hutong_fleet::{
    agent::{Applied, Gateway, Refused},
    records::Health,
};

use crate::{
    api::{ApiState, Change, ChangeOutcome},
    history::History,
};

pub mod commands;
pub mod memory;

/// The fleet agent's view of a running gateway: its API state.
pub struct ApiGateway(pub Arc<ApiState>);

impl Gateway for ApiGateway {
    fn apply(&self, config: Config) -> Pin<Box<dyn Future<Output = Result<Applied, Refused>> + Send + '_>> {
        Box::pin(async move {
            match self.0.submit(Change::Apply(Box::new(config))).await {
                Some(ChangeOutcome::Applied { running, changed }) => {
                    Ok(Applied { config_version: running.config_version, changed })
                }
                Some(ChangeOutcome::Invalid(errors)) => Err(Refused::Errors(
                    errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect(),
                )),
                Some(
                    ChangeOutcome::Conflict(m) | ChangeOutcome::Failed(m) | ChangeOutcome::Unrecorded(m),
                ) => Err(Refused::Errors(vec![m])),
                None => Err(Refused::Stopping),
            }
        })
    }

    fn health(&self) -> Health {
        let c = self.0.counters();
        let mut drops = std::collections::BTreeMap::new();
        for (name, n) in c.xdp.drops.iter().chain(c.slow.drops.iter()) {
            *drops.entry(name.to_string()).or_insert(0) += n;
        }
        Health { received: c.xdp.stat(Stat::Received), drops }
    }
}

/// The config a fleet gateway starts on: what it ran last (its state directory), so that a
/// restart forwards at once whether or not etcd answers; on a first start, its desired config
/// from etcd, waited for (with backoff) until there is one.
pub fn start_config(state_dir: &Path, agent: &hutong_fleet::agent::AgentOptions) -> Result<Config> {
    if state_dir.exists() {
        let history = History::open(state_dir)?;
        if let Some(v) = history.current() {
            let config = history.load(v)?;
            eprintln!(
                "hutong gateway {}: starting on config version {v} from {} (the agent reconciles with the fleet once running)",
                agent.gateway,
                state_dir.display()
            );
            return Ok(config);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut wait = Duration::from_secs(1);
    loop {
        match rt.block_on(hutong_fleet::agent::fetch_desired(&agent.endpoints, &agent.gateway)) {
            Ok(Some((push, config))) => {
                eprintln!("hutong gateway {}: first start, on push {push} from the fleet", agent.gateway);
                return Ok(config);
            }
            Ok(None) => eprintln!(
                "hutong gateway {}: first start, and the fleet has no config for it yet; waiting",
                agent.gateway
            ),
            Err(e) => eprintln!(
                "hutong gateway {}: first start, nothing applied before, and the fleet cannot be read ({e:#}); waiting",
                agent.gateway
            ),
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(agent.max_backoff);
    }
}
