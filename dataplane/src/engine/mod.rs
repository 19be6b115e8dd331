//! The userspace engine: the whole pipeline over batches of packets, driven only by a
//! [`Config`].
//!
//! ```text
//! parse ─► port (interface + VLAN → VRF) ─► host? (ARP, the gateway's own addresses)
//!       ─► TTL ─► classify (ordered rules, default deny) ─► translate (netmap | NPTv6 | none)
//!       ─► route (per-VRF LPM, ECMP) ─► MTU ─► neighbor ─► rewrite (addresses, ports, TTL,
//!          MACs, VLAN push/pop/retag, incremental checksums) ─► egress interface
//! ```
//! Every lookup happens before the first byte is rewritten, so a dropped packet is unmodified.
//! A batch runs against one [`Compiled`] snapshot: a config swapped in while a batch runs takes
//! effect with the next batch, so no packet sees half of each.

#![forbid(unsafe_code)]

/// Records one decision of a traced packet; nothing is formatted when the packet is not traced.
macro_rules! step {
    ($tr:expr, $stage:expr, $($fmt:tt)*) => {
        if let Some(s) = $tr.as_mut() {
            let pipeline = $crate::engine::trace::pipeline_of(module_path!());
            s.push($crate::engine::Step::new(pipeline, $stage, format!($($fmt)*)));
        }
    };
}

pub mod classify;
pub mod compiled;
pub mod counters;
mod decide;
mod forward;
mod fragments;
pub mod held;
pub mod icmp;
mod ingress;
mod local;
mod neighbors;
mod offload;
pub mod reorder;
mod rewrite;
pub mod steer;
pub mod trace;
pub mod translate;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use arc_swap::ArcSwap;
use hutong_common::Stat;

use crate::{
    Action, Config, ConfigError,
    buffer::{Packet, Verdict},
    nat::{self, Nat},
};
use classify::FlowKey;
pub use compiled::Compiled;
pub use counters::EngineCounters;
use icmp::RateLimit;
use neighbors::{NeighborKey, Neighbors};
pub use offload::Offload;
pub use trace::{Step, trace};

#[cfg(test)]
mod nat_tests;
#[cfg(test)]
mod tests;

/// Generated ICMP errors per second, and the burst allowed (RFC 1812 4.3.2.8).
const ICMP_PER_SECOND: u64 = 100;
const ICMP_BURST: u64 = 50;

/// An interface the engine sends and receives on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub mac: [u8; 6],
}

/// Where new configs are published; clone it to swap from another thread.
#[derive(Clone)]
pub struct ConfigHandle(Arc<ArcSwap<Compiled>>);

impl ConfigHandle {
    /// Validates and publishes `config`; running engines pick it up at their next batch.
    pub fn swap(&self, config: Config) -> Result<(), Vec<ConfigError>> {
        config.validate()?;
        let compiled = Compiled::after(config, &self.0.load());
        self.0.store(Arc::new(compiled));
        Ok(())
    }

    pub fn current(&self) -> Arc<Compiled> {
        self.0.load_full()
    }
}

pub struct Engine {
    shared: ConfigHandle,
    tables: Arc<Compiled>,
    ifaces: Vec<Iface>,
    /// Engine interface index → the compiled config's interface index, and back.
    to_compiled: Vec<Option<usize>>,
    from_compiled: Vec<Option<usize>>,
    neighbors: Neighbors,
    /// Next hops the pipeline missed since the last [`Engine::take_misses`]; bounded.
    misses: Vec<NeighborKey>,
    icmp: RateLimit,
    /// This worker's NAT sessions, port blocks and fragment memory.
    nat: Nat,
    worker: u32,
    workers: u32,
    pub counters: EngineCounters,
    /// For offline traces: forward even without a resolved neighbor (MAC left zero).
    assume_neighbors: bool,
    /// Decisions the XDP program may repeat, when tracked.
    offloads: Option<Vec<Offload>>,
    /// Grows whenever a new config is adopted: earlier offloads no longer hold.
    generation: u64,
    /// Packets waiting for their next hop, when turned on.
    held: Option<held::Held>,
    /// Later fragments waiting for their first fragment, when turned on (with `held`).
    reorder: Option<reorder::Waiting>,
    /// The fragment key of the packet `one` just refused as `fragment_unknown`, to hold it.
    unknown_fragment: Option<reorder::Key>,
    /// Datagrams whose first fragment was just translated: their waiting fragments go next.
    fragments_ready: Vec<reorder::Key>,
    /// Waiting fragments that went through once their first fragment came.
    released: Vec<Packet>,
    /// `one` is running a held fragment again: it was counted as received the first time.
    rerun: bool,
    /// `one` decapsulated the packet (GRE): a copy of it now is not what arrived.
    decapsulated: bool,
}

impl Engine {
    /// An engine on `ifaces` running `config` (validated here), as the only worker.
    pub fn new(config: Config, ifaces: Vec<Iface>) -> Result<Engine, Vec<ConfigError>> {
        Engine::new_worker(config, ifaces, 0, 1)
    }

    /// Worker `worker` of `workers`: it owns its share of every NAT pool's port blocks.
    pub fn new_worker(
        config: Config,
        ifaces: Vec<Iface>,
        worker: u32,
        workers: u32,
    ) -> Result<Engine, Vec<ConfigError>> {
        config.validate()?;
        let nat = Nat::new(&config, worker, workers);
        let compiled = Arc::new(Compiled::new(config));
        let shared = ConfigHandle(Arc::new(ArcSwap::new(compiled.clone())));
        let mut e = Engine {
            shared,
            tables: compiled.clone(),
            ifaces,
            to_compiled: Vec::new(),
            from_compiled: Vec::new(),
            neighbors: Neighbors::default(),
            misses: Vec::new(),
            icmp: RateLimit::new(ICMP_PER_SECOND, ICMP_BURST),
            nat,
            worker,
            workers,
            counters: EngineCounters::default(),
            assume_neighbors: false,
            offloads: None,
            generation: 0,
            held: None,
            reorder: None,
            unknown_fragment: None,
            fragments_ready: Vec::new(),
            released: Vec::new(),
            rerun: false,
            decapsulated: false,
        };
        e.adopt(compiled);
        Ok(e)
    }

    pub fn config_handle(&self) -> ConfigHandle {
        self.shared.clone()
    }

    /// Runs whatever config `handle` publishes from the next batch on: several workers share
    /// one handle, so one swap reaches them all.
    pub fn follow(&mut self, handle: ConfigHandle) {
        self.shared = handle;
    }

    /// Which of `workers` workers (see [`steer`]) holds the state `frame`, arriving on engine
    /// interface `iface`, needs.
    pub fn steer(&self, steering: &mut steer::Steering, iface: usize, frame: &[u8], workers: u32) -> u32 {
        match self.to_compiled.get(iface).copied().flatten() {
            Some(ci) => steering.worker(&self.tables, ci, frame, workers),
            None => 0,
        }
    }

    /// Validates and publishes a new config (see [`ConfigHandle::swap`]).
    pub fn swap(&self, config: Config) -> Result<(), Vec<ConfigError>> {
        self.shared.swap(config)
    }

    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }

    /// The engine index of the interface called `name`.
    pub fn iface(&self, name: &str) -> Option<usize> {
        self.ifaces.iter().position(|i| i.name == name)
    }

    /// Makes `compiled` the tables of the following batches. NAT sessions survive if the pools
    /// and services are unchanged and the new policy still sends their flow to their pool;
    /// changed pools start empty (their old port assignments no longer hold).
    fn adopt(&mut self, compiled: Arc<Compiled>) {
        if !Arc::ptr_eq(&compiled, &self.tables) {
            self.generation += 1;
            let c = &compiled.config;
            if c.nat_pools != self.tables.config.nat_pools || c.services != self.tables.config.services {
                self.nat = Nat::new(c, self.worker, self.workers);
            } else {
                let rules = &compiled.rules;
                self.nat.retain(|pool, s| {
                    let key = FlowKey {
                        vrf: pool.inside_vrf,
                        src: IpAddr::V4(Ipv4Addr::from(s.in_addr)),
                        dst: IpAddr::V4(Ipv4Addr::from(s.remotes[0].0)),
                        proto: nat::proto_of(s.proto),
                        ports: (s.proto != nat::sessions::ICMP).then_some((s.in_port, s.remotes[0].1)),
                    };
                    let decided = rules.classify(&key, |_| {}).map(|i| &rules.rules[i].action);
                    matches!(decided, Some(Action::Napt { pool: p }) if *p == pool.name)
                });
            }
        }
        self.to_compiled = self.ifaces.iter().map(|i| compiled.iface(&i.name)).collect();
        self.from_compiled =
            compiled.ifaces.iter().map(|n| self.ifaces.iter().position(|i| i.name == *n)).collect();
        let c = &mut self.counters;
        c.rule_hits.rekey(compiled.rules.rules.iter().map(|r| r.name.clone()).collect());
        let ports: Vec<String> = compiled.config.ports.iter().map(|p| p.key()).collect();
        for k in [&mut c.port_rx_packets, &mut c.port_rx_bytes, &mut c.port_tx_packets, &mut c.port_tx_bytes]
        {
            k.rekey(ports.clone());
        }
        self.tables = compiled;
    }

    /// This worker's NAT state (sessions, pools).
    pub fn nat(&self) -> &Nat {
        &self.nat
    }

    /// Its NAT state, to refresh sessions from outside the pipeline (the XDP program's flows).
    pub fn nat_mut(&mut self) -> &mut Nat {
        &mut self.nat
    }

    /// Runs the pipeline over a batch; each packet's `verdict` says what to do with it. `now_ns`
    /// is a monotonic clock, used for rate limits.
    pub fn process(&mut self, batch: &mut [Packet], now_ns: u64) {
        let latest = self.shared.0.load();
        if !Arc::ptr_eq(&latest, &self.tables) {
            self.adopt(Arc::clone(&latest));
        }
        let t = Arc::clone(&self.tables);
        self.nat.sweep((now_ns / 1_000_000_000) as u32);
        for pkt in batch.iter_mut() {
            self.unknown_fragment = None;
            let verdict = self.one(&t, pkt, now_ns, &mut None);
            let verdict = self.wait_if_early(pkt, verdict, now_ns);
            self.finish(pkt, verdict);
        }
        self.release_fragments(&t, now_ns);
    }

    /// Expires idle sessions on a timer, traffic or not (see `Nat::expire`); how many it freed.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        self.expire_fragments(now_ns);
        self.nat.expire((now_ns / 1_000_000_000) as u32)
    }

    /// Runs one packet with every decision recorded.
    pub fn process_traced(&mut self, pkt: &mut Packet, now_ns: u64) -> Vec<Step> {
        let latest = self.shared.0.load();
        if !Arc::ptr_eq(&latest, &self.tables) {
            self.adopt(Arc::clone(&latest));
        }
        let mut steps = Some(Vec::new());
        let t = Arc::clone(&self.tables);
        let verdict = self.one(&t, pkt, now_ns, &mut steps);
        self.finish(pkt, verdict);
        let mut steps = steps.unwrap_or_default();
        steps.push(Step::new("verdict", "verdict", format!("{:?}", pkt.verdict)));
        steps
    }

    fn finish(&mut self, pkt: &mut Packet, verdict: Verdict) {
        match verdict {
            Verdict::Drop(d) => self.counters.drops[d as usize] += 1,
            Verdict::ToHost => self.counters.stats[Stat::ToHost as usize] += 1,
            Verdict::Forward { .. } => self.counters.stats[Stat::Forwarded as usize] += 1,
            Verdict::Reply { dropped, .. } => self.counters.drops[dropped as usize] += 1,
            Verdict::Pending => {}
        }
        pkt.verdict = verdict;
    }

    /// The port (index into the compiled config's ports) of engine interface `iface` and `vlan`.
    fn port_of(&self, iface: usize, vlan: Option<u16>) -> Option<usize> {
        self.to_compiled.get(iface).copied().flatten().and_then(|ci| self.tables.port(ci, vlan))
    }

    /// The whole pipeline for one packet, stage by stage: each stage either hands the packet
    /// on or gives its verdict.
    fn one(&mut self, t: &Compiled, pkt: &mut Packet, now_ns: u64, tr: &mut Option<Vec<Step>>) -> Verdict {
        self.decapsulated = false;
        if !self.rerun {
            self.counters.stats[Stat::Received as usize] += 1;
        }
        let mut a = match self.ingress(t, pkt, tr) {
            Ok(a) => a,
            Err(v) => return v,
        };
        let key = match self.local(t, pkt, &a, now_ns, tr) {
            Ok(key) => key,
            Err(v) => return v,
        };
        let d = match self.decide(t, pkt, &a, &key, now_ns, tr) {
            Ok(d) => d,
            Err(v) => return v,
        };
        let e = match self.forward(t, pkt, &a, &key, &d, now_ns, tr) {
            Ok(e) => e,
            Err(v) => return v,
        };
        self.rewrite(t, pkt, &mut a, &key, &d, e, now_ns, tr)
    }
}
