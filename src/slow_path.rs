//! The XDP engine's slow path: one AF_XDP socket per port (queue 0), a userspace engine with the
//! same config behind them, and a thread moving frames between the two. What the XDP program
//! hands over (IPv6, TTL expiry, ICMP errors, packets over the MTU) is decided here, with the
//! userspace engine's complete semantics, and sent out through the egress port's socket.

use std::{
    net::IpAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData};
use dataplane::{
    Config, Counters,
    buffer::{Packet, Verdict},
    engine::{Engine, Iface},
    port::afxdp::AfXdpPort,
    tables::PortHandle,
    xdp::XdpEngine,
};
use hutong_common::{MAP_NEIGH_V4, Neigh, NeighKey};
use tokio::sync::mpsc::UnboundedSender;

/// How often the slow path copies the neighbor table the program uses, and publishes its counters.
const NEIGHBOR_SYNC: Duration = Duration::from_millis(200);
/// Frames taken from one socket per round.
const BATCH: u32 = 64;

pub struct SlowPath {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Mutex<Counters>>,
}

impl SlowPath {
    /// Opens a socket on each port, registers it with the program, and starts the thread.
    /// `ports` are the config's ports in order with their interfaces; next hops the engine finds
    /// unresolved are reported on `misses`, for the neighbor resolver.
    pub fn start(
        config: &Config,
        ports: &[(String, PortHandle)],
        xdp: &mut XdpEngine,
        pin_dir: &Path,
        misses: UnboundedSender<NeighKey>,
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
        let engine =
            Engine::new(config.clone(), ifaces).map_err(|e| anyhow::anyhow!("slow-path engine: {e:?}"))?;
        let neighbors = pin_dir.join(MAP_NEIGH_V4);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let counters = Arc::new(Mutex::new(engine.counters.summary()));
        let published = counters.clone();
        let thread = std::thread::Builder::new()
            .name("slow-path".into())
            .spawn(move || run(socks, engine, ifindexes, &neighbors, &flag, &misses, &published))?;
        Ok(SlowPath { stop, thread: Some(thread), counters })
    }

    /// The slow-path engine's counters (its drops by reason, ICMP errors it sent), as of its
    /// last publication, at most [`NEIGHBOR_SYNC`] old; final once [`SlowPath::stop`] returned.
    pub fn counters(&self) -> Counters {
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

/// Copies the program's neighbor table (through its pin) into the engine.
fn sync_neighbors(engine: &mut Engine, ifindexes: &[u32], pin: &Path) {
    let Ok(data) = MapData::from_pin(pin) else { return };
    let Ok(table) = HashMap::<_, NeighKey, Neigh>::try_from(Map::HashMap(data)) else { return };
    for (k, v) in table.iter().flatten() {
        if let Some(i) = ifindexes.iter().position(|x| *x == k.ifindex) {
            engine.set_neighbor(i, None, IpAddr::from(k.addr), v.mac);
        }
    }
}

fn run(
    mut socks: Vec<AfXdpPort>,
    mut engine: Engine,
    ifindexes: Vec<u32>,
    neighbors: &Path,
    stop: &AtomicBool,
    misses: &UnboundedSender<NeighKey>,
    counters: &Mutex<Counters>,
) {
    let publish = |engine: &Engine| {
        if let Ok(mut c) = counters.lock() {
            *c = engine.counters.summary();
        }
    };
    let start = Instant::now();
    let mut synced = start - NEIGHBOR_SYNC;
    let mut batch: Vec<Packet> = Vec::with_capacity(BATCH as usize * socks.len());
    while !stop.load(Ordering::Relaxed) {
        if synced.elapsed() >= NEIGHBOR_SYNC {
            sync_neighbors(&mut engine, &ifindexes, neighbors);
            publish(&engine);
            synced = Instant::now();
        }
        for (i, s) in socks.iter_mut().enumerate() {
            s.recv(BATCH, |f| batch.push(Packet::new(i, f)));
        }
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        engine.process(&mut batch, start.elapsed().as_nanos() as u64);
        for (iface, _vlan, addr) in engine.take_misses() {
            if let (Some(&ifindex), IpAddr::V4(a)) = (ifindexes.get(iface), addr) {
                let _ = misses.send(NeighKey { ifindex, addr: a.octets() });
            }
        }
        for p in batch.drain(..) {
            if let Verdict::Forward { iface } | Verdict::Reply { iface, .. } = p.verdict {
                if let Some(s) = socks.get_mut(iface) {
                    if !s.send(p.frame()) {
                        log::warn!("slow path: transmit ring of port {iface} full; frame dropped");
                    }
                }
            }
        }
    }
    publish(&engine);
}
