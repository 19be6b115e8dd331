//! The XDP engine's slow path: one AF_XDP socket per port (queue 0), a userspace engine with the
//! same config behind them, and a thread moving frames between the two. What the XDP program
//! hands over (TTL expiry, ICMP errors, packets over the MTU, new NAT sessions, IPv6 extension
//! headers, ARP/NDP of VLAN ports, echo and ARP for NAT addresses) is decided
//! here, with the userspace engine's complete semantics, and sent out through the egress port's
//! socket. The established NAT sessions it decides are handed back to the program as flows
//! (see `dataplane::flows`), so their next packets stay in the kernel.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
        mpsc::Receiver,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use dataplane::neighbor::NextHop;

use crate::vlan_host::{VlanHosts, open};
use dataplane::host::{HostCounters, HostStack, PortSpec};
use dataplane::{
    Config, ConfigError, Counters,
    buffer::{Packet, Verdict},
    engine::{ConfigHandle, Engine, Iface},
    flows::{FlowCache, FlowStats},
    nat::PoolUsage,
    nat::query::{SessionFilter, SessionPage},
    port::afxdp::AfXdpPort,
    tables::PortHandle,
    xdp::{FlowTable, XdpEngine},
};
use hutong_common::{MAP_NEIGH_V4, MAP_NEIGH_V6, Neigh, Neigh6Key, NeighKey, PortCounters};
use tokio::sync::mpsc::UnboundedSender;

/// How often the slow path copies the neighbor table the program uses, and publishes its counters.
const NEIGHBOR_SYNC: Duration = Duration::from_millis(200);
/// How soon after a next hop was missing the neighbor table is copied again.
const MISS_RESYNC: Duration = Duration::from_millis(10);
/// Frames taken from one socket per round.
const BATCH: u32 = 64;
/// Flows whose kernel stamps are read per neighbor-sync round (5 rounds a second): a full pass
/// over a full flow map takes about 13 s, well inside the shortest session timeout (ICMP, 60 s).
const FLOWS_PER_ROUND: usize = 2048;

pub struct SlowPath {
    stop: Arc<AtomicBool>,
    /// The config epoch flows are written under once the engine adopts its next config.
    epoch: Arc<AtomicU32>,
    config: ConfigHandle,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Mutex<Published>>,
}

/// What the slow-path thread publishes, refreshed every [`NEIGHBOR_SYNC`].
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Its engine's counters (drops by reason, ICMP errors sent, ...).
    pub counters: Counters,
    /// Its engine's hits per policy rule, by rule name.
    pub rule_hits: BTreeMap<String, u64>,
    /// The flows it handed to the program.
    pub flows: FlowStats,
    /// Its engine's per-port counters by port key: received and sent, packets and bytes.
    pub ports: BTreeMap<String, PortCounters>,
    /// NAT pools: sessions and port blocks in use.
    pub pools: Vec<PoolUsage>,
    /// What its host stack answered.
    pub host: HostCounters,
}

impl Published {
    fn of(engine: &Engine, flows: &FlowCache, host: &HostStack) -> Published {
        let c = &engine.counters;
        let mut ports: BTreeMap<String, PortCounters> = BTreeMap::new();
        for (keyed, field) in
            [(&c.port_rx_packets, 0), (&c.port_rx_bytes, 1), (&c.port_tx_packets, 2), (&c.port_tx_bytes, 3)]
        {
            for (port, v) in keyed.snapshot() {
                let e = ports.entry(port).or_default();
                *[&mut e.rx_packets, &mut e.rx_bytes, &mut e.tx_packets, &mut e.tx_bytes][field] = v;
            }
        }
        Published {
            counters: c.summary(),
            rule_hits: c.rule_hits.snapshot(),
            flows: flows.stats(),
            ports,
            pools: engine.nat().pool_usage(),
            host: host.counters(),
        }
    }
}

impl SlowPath {
    /// Opens a socket on each interface, registers it with the program, and starts the thread.
    /// See [`Interfaces`] for what it runs on. Next hops the engine
    /// finds unresolved are reported on `misses`, for the neighbor resolver. See [`Handover`] for
    /// what it shares with the program.
    pub fn start(
        config: &Config,
        Interfaces { ports, vlan_nexthops, vlan_misses }: Interfaces,
        xdp: &mut XdpEngine,
        Handover { epoch, kept, offload }: Handover,
        pin_dir: &Path,
        misses: UnboundedSender<NextHop>,
        queries: Receiver<SessionQuery>,
    ) -> Result<SlowPath> {
        let mut socks = Vec::new();
        for (slot, (name, _)) in ports.iter().enumerate() {
            let s = AfXdpPort::open(name, 0).with_context(|| format!("slow-path socket on {name}"))?;
            xdp.set_slow_path(slot as u16, 0, s.fd())?;
            socks.push(s);
        }
        let ifaces: Vec<Iface> =
            ports.iter().map(|(name, h)| Iface { name: name.clone(), mac: h.mac }).collect();
        let ifindexes: Vec<u32> = ports.iter().map(|(_, h)| h.ifindex).collect();
        let mut engine =
            Engine::new(config.clone(), ifaces).map_err(|e| anyhow::anyhow!("slow-path engine: {e:?}"))?;
        if offload {
            engine.track_offloads();
        }
        // A new session's first packet, towards a host nobody asked for yet, waits for it.
        engine.hold_unresolved();
        let mut table = xdp.take_flows()?;
        let generation = engine.generation();
        let flows = if kept {
            let (cache, n) =
                FlowCache::adopt(&mut table, engine.nat_mut(), epoch, generation, monotonic_ns());
            eprintln!("hutong gateway {}: adopted {n} flow(s) of established NAT sessions", config.gateway);
            cache
        } else {
            FlowCache::new(&mut table, epoch, generation)
        };
        let neighbors = [pin_dir.join(MAP_NEIGH_V4), pin_dir.join(MAP_NEIGH_V6)];
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Every port: VLAN ports' addresses, and NAT addresses on any port of their VRF, are
        // the host stack's (see `dataplane::host`).
        let host = HostStack::new(
            &config
                .ports
                .iter()
                .filter(|p| p.tunnel.is_none())
                .filter_map(|p| {
                    let iface = ports.iter().position(|(name, _)| *name == p.name)?;
                    let mac = ports[iface].1.mac;
                    Some(PortSpec { iface, vlan: p.vlan, mac, addresses: p.addresses.clone() })
                })
                .collect::<Vec<_>>(),
        );
        let counters = Arc::new(Mutex::new(Published::of(&engine, &flows, &host)));
        let published = counters.clone();
        let config_handle = engine.config_handle();
        let shared_epoch = Arc::new(AtomicU32::new(epoch));
        let macs: Vec<(String, [u8; 6])> = ports.iter().map(|(n, h)| (n.clone(), h.mac)).collect();
        let vlan = VlanHosts::new(config, &macs, &vlan_nexthops, neighbors.clone());
        let links = Links { ifindexes };
        let state =
            State { engine, flows, table, epoch: shared_epoch.clone(), queries, vlan, vlan_misses, host };
        let thread = std::thread::Builder::new()
            .name("slow-path".into())
            .spawn(move || run(socks, state, links, &neighbors, &flag, &misses, &published))?;
        Ok(SlowPath { stop, epoch: shared_epoch, config: config_handle, thread: Some(thread), counters })
    }

    /// Hands the engine a new config that the program will run as `epoch` (the caller installs
    /// the program's tables right after). The engine picks it up with its next batch; from then
    /// on it drops the flows of the old config and writes new ones under `epoch`, which the
    /// program ignores until its tables flip to that epoch: no flow of one config is ever used
    /// with the tables of the other.
    pub fn swap(&self, config: Config, epoch: u32) -> std::result::Result<(), Vec<ConfigError>> {
        self.epoch.store(epoch, Ordering::SeqCst);
        self.config.swap(config)
    }

    /// What it published last, at most [`NEIGHBOR_SYNC`] old; final once [`SlowPath::stop`]
    /// returned.
    pub fn published(&self) -> Published {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Stops the thread; the counters keep their final values.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the slow path runs on.
pub struct Interfaces {
    /// The interfaces, in slot order.
    pub ports: Vec<(String, PortHandle)>,
    /// The configured next hops on VLAN ports, and the program's misses on them: the slow
    /// path resolves those itself (see `crate::vlan_host`).
    pub vlan_nexthops: Vec<NextHop>,
    pub vlan_misses: Receiver<NextHop>,
}

/// The kernel's interfaces as the engine knows them.
struct Links {
    /// The engine's interfaces' ifindexes, by engine index (= slot).
    ifindexes: Vec<u32>,
}

impl Links {
    /// Where a neighbor entry's port is in the engine: an interface's ifindex, or a VLAN port's
    /// key (which names its interface's slot and its VLAN).
    fn engine_port(&self, key: u32) -> Option<(usize, Option<u16>)> {
        match hutong_common::vlan_port_of(key) {
            Some((slot, vid)) => {
                (usize::from(slot) < self.ifindexes.len()).then_some((slot.into(), Some(vid)))
            }
            None => self.ifindexes.iter().position(|x| *x == key).map(|i| (i, None)),
        }
    }
}

/// Makes the engine's neighbors those of the program's tables (through their pins, IPv4 then
/// IPv6): copies what is there, and forgets what is gone (the kernel dropped it, or a VLAN
/// neighbor aged out). If a table cannot be read, nothing is forgotten.
fn sync_neighbors(engine: &mut Engine, links: &Links, [pin4, pin6]: &[std::path::PathBuf; 2]) {
    let mut present = std::collections::HashSet::new();
    let v4 = open::<NeighKey, Neigh>(pin4).map(|t| {
        present.extend(t.iter().flatten().map(|(k, v)| (k.ifindex, IpAddr::from(k.addr), v.mac)));
    });
    let v6 = open::<Neigh6Key, Neigh>(pin6).map(|t| {
        present.extend(t.iter().flatten().map(|(k, v)| (k.ifindex, IpAddr::from(k.addr), v.mac)));
    });
    let complete = v4.is_some() && v6.is_some();
    let mut known = std::collections::HashSet::new();
    for (ifindex, addr, mac) in present {
        if let Some((i, vlan)) = links.engine_port(ifindex) {
            engine.set_neighbor(i, vlan, addr, mac);
            known.insert((i, vlan, addr));
        }
    }
    if complete {
        for key in engine.neighbor_keys() {
            if !known.contains(&key) {
                engine.forget_neighbor(key.0, key.1, key.2);
            }
        }
    }
}

/// What the slow path shares with the program.
#[derive(Clone, Copy, Debug)]
pub struct Handover {
    /// The config epoch the program runs.
    pub epoch: u32,
    /// Whether that epoch was kept from a previous process: then its flows, and their
    /// sessions, are adopted (see [`XdpEngine::install_or_keep`]).
    pub kept: bool,
    /// Whether established sessions are handed to the program as flows (the XDP engine), or
    /// the userspace engine forwards everything itself.
    pub offload: bool,
}

/// A question for the slow-path engine about its NAT sessions (`GET /v1/sessions`).
pub struct SessionQuery {
    pub filter: SessionFilter,
    pub offset: usize,
    pub limit: usize,
    pub reply: tokio::sync::oneshot::Sender<SessionPage>,
}

/// The slow path's engine and the flows it handed to the program.
struct State {
    engine: Engine,
    flows: FlowCache,
    table: FlowTable,
    epoch: Arc<AtomicU32>,
    queries: Receiver<SessionQuery>,
    vlan: VlanHosts,
    vlan_misses: Receiver<NextHop>,
    host: HostStack,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the program's `bpf_ktime_get_ns` stamps, so the
/// engine's session timers and the flows' stamps compare directly.
fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make every session look old.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

fn run(
    mut socks: Vec<AfXdpPort>,
    state: State,
    links: Links,
    neighbors: &[std::path::PathBuf; 2],
    stop: &AtomicBool,
    misses: &UnboundedSender<NextHop>,
    counters: &Mutex<Published>,
) {
    let State { mut engine, mut flows, mut table, epoch, queries, mut vlan, vlan_misses, mut host } = state;
    let publish = |engine: &Engine, flows: &FlowCache, host: &HostStack| {
        if let Ok(mut c) = counters.lock() {
            *c = Published::of(engine, flows, host);
        }
    };
    let mut synced = Instant::now() - NEIGHBOR_SYNC;
    let mut batch: Vec<Packet> = Vec::with_capacity(BATCH as usize * socks.len());
    while !stop.load(Ordering::Relaxed) {
        let mut asks = Vec::new();
        while let Ok((key, addr)) = vlan_misses.try_recv() {
            asks.extend(vlan.ask(key, addr));
        }
        if synced.elapsed() >= NEIGHBOR_SYNC {
            asks.extend(vlan.tick());
            sync_neighbors(&mut engine, &links, neighbors);
            flows.tick(&mut table, engine.nat_mut(), monotonic_ns(), FLOWS_PER_ROUND);
            publish(&engine, &flows, &host);
            synced = Instant::now();
        }
        while let Ok(q) = queries.try_recv() {
            let mut page =
                engine.nat().query(&q.filter, q.offset, q.limit, (monotonic_ns() / 1_000_000_000) as u32);
            for s in &mut page.sessions {
                s.kernel_flows = flows.flows_of(s.key);
            }
            let _ = q.reply.send(page);
        }
        for (iface, frame) in asks {
            if let Some(s) = socks.get_mut(iface) {
                let _ = s.send(&frame);
            }
        }
        for p in engine.take_released(monotonic_ns()) {
            if let Verdict::Forward { iface } = p.verdict {
                if let Some(s) = socks.get_mut(iface) {
                    let _ = s.send(p.frame());
                }
            }
        }
        for (i, s) in socks.iter_mut().enumerate() {
            s.recv(BATCH, |f| batch.push(Packet::new(i, f)));
        }
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        engine.process(&mut batch, monotonic_ns());
        // Before anything is sent: a freed session's flows go before its port can answer anyone.
        let events = engine.nat_mut().take_events();
        let offloads = engine.take_offloads();
        let ifindex = |i: usize| links.ifindexes.get(i).copied();
        let epoch = epoch.load(Ordering::SeqCst);
        flows.follow(&mut table, engine.generation(), epoch, &events, &offloads, ifindex);
        let missed = engine.take_misses();
        for (iface, vid, addr) in &missed {
            match vid {
                None => {
                    if let Some(&ifindex) = links.ifindexes.get(*iface) {
                        let _ = misses.send((ifindex, *addr));
                    }
                }
                Some(vid) => {
                    if let Some((i, frame)) = vlan.ask_engine(*iface, *vid, *addr) {
                        if let Some(s) = socks.get_mut(i) {
                            let _ = s.send(&frame);
                        }
                    }
                }
            }
        }
        if !missed.is_empty() {
            // The resolver (or the program's ARP gleaning) fills the shared tables within
            // milliseconds: copy it again soon rather than at the next 200 ms round.
            synced = Instant::now() - NEIGHBOR_SYNC + MISS_RESYNC;
        }
        for p in batch.drain(..) {
            if p.verdict == Verdict::ToHost {
                // What the kernel cannot answer for: VLAN ports, NAT addresses.
                vlan.heard(&mut engine, p.iface, p.frame());
                for reply in host.answer(p.iface, p.frame(), &engine) {
                    if let Some(s) = socks.get_mut(p.iface) {
                        let _ = s.send(&reply);
                    }
                }
                continue;
            }
            if let Verdict::Forward { iface } | Verdict::Reply { iface, .. } = p.verdict {
                if let Some(s) = socks.get_mut(iface) {
                    if !s.send(p.frame()) {
                        log::warn!("slow path: transmit ring of port {iface} full; frame dropped");
                    }
                }
            }
        }
    }
    publish(&engine, &flows, &host);
}
