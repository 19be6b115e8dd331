//! One slow-path worker: its sockets (AF_XDP: its share of every port's receive queues), its
//! own userspace engine (its share of every NAT pool's port blocks), and the loop between them.
//!
//! Workers share no state. A frame that arrives on one worker's queue but needs another's
//! sessions (see `dataplane::engine::steer`) is handed over through that worker's inbox, and
//! the owner forwards it out of its own socket on the egress port. Worker 0 also does what
//! exists once: the VLAN ports' neighbor resolution, the flows handed to the XDP program, and
//! (through the NDP and ARP steered to it) the host stack's link-layer side.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
        mpsc::{Receiver, Sender},
    },
    time::{Duration, Instant},
};

use dataplane::{
    buffer::{Packet, Verdict},
    engine::{Engine, steer::Steering},
    host::HostStack,
    nat::query::{SCAN_STEP, SessionScan},
    port::{PortIo, SocketDrops},
    xdp::{FlowTable, flows::FlowCache, kernel_neighbors::NextHop},
};
use hutong_common::{Neigh, Neigh6Key, NeighKey};
use tokio::sync::mpsc::UnboundedSender;

use super::{Published, SessionQuery, monotonic_ns};
use crate::vlan_host::{VlanHosts, open};

/// How often a worker copies the neighbor table the program uses, and publishes its counters.
pub(super) const NEIGHBOR_SYNC: Duration = Duration::from_millis(200);
/// How soon after a next hop was missing the neighbor table is copied again.
const MISS_RESYNC: Duration = Duration::from_millis(10);
/// Frames taken from one socket (or the inbox) per round.
const BATCH: u32 = 64;
/// Flows whose kernel stamps are read per neighbor-sync round (5 rounds a second): a full pass
/// over a full flow map takes about 26 s, inside the shortest session timeout (ICMP, 60 s).
const FLOWS_PER_ROUND: usize = 2048;

/// A frame handed from the worker that received it to the one that owns its state: the
/// engine interface it arrived on, and its bytes.
pub(super) type Handoff = (usize, Vec<u8>);

/// The flows of established sessions handed to the XDP program (worker 0, XDP engine).
pub(super) struct Flows {
    pub cache: FlowCache,
    pub table: FlowTable,
}

/// Worker 0's VLAN duties: neighbor resolution for VLAN ports, and the program's misses there.
pub(super) struct VlanDuty {
    pub hosts: VlanHosts,
    pub misses: Receiver<NextHop>,
}

pub(super) struct Worker {
    pub id: u32,
    pub workers: u32,
    /// Its sockets, per engine interface (slot): the queues it owns there.
    pub socks: Vec<Vec<PortIo>>,
    pub engine: Engine,
    pub host: HostStack,
    pub flows: Option<Flows>,
    pub vlan: Option<VlanDuty>,
    /// Where a VLAN miss of this worker's engine goes when it has no `vlan` duty (worker 0's
    /// `VlanDuty::misses`).
    pub vlan_asks: Sender<NextHop>,
    pub inbox: Receiver<Handoff>,
    pub peers: Vec<Sender<Handoff>>,
    pub queries: Receiver<SessionQuery>,
    /// The config epoch flows are written under.
    pub epoch: Arc<AtomicU32>,
    /// The engine's interfaces' ifindexes, by engine index (= slot).
    pub ifindexes: Vec<u32>,
    /// The program's neighbor tables (IPv4, IPv6), through their pins.
    pub neighbors: [PathBuf; 2],
}

/// What a worker counts of its own work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Frames it processed (its own and those handed to it).
    pub packets: u64,
    /// Frames it received but handed to the worker owning their state.
    pub handed_off: u64,
    /// Frames the kernel dropped on their way into its sockets.
    pub socket_drops: SocketDrops,
}

impl Worker {
    pub(super) fn run(
        mut self,
        stop: &AtomicBool,
        misses: &UnboundedSender<NextHop>,
        published: &Mutex<Published>,
    ) {
        let mut counters = WorkerCounters::default();
        let publish = |w: &Worker, counters: WorkerCounters| {
            if let Ok(mut p) = published.lock() {
                *p = Published::of(&w.engine, w.flows.as_ref().map(|f| &f.cache), &w.host, counters);
            }
        };
        let mut steering = Steering::default();
        let mut synced = Instant::now() - NEIGHBOR_SYNC;
        let mut expired = Instant::now();
        let mut scans = Vec::new();
        let mut batch: Vec<Packet> = Vec::with_capacity(BATCH as usize * 4);
        let mut away: Vec<(u32, Handoff)> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut asks = Vec::new();
            if let Some(v) = &mut self.vlan {
                while let Ok((key, addr)) = v.misses.try_recv() {
                    asks.extend(v.hosts.ask(key, addr));
                }
            }
            if synced.elapsed() >= NEIGHBOR_SYNC {
                if let Some(v) = &mut self.vlan {
                    asks.extend(v.hosts.tick());
                }
                sync_neighbors(&mut self.engine, &self.ifindexes, &self.neighbors);
                if let Some(f) = &mut self.flows {
                    f.cache.tick(&mut f.table, self.engine.nat_mut(), monotonic_ns(), FLOWS_PER_ROUND);
                }
                counters.socket_drops = self.socket_drops();
                publish(&self, counters);
                synced = Instant::now();
            }
            // Session queries walk the table a step at a time between batches, never all at
            // once on this forwarding thread.
            while let Ok(q) = self.queries.try_recv() {
                let now = (monotonic_ns() / 1_000_000_000) as u32;
                scans.push((SessionScan::new(q.filter, q.offset, q.limit, now), q.reply));
            }
            let mut i = 0;
            while i < scans.len() {
                if !self.engine.nat().scan(&mut scans[i].0, SCAN_STEP) {
                    i += 1;
                    continue;
                }
                let (scan, reply) = scans.swap_remove(i);
                let mut page = self.engine.nat().page(scan);
                if let Some(f) = &self.flows {
                    for s in &mut page.sessions {
                        s.kernel_flows = f.cache.flows_of(s.key);
                    }
                }
                let _ = reply.send(page);
            }
            for (iface, frame) in asks {
                self.send(iface, &frame);
            }
            // Idle sessions go on time, and their ports with them, whether or not packets
            // arrive (without this a flood's sessions held every port block until traffic swept
            // them, 64 per batch).
            if expired.elapsed() >= dataplane::nat::EXPIRY_INTERVAL {
                if self.engine.expire(monotonic_ns()) > 0 {
                    self.follow_flows();
                }
                expired = Instant::now();
            }
            for p in self.engine.take_released(monotonic_ns()) {
                if let Verdict::Forward { iface } | Verdict::Reply { iface, .. } = p.verdict {
                    self.send(iface, p.frame());
                }
            }

            // Receive: what is this worker's goes into the batch, the rest to its owner.
            let (me, n) = (self.id, self.workers);
            let engine = &self.engine;
            for (slot, socks) in self.socks.iter_mut().enumerate() {
                for s in socks {
                    s.recv(BATCH, |f| {
                        let owner = engine.steer(&mut steering, slot, f, n);
                        if owner == me {
                            batch.push(Packet::new(slot, f));
                        } else {
                            away.push((owner, (slot, f.to_vec())));
                        }
                    });
                }
            }
            for (owner, h) in away.drain(..) {
                counters.handed_off += 1;
                // A worker that stopped has nobody to hand to: the gateway is stopping.
                let _ = self.peers[owner as usize].send(h);
            }
            for (iface, frame) in self.inbox.try_iter().take(BATCH as usize * 4) {
                batch.push(Packet::new(iface, &frame));
            }
            if batch.is_empty() {
                self.wait_for_frames();
                continue;
            }
            counters.packets += batch.len() as u64;
            self.engine.process(&mut batch, monotonic_ns());
            // Before anything is sent: a freed session's flows go before its port can answer
            // anyone.
            self.follow_flows();
            let missed = self.engine.take_misses();
            for (iface, vid, addr) in &missed {
                self.missed(*iface, *vid, *addr, misses);
            }
            if !missed.is_empty() {
                // The resolver (or the program's ARP gleaning) fills the shared tables within
                // milliseconds: copy it again soon rather than at the next 200 ms round.
                synced = Instant::now() - NEIGHBOR_SYNC + MISS_RESYNC;
            }
            for p in std::mem::take(&mut batch) {
                if p.verdict == Verdict::ToHost {
                    // What the kernel cannot answer for: VLAN ports, NAT addresses.
                    if let Some(v) = &mut self.vlan {
                        v.hosts.heard(&mut self.engine, p.iface, p.frame());
                    }
                    for reply in self.host.answer(p.iface, p.frame(), &self.engine) {
                        self.send(p.iface, &reply);
                    }
                    continue;
                }
                if let Verdict::Forward { iface } | Verdict::Reply { iface, .. } = p.verdict {
                    if !self.send(iface, p.frame()) {
                        log::warn!("slow path: transmit ring of port {iface} full; frame dropped");
                    }
                }
            }
        }
        counters.socket_drops = self.socket_drops();
        publish(&self, counters);
    }

    /// Tells the program's flow map what happened to sessions (created, offloaded, freed).
    fn follow_flows(&mut self) {
        if let Some(f) = &mut self.flows {
            let events = self.engine.nat_mut().take_events();
            let offloads = self.engine.take_offloads();
            let ifindexes = &self.ifindexes;
            let ifindex = |i: usize| ifindexes.get(i).copied();
            let epoch = self.epoch.load(Ordering::SeqCst);
            f.cache.follow(&mut f.table, self.engine.generation(), epoch, &events, &offloads, ifindex);
        }
    }

    /// What the kernel dropped on the way into this worker's sockets, all ports together.
    fn socket_drops(&self) -> SocketDrops {
        let mut sum = SocketDrops::default();
        for s in self.socks.iter().flatten() {
            sum.add(s.drops());
        }
        sum
    }

    /// Waits until a socket has frames, or a millisecond at most (other workers' hand-offs and
    /// the periodic work have no fd to wait on). A plain sleep instead let a 512-frame ring
    /// overflow while the worker slept through the timer slack, and added its millisecond to
    /// every packet's latency.
    fn wait_for_frames(&self) {
        use std::os::fd::BorrowedFd;

        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let fds: Vec<i32> = self.socks.iter().flatten().map(PortIo::raw_fd).collect();
        // SAFETY: the sockets own these fds and outlive this call.
        let mut polled: Vec<PollFd> = fds
            .iter()
            .map(|&fd| PollFd::new(unsafe { BorrowedFd::borrow_raw(fd) }, PollFlags::POLLIN))
            .collect();
        if polled.is_empty() || poll(&mut polled, PollTimeout::from(1u8)).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends a frame out of engine interface `iface`, through this worker's first socket there.
    fn send(&mut self, iface: usize, frame: &[u8]) -> bool {
        self.socks.get_mut(iface).and_then(|s| s.first_mut()).is_some_and(|s| s.send(frame))
    }

    /// A next hop its engine found unresolved: the kernel's resolver asks on an untagged port;
    /// on a VLAN port, worker 0's VLAN duty does.
    fn missed(&mut self, iface: usize, vid: Option<u16>, addr: IpAddr, misses: &UnboundedSender<NextHop>) {
        match vid {
            None => {
                if let Some(&ifindex) = self.ifindexes.get(iface) {
                    let _ = misses.send((ifindex, addr));
                }
            }
            Some(vid) => match &mut self.vlan {
                Some(v) => {
                    if let Some((i, frame)) = v.hosts.ask_engine(iface, vid, addr) {
                        self.send(i, &frame);
                    }
                }
                None => {
                    let _ = self.vlan_asks.send((hutong_common::vlan_port_key(iface as u16, vid), addr));
                }
            },
        }
    }
}

/// Where a neighbor entry's port is in the engine: an interface's ifindex, or a VLAN port's key
/// (which names its interface's slot and its VLAN).
fn engine_port(ifindexes: &[u32], key: u32) -> Option<(usize, Option<u16>)> {
    match hutong_common::vlan_port_of(key) {
        Some((slot, vid)) => (usize::from(slot) < ifindexes.len()).then_some((slot.into(), Some(vid))),
        None => ifindexes.iter().position(|x| *x == key).map(|i| (i, None)),
    }
}

/// Makes the engine's neighbors those of the program's tables (through their pins, IPv4 then
/// IPv6): copies what is there, and forgets what is gone (the kernel dropped it, or a VLAN
/// neighbor aged out). If a table cannot be read, nothing is forgotten.
fn sync_neighbors(engine: &mut Engine, ifindexes: &[u32], [pin4, pin6]: &[PathBuf; 2]) {
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
        if let Some((i, vlan)) = engine_port(ifindexes, ifindex) {
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
