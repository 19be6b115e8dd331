//! The slow path: AF_XDP sockets on the ports' receive queues, userspace engines with the same
//! config behind them, and worker threads moving frames between the two.
//!
//! On the XDP engine it takes what the program hands over (TTL expiry, ICMP errors, packets
//! over the MTU, new NAT sessions, IPv6 extension headers, ARP/NDP of VLAN ports, echo and ARP
//! for NAT addresses), decides it with the userspace engine's complete semantics, and sends it
//! out through the egress port's socket. The established NAT sessions it decides are handed
//! back to the program as flows (see `dataplane::xdp::flows`), so their next packets stay in the
//! kernel. One worker serves every queue of every port.
//!
//! On the userspace engine it forwards everything, with one worker per configured core (see
//! [`worker`]): worker `w` of `n` serves queues `w`, `w + n`, ... of every port, and each port
//! needs at least `n` queues.

mod worker;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
        mpsc::{Receiver, Sender},
    },
    thread::JoinHandle,
};

use anyhow::{Context, Result, bail};
use dataplane::{
    Config, ConfigError, Counters,
    engine::{ConfigHandle, Engine, Iface},
    host::{HostCounters, HostStack, PortSpec},
    nat::PoolUsage,
    nat::query::{SessionFilter, SessionPage},
    port::{PortIo, af_packet::AfPacketPort, afxdp::AfXdpPort},
    xdp::{
        XdpEngine,
        flows::{FlowCache, FlowStats},
        kernel_neighbors::NextHop,
        tables::PortHandle,
    },
};
use hutong_common::{MAP_NEIGH_V4, MAP_NEIGH_V6, PortCounters, QUEUES_PER_PORT};
use tokio::sync::mpsc::UnboundedSender;

use crate::vlan_host::VlanHosts;
pub use worker::WorkerCounters;
use worker::{Flows, VlanDuty, Worker};

pub struct SlowPath {
    stop: Arc<AtomicBool>,
    /// The config epoch flows are written under once the engine adopts its next config.
    epoch: Arc<AtomicU32>,
    config: ConfigHandle,
    threads: Vec<JoinHandle<()>>,
    /// What each worker published last.
    published: Vec<Arc<Mutex<Published>>>,
}

/// What the slow path publishes, refreshed every 200 ms: per worker, and summed
/// ([`SlowPath::published`]).
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Its engines' counters (drops by reason, ICMP errors sent, ...).
    pub counters: Counters,
    /// Its engines' hits per policy rule, by rule name.
    pub rule_hits: BTreeMap<String, u64>,
    /// The flows it handed to the program.
    pub flows: FlowStats,
    /// Its engines' per-port counters by port key: received and sent, packets and bytes.
    pub ports: BTreeMap<String, PortCounters>,
    /// NAT pools: sessions and port blocks in use.
    pub pools: Vec<PoolUsage>,
    /// What its host stacks answered.
    pub host: HostCounters,
    /// Each worker's own work.
    pub workers: Vec<WorkerCounters>,
}

impl Published {
    fn of(engine: &Engine, flows: Option<&FlowCache>, host: &HostStack, worker: WorkerCounters) -> Published {
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
            flows: flows.map(|f| f.stats()).unwrap_or_default(),
            ports,
            pools: engine.nat().pool_usage(),
            host: host.counters(),
            workers: vec![worker],
        }
    }

    /// The workers' together: counts add up; a pool's blocks in total are the same for every
    /// worker (each holds its share of them), so they are not added.
    fn merge(all: &[Published]) -> Published {
        let mut sum = Published::default();
        for p in all {
            add_named(&mut sum.counters.stats, &p.counters.stats);
            add_named(&mut sum.counters.drops, &p.counters.drops);
            for (k, v) in &p.rule_hits {
                *sum.rule_hits.entry(k.clone()).or_default() += v;
            }
            let f = &mut sum.flows;
            (f.active, f.installed, f.removed, f.full) = (
                f.active + p.flows.active,
                f.installed + p.flows.installed,
                f.removed + p.flows.removed,
                f.full + p.flows.full,
            );
            for (k, c) in &p.ports {
                let e = sum.ports.entry(k.clone()).or_default();
                e.rx_packets += c.rx_packets;
                e.rx_bytes += c.rx_bytes;
                e.tx_packets += c.tx_packets;
                e.tx_bytes += c.tx_bytes;
            }
            for u in &p.pools {
                match sum.pools.iter_mut().find(|s| s.pool == u.pool) {
                    Some(s) => {
                        s.sessions += u.sessions;
                        s.blocks_used += u.blocks_used;
                    }
                    None => sum.pools.push(u.clone()),
                }
            }
            let h = &mut sum.host;
            h.arp_replies += p.host.arp_replies;
            h.neighbor_adverts += p.host.neighbor_adverts;
            h.echo_replies += p.host.echo_replies;
            h.ignored += p.host.ignored;
            sum.workers.extend(&p.workers);
        }
        sum
    }
}

fn add_named(sum: &mut Vec<(&'static str, u64)>, more: &[(&'static str, u64)]) {
    for (name, v) in more {
        match sum.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s += v,
            None => sum.push((name, *v)),
        }
    }
}

impl SlowPath {
    /// Opens the sockets, registers them with the program, and starts the workers. See
    /// [`Interfaces`] for what it runs on and [`Handover`] for what it shares with the program.
    /// Next hops the engines find unresolved are reported on `misses`, for the neighbor
    /// resolver; `queries` are the agent API's questions about NAT sessions.
    pub fn start(
        config: &Config,
        on: Interfaces,
        xdp: &mut XdpEngine,
        handover: Handover,
        pin_dir: &Path,
        misses: UnboundedSender<NextHop>,
        queries: Receiver<SessionQuery>,
    ) -> Result<SlowPath> {
        let Interfaces { ports, vlan_nexthops, vlan_misses, vlan_asks, workers } = on;
        let Handover { epoch, kept, offload } = handover;
        let n = workers.max(1);
        if offload && n > 1 {
            bail!("the XDP engine's slow path runs one worker; --workers is for --engine userspace");
        }
        // AF_XDP: worker w serves queues w, w + n, ... of every port (the program redirects to
        // the socket of the queue a frame arrived on). AF_PACKET: one socket per worker, in a
        // fanout group when there are several.
        let mut socks: Vec<Vec<Vec<PortIo>>> = (0..n).map(|_| Vec::new()).collect();
        for (slot, p) in ports.iter().enumerate() {
            if p.io == Io::AfPacket {
                let group = (n > 1).then_some(p.handle.ifindex as u16);
                for mine in socks.iter_mut() {
                    let s = AfPacketPort::open(&p.name, p.handle.ifindex, group)
                        .with_context(|| format!("packet socket on {}", p.name))?;
                    mine.push(vec![PortIo::AfPacket(s)]);
                }
                continue;
            }
            let queues = p.queues.min(QUEUES_PER_PORT);
            if queues < n {
                bail!(
                    "interface {} has {} receive queue(s); {n} workers need {n} (ethtool -L {} combined {n})",
                    p.name,
                    p.queues,
                    p.name
                );
            }
            for (w, mine) in socks.iter_mut().enumerate() {
                let mut here = Vec::new();
                for q in (w as u32..queues).step_by(n as usize) {
                    let s = AfXdpPort::open(&p.name, q)
                        .with_context(|| format!("slow-path socket on {} queue {q}", p.name))?;
                    xdp.set_slow_path(slot as u16, q, s.fd())?;
                    here.push(PortIo::AfXdp(Box::new(s)));
                }
                mine.push(here);
            }
        }
        let ifaces: Vec<Iface> =
            ports.iter().map(|p| Iface { name: p.name.clone(), mac: p.handle.mac }).collect();
        let ifindexes: Vec<u32> = ports.iter().map(|p| p.handle.ifindex).collect();
        let specs: Vec<PortSpec> = config
            .ports
            .iter()
            .filter(|p| p.tunnel.is_none())
            .filter_map(|p| {
                let iface = ports.iter().position(|q| q.name == p.name)?;
                let mac = ports[iface].handle.mac;
                Some(PortSpec { iface, vlan: p.vlan, mac, addresses: p.addresses.clone() })
            })
            .collect();
        let neighbors = [pin_dir.join(MAP_NEIGH_V4), pin_dir.join(MAP_NEIGH_V6)];
        let shared_epoch = Arc::new(AtomicU32::new(epoch));
        let (inboxes, peers): (Vec<_>, Vec<_>) =
            (0..n).map(|_| std::sync::mpsc::channel()).map(|(tx, rx)| (rx, tx)).unzip();
        let (query_txs, query_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| std::sync::mpsc::channel()).unzip();
        let mut built = Vec::new();
        let mut handle: Option<ConfigHandle> = None;
        let mut vlan_misses = Some(vlan_misses);
        for ((w, (socks, inbox)), queries) in socks.into_iter().zip(inboxes).enumerate().zip(query_rxs) {
            let mut engine = Engine::new_worker(config.clone(), ifaces.clone(), w as u32, n)
                .map_err(|e| anyhow::anyhow!("slow-path engine: {e:?}"))?;
            match &handle {
                Some(h) => engine.follow(h.clone()),
                None => handle = Some(engine.config_handle()),
            }
            if offload {
                engine.track_offloads();
            }
            // A new session's first packet, towards a host nobody asked for yet, waits for it.
            engine.hold_unresolved();
            let (flows, vlan) = if w == 0 {
                let mut table = xdp.take_flows()?;
                let generation = engine.generation();
                let cache = if kept {
                    let (cache, adopted) =
                        FlowCache::adopt(&mut table, engine.nat_mut(), epoch, generation, monotonic_ns());
                    eprintln!(
                        "hutong gateway {}: adopted {adopted} flow(s) of established NAT sessions",
                        config.gateway
                    );
                    cache
                } else {
                    FlowCache::new(&mut table, epoch, generation)
                };
                let macs: Vec<(String, [u8; 6])> = ifaces.iter().map(|i| (i.name.clone(), i.mac)).collect();
                let hosts = VlanHosts::new(config, &macs, &vlan_nexthops, neighbors.clone());
                let misses = vlan_misses.take().expect("worker 0 is built once");
                (Some(Flows { cache, table }), Some(VlanDuty { hosts, misses }))
            } else {
                (None, None)
            };
            built.push(Worker {
                id: w as u32,
                workers: n,
                socks,
                engine,
                host: HostStack::new(&specs),
                flows,
                vlan,
                vlan_asks: vlan_asks.clone(),
                inbox,
                peers: peers.clone(),
                queries,
                epoch: shared_epoch.clone(),
                ifindexes: ifindexes.clone(),
                neighbors: neighbors.clone(),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut published = Vec::new();
        for w in built {
            let cell = Arc::new(Mutex::new(Published::of(
                &w.engine,
                w.flows.as_ref().map(|f| &f.cache),
                &w.host,
                WorkerCounters::default(),
            )));
            published.push(cell.clone());
            let (flag, misses) = (stop.clone(), misses.clone());
            let name = if n == 1 { "slow-path".to_string() } else { format!("worker-{}", w.id) };
            threads.push(std::thread::Builder::new().name(name).spawn(move || w.run(&flag, &misses, &cell))?);
        }
        let flag = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("sessions".into())
                .spawn(move || answer_session_queries(&queries, &query_txs, &flag))?,
        );
        let config = handle.expect("at least one worker");
        Ok(SlowPath { stop, epoch: shared_epoch, config, threads, published })
    }

    /// Hands the engines a new config that the program will run as `epoch` (the caller installs
    /// the program's tables right after). Each picks it up with its next batch; from then on
    /// flows of the old config are dropped and new ones written under `epoch`, which the
    /// program ignores until its tables flip to that epoch: no flow of one config is ever used
    /// with the tables of the other.
    pub fn swap(&self, config: Config, epoch: u32) -> std::result::Result<(), Vec<ConfigError>> {
        self.epoch.store(epoch, Ordering::SeqCst);
        self.config.swap(config)
    }

    /// What the workers published last, together, at most 200 ms old; final once
    /// [`SlowPath::stop`] returned.
    pub fn published(&self) -> Published {
        let all: Vec<Published> =
            self.published.iter().map(|p| p.lock().map(|c| c.clone()).unwrap_or_default()).collect();
        Published::merge(&all)
    }

    /// Stops the workers; the counters keep their final values.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The agent API's session questions, asked of every worker (each holds its own sessions) and
/// answered as one page, in the order one engine would give (by outside endpoint).
fn answer_session_queries(
    queries: &Receiver<SessionQuery>,
    workers: &[Sender<SessionQuery>],
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(q) = queries.recv_timeout(std::time::Duration::from_millis(100)) else { continue };
        let mut pages = Vec::new();
        for w in workers {
            let (reply, page) = tokio::sync::oneshot::channel();
            // Every worker's first `offset + limit` sessions hold the merged page's.
            let ask = SessionQuery { filter: q.filter.clone(), offset: 0, limit: q.offset + q.limit, reply };
            if w.send(ask).is_ok() {
                pages.push(page);
            }
        }
        let mut total = 0;
        let mut sessions = Vec::new();
        for p in pages {
            if let Ok(p) = p.blocking_recv() {
                total += p.total;
                sessions.extend(p.sessions);
            }
        }
        sessions.sort_by_key(|s| s.key);
        let sessions = sessions.into_iter().skip(q.offset).take(q.limit).collect();
        let _ = q.reply.send(SessionPage { total, offset: q.offset, sessions });
    }
}

/// One interface the slow path runs on.
pub struct Port {
    pub name: String,
    pub handle: PortHandle,
    /// Its receive queues.
    pub queues: u32,
    pub io: Io,
}

/// How the slow path reads and writes an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// AF_XDP sockets the XDP program on the interface redirects to.
    AfXdp,
    /// Packet sockets, where no XDP program runs (see `dataplane::port::af_packet`).
    AfPacket,
}

/// What the slow path runs on.
pub struct Interfaces {
    /// The interfaces, in slot order.
    pub ports: Vec<Port>,
    /// The configured next hops on VLAN ports, and the program's misses on them: the slow
    /// path resolves those itself (see `crate::vlan_host`), and `vlan_asks` is where its other
    /// workers report their own (it sends into `vlan_misses`).
    pub vlan_nexthops: Vec<NextHop>,
    pub vlan_misses: Receiver<NextHop>,
    pub vlan_asks: Sender<NextHop>,
    /// Worker threads (1 on the XDP engine).
    pub workers: u32,
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

/// A question for the slow-path engines about their NAT sessions (`GET /v1/sessions`).
pub struct SessionQuery {
    pub filter: SessionFilter,
    pub offset: usize,
    pub limit: usize,
    pub reply: tokio::sync::oneshot::Sender<SessionPage>,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the program's `bpf_ktime_get_ns` stamps, so the
/// engine's session timers and the flows' stamps compare directly.
fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make every session look old.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_publish_one_sum() {
        let pool = |sessions, used| PoolUsage {
            pool: "city".into(),
            sessions,
            blocks_used: used,
            blocks_total: 252,
        };
        let a = Published {
            counters: Counters { stats: vec![("received", 5)], drops: vec![("no_route", 1)] },
            rule_hits: [("r".to_string(), 2)].into(),
            pools: vec![pool(3, 1)],
            host: HostCounters { echo_replies: 1, ..Default::default() },
            workers: vec![WorkerCounters { packets: 5, handed_off: 2, ..Default::default() }],
            ..Default::default()
        };
        let b = Published {
            counters: Counters { stats: vec![("received", 7), ("forwarded", 6)], drops: vec![] },
            rule_hits: [("r".to_string(), 4)].into(),
            pools: vec![pool(4, 2)],
            host: HostCounters { echo_replies: 2, ..Default::default() },
            workers: vec![WorkerCounters { packets: 9, handed_off: 0, ..Default::default() }],
            ..Default::default()
        };
        let sum = Published::merge(&[a, b]);
        assert_eq!(sum.counters.stats, vec![("received", 12), ("forwarded", 6)]);
        assert_eq!(sum.counters.drops, vec![("no_route", 1)]);
        assert_eq!(sum.rule_hits["r"], 6);
        assert_eq!(sum.pools, vec![pool(7, 3)], "each worker holds a share of the same 252 blocks");
        assert_eq!(sum.host.echo_replies, 3);
        assert_eq!(sum.workers.len(), 2);
    }
}
