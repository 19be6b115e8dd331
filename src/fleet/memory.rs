//! A gateway in memory for the fleet's tests and bench: the userspace engine with its config
//! swapped atomically, and nothing attached. Its apply does what a running gateway's does short
//! of the kernel: the same refusals (another gateway's config, changed ports), the engine's
//! validation, the table build, a new version.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use dataplane::{
    Config,
    engine::{Engine, Iface},
};
use hutong_fleet::{
    agent::{Applied, Gateway, Refused},
    records::Health,
};

pub struct MemoryGateway {
    engine: Mutex<Engine>,
    running: Mutex<Config>,
    version: AtomicU64,
    applies: AtomicU64,
    /// Drops by reason, as a test sets them (nothing forwards here).
    drops: Mutex<BTreeMap<String, u64>>,
}

impl MemoryGateway {
    /// A gateway running `config` (version 1).
    pub fn new(config: Config) -> Result<MemoryGateway, String> {
        let ifaces = config
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| Iface { name: p.key(), mac: [2, 0, 0, 0, 0, i as u8] })
            .collect();
        let engine = Engine::new(config.clone(), ifaces).map_err(|e| format!("{e:?}"))?;
        Ok(MemoryGateway {
            engine: Mutex::new(engine),
            running: Mutex::new(config),
            version: AtomicU64::new(1),
            applies: AtomicU64::new(0),
            drops: Mutex::new(BTreeMap::new()),
        })
    }

    /// The config it runs.
    pub fn running(&self) -> Config {
        self.running.lock().expect("not poisoned").clone()
    }

    /// Counts `n` drops for `reason`, as a gateway in trouble would (a test of a rollout's
    /// health gate).
    pub fn count_drops(&self, reason: &str, n: u64) {
        *self.drops.lock().expect("not poisoned").entry(reason.to_string()).or_default() += n;
    }

    /// How many applies changed something.
    pub fn applies(&self) -> u64 {
        self.applies.load(Ordering::Relaxed)
    }

    fn apply_now(&self, config: Config) -> Result<Applied, Vec<String>> {
        let mut running = self.running.lock().map_err(|_| vec!["poisoned".to_string()])?;
        if config.gateway != running.gateway {
            return Err(vec![format!(
                "gateway: this is gateway {}, not {}",
                running.gateway, config.gateway
            )]);
        }
        if config.ports != running.ports {
            return Err(vec!["ports: ports cannot change while the gateway runs".into()]);
        }
        if config == *running {
            return Ok(Applied { config_version: self.version.load(Ordering::Relaxed), changed: false });
        }
        let engine = self.engine.lock().map_err(|_| vec!["poisoned".to_string()])?;
        engine
            .swap(config.clone())
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        *running = config;
        self.applies.fetch_add(1, Ordering::Relaxed);
        Ok(Applied { config_version: self.version.fetch_add(1, Ordering::Relaxed) + 1, changed: true })
    }
}

impl Gateway for MemoryGateway {
    fn apply(&self, config: Config) -> Pin<Box<dyn Future<Output = Result<Applied, Refused>> + Send + '_>> {
        Box::pin(async move { self.apply_now(config).map_err(Refused::Errors) })
    }

    fn health(&self) -> Health {
        Health { received: 0, drops: self.drops.lock().expect("not poisoned").clone() }
    }
}
