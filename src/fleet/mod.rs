//! The gateway's side of the fleet: the agent (`hutong_fleet::agent`) applies through the
//! gateway's own change path, the one the agent API's `POST /v1/config` takes, so a config from
//! the store is staged, costed, installed atomically and recorded exactly like a local apply.

use std::{future::Future, pin::Pin, sync::Arc};

use dataplane::Config;
use hutong_common::Stat;
use hutong_fleet::{
    agent::{Applied, Gateway},
    records::Health,
};

use crate::api::{ApiState, Change, ChangeOutcome};

pub mod commands;
pub mod memory;

/// The fleet agent's view of a running gateway: its API state.
pub struct ApiGateway(pub Arc<ApiState>);

impl Gateway for ApiGateway {
    fn apply(
        &self,
        config: Config,
    ) -> Pin<Box<dyn Future<Output = Result<Applied, Vec<String>>> + Send + '_>> {
        Box::pin(async move {
            match self.0.submit(Change::Apply(Box::new(config))).await {
                Some(ChangeOutcome::Applied { running, changed }) => {
                    Ok(Applied { config_version: running.config_version, changed })
                }
                Some(ChangeOutcome::Invalid(errors)) => {
                    Err(errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect())
                }
                Some(
                    ChangeOutcome::Conflict(m) | ChangeOutcome::Failed(m) | ChangeOutcome::Unrecorded(m),
                ) => Err(vec![m]),
                None => Err(vec!["the gateway is stopping".into()]),
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
