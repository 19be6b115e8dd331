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

pub mod classify;
pub mod compiled;
pub mod counters;
pub mod held;
pub mod icmp;
pub mod reorder;
pub mod steer;
pub mod trace;
pub mod translate;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use arc_swap::ArcSwap;
use hutong_common::{Drop, Stat};
use rustc_hash::FxHashMap;

use crate::{
    Action, Config, ConfigError,
    buffer::{Packet, Verdict},
    fib::NextHop,
    nat::{self, Nat},
    packet::{self, Frag, L3, L4, Meta},
};
use classify::FlowKey;
pub use compiled::Compiled;
pub use counters::EngineCounters;
use icmp::{IcmpError, RateLimit};
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

/// A forwarding decision the XDP program may repeat for the following packets of the same
/// flow, recorded after [`Engine::track_offloads`]: a whole, untagged IPv4 TCP/UDP/ICMP-echo
/// packet of an established NAT session (or a published service's reply), without SYN, FIN or
/// RST, not hairpinned, leaving untagged and unencapsulated. See `crate::xdp::flows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    /// The packet as it arrived: VRF, protocol, addresses, ports (ICMP echo: the identifier and
    /// the type).
    pub vrf: u32,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// What it became.
    pub new_src: Ipv4Addr,
    pub new_dst: Ipv4Addr,
    pub new_sport: u16,
    pub new_dport: u16,
    /// The engine interface it left by, and the next hop there.
    pub iface: usize,
    pub next_hop: Ipv4Addr,
    /// The NAT session it depends on (outside key) and the remote endpoint it talks to, as
    /// the session's filtering remembers it; `None` when it depends on the config alone.
    pub session: Option<(u64, (u32, u16))>,
    /// The policy rule whose hit each repeated packet counts (a published service's inbound
    /// `dnat` rule), by position in the config.
    pub rule: Option<u32>,
}

/// Whether a plan may be repeated by the XDP program (see [`Offload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cache {
    No,
    /// For as long as this session lives and remembers this remote, or (no session) as long as
    /// the config.
    Yes(Option<(u64, (u32, u16))>),
}

/// At most this many offloads are kept between [`Engine::take_offloads`] calls.
const MAX_OFFLOADS: usize = 4096;

/// Where new configs are published; clone it to swap from another thread.
#[derive(Clone)]
pub struct ConfigHandle(Arc<ArcSwap<Compiled>>);

impl ConfigHandle {
    /// Validates and publishes `config`; running engines pick it up at their next batch.
    pub fn swap(&self, config: Config) -> Result<(), Vec<ConfigError>> {
        config.validate()?;
        self.0.store(Arc::new(Compiled::new(config)));
        Ok(())
    }

    pub fn current(&self) -> Arc<Compiled> {
        self.0.load_full()
    }
}

/// Multicast (ff00::/8) or link-local unicast (fe80::/10).
fn link_scope(a: std::net::Ipv6Addr) -> bool {
    a.is_multicast() || a.is_unicast_link_local()
}

/// A resolved next hop's MAC, keyed by interface (engine index), VLAN and address.
type NeighborKey = (usize, Option<u16>, IpAddr);

/// The neighbor table. IPv4 keys are packed into one `u64` (interface, VLAN + 1, address), and
/// a small direct-mapped cache in front of the map answers the common case (traffic to a few
/// next hops) without hashing; that lookup is on every forwarded packet.
#[derive(Debug)]
struct Neighbors {
    v4: FxHashMap<u64, [u8; 6]>,
    v6: FxHashMap<(usize, Option<u16>, u128), [u8; 6]>,
    /// (packed key, MAC); key 0 (interface 0, untagged, 0.0.0.0) is never a neighbor: empty.
    cache: Box<[(u64, [u8; 6]); NEIGH_CACHE]>,
}

const NEIGH_CACHE: usize = 256;

impl Default for Neighbors {
    fn default() -> Self {
        Neighbors {
            v4: FxHashMap::default(),
            v6: FxHashMap::default(),
            cache: Box::new([(0, [0; 6]); NEIGH_CACHE]),
        }
    }
}

impl Neighbors {
    fn pack((iface, vlan, _): NeighborKey, a: u32) -> u64 {
        ((iface as u64) << 45) | ((vlan.map_or(0, |v| v as u64 + 1)) << 32) | a as u64
    }

    fn slot(key: u64) -> usize {
        ((key ^ (key >> 29)) as usize) % NEIGH_CACHE
    }

    #[inline]
    fn get(&mut self, k: NeighborKey) -> Option<[u8; 6]> {
        match k.2 {
            IpAddr::V4(a) => {
                let key = Self::pack(k, u32::from(a));
                let slot = &mut self.cache[Self::slot(key)];
                if slot.0 == key {
                    return Some(slot.1);
                }
                let mac = *self.v4.get(&key)?;
                *slot = (key, mac);
                Some(mac)
            }
            IpAddr::V6(a) => self.v6.get(&(k.0, k.1, u128::from(a))).copied(),
        }
    }

    fn insert(&mut self, k: NeighborKey, mac: [u8; 6]) {
        match k.2 {
            IpAddr::V4(a) => {
                let key = Self::pack(k, u32::from(a));
                self.v4.insert(key, mac);
                let slot = &mut self.cache[Self::slot(key)];
                if slot.0 == key {
                    slot.1 = mac;
                }
            }
            IpAddr::V6(a) => {
                self.v6.insert((k.0, k.1, u128::from(a)), mac);
            }
        }
    }

    fn remove(&mut self, k: NeighborKey) {
        match k.2 {
            IpAddr::V4(a) => {
                let key = Self::pack(k, u32::from(a));
                self.v4.remove(&key);
                let slot = &mut self.cache[Self::slot(key)];
                if slot.0 == key {
                    *slot = (0, [0; 6]);
                }
            }
            IpAddr::V6(a) => {
                self.v6.remove(&(k.0, k.1, u128::from(a)));
            }
        }
    }

    fn keys(&self) -> Vec<NeighborKey> {
        let v4 = self.v4.keys().map(|k| {
            let vlan = ((k >> 32) & 0x1fff) as u16;
            ((k >> 45) as usize, vlan.checked_sub(1), IpAddr::V4(Ipv4Addr::from(*k as u32)))
        });
        v4.chain(self.v6.keys().map(|(i, v, a)| (*i, *v, IpAddr::V6((*a).into())))).collect()
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

/// At most this many unresolved next hops are remembered between resolver runs.
const MAX_MISSES: usize = 1024;

/// A flow hash for ECMP: the same 5-tuple always picks the same path.
fn flow_hash(k: &FlowKey) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: u64| h = (h ^ x).wrapping_mul(0x0000_0100_0000_01b3);
    for a in [k.src, k.dst] {
        match a {
            IpAddr::V4(v) => mix(u32::from(v) as u64),
            IpAddr::V6(v) => {
                let b = u128::from(v);
                mix(b as u64);
                mix((b >> 64) as u64);
            }
        }
    }
    let (s, d) = k.ports.unwrap_or((0, 0));
    mix(((k.proto as u64) << 32) | ((s as u64) << 16) | d as u64);
    (h ^ (h >> 32)) as u32
}

/// The translation decided for a packet, before anything is written.
#[derive(Clone, Copy, Debug)]
struct Plan {
    src: IpAddr,
    dst: IpAddr,
    vrf: u32,
    /// A fixed egress from a route-via rule, instead of a FIB lookup.
    via: Option<NextHop>,
    /// New transport ports (or the ICMP echo identifier, twice) from a NAT session.
    ports: Option<(u16, u16)>,
    /// New ports of the packet quoted in an ICMP error (RFC 5508).
    emb_ports: Option<EmbeddedPorts>,
    cache: Cache,
}

#[derive(Clone, Copy, Debug, Default)]
struct EmbeddedPorts {
    src: Option<u16>,
    dst: Option<u16>,
}

impl Plan {
    fn from_xlat(x: nat::Xlat, ports: bool) -> Plan {
        Plan {
            src: IpAddr::V4(Ipv4Addr::from(x.src)),
            dst: IpAddr::V4(Ipv4Addr::from(x.dst)),
            vrf: x.vrf,
            via: None,
            ports: ports.then_some((x.sport, x.dport)),
            emb_ports: None,
            cache: Cache::No,
        }
    }

    /// The plan of a whole packet of a session (`remote` is its far end as the session's
    /// filtering remembers it): the XDP program may repeat it.
    fn cached(mut self, x: &nat::Xlat, remote: (u32, u16)) -> Plan {
        self.cache = Cache::Yes(x.session.map(|k| (k, remote)));
        self
    }
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
                        proto: match s.proto {
                            nat::sessions::TCP => 6,
                            nat::sessions::UDP => 17,
                            _ => 1,
                        },
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

    /// From now on, records the decisions the XDP program may repeat ([`Offload`]) and what
    /// happens to NAT sessions ([`nat::NatEvent`]).
    pub fn track_offloads(&mut self) {
        self.offloads.get_or_insert_with(Vec::new);
        self.nat.track_events();
    }

    /// The offloads recorded since the last call.
    pub fn take_offloads(&mut self) -> Vec<Offload> {
        self.offloads.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Grows with every config the engine adopts; an offload holds only within its generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Records the MAC of a next hop (from the daemon's resolver, or a test).
    pub fn set_neighbor(&mut self, iface: usize, vlan: Option<u16>, addr: IpAddr, mac: [u8; 6]) {
        self.neighbors.insert((iface, vlan, addr), mac);
    }

    /// Makes packets towards an unresolved next hop wait for it (see [`held`]), and later
    /// fragments of a NAT'd datagram wait for their first fragment (see [`reorder`]), instead of
    /// being dropped; [`Engine::take_released`] hands them out.
    pub fn hold_unresolved(&mut self) {
        self.held.get_or_insert_with(held::Held::default);
        self.reorder.get_or_insert_with(reorder::Waiting::default);
    }

    /// Held packets whose next hop is known now, completed and counted as forwarded (their
    /// verdict says where to); those that waited too long are counted as `no_neighbor` drops.
    pub fn take_released(&mut self, now_ns: u64) -> Vec<Packet> {
        let mut out = std::mem::take(&mut self.released);
        let Some(h) = self.held.as_mut().filter(|h| !h.is_empty()) else { return out };
        let neighbors = &mut self.neighbors;
        let done = h.take(now_ns, |k| neighbors.get(*k));
        for (mut e, mac) in done {
            match mac {
                Some(mac) => {
                    e.pkt.frame_mut()[..6].copy_from_slice(&mac);
                    e.pkt.verdict = Verdict::Forward { iface: e.out_iface };
                    self.counters.stats[Stat::Forwarded as usize] += 1;
                    self.counters.port_tx_packets.add(e.phys, 1);
                    self.counters.port_tx_bytes.add(e.phys, e.pkt.frame().len() as u64);
                    out.push(e.pkt);
                }
                None => self.counters.drops[Drop::NoNeighbor as usize] += 1,
            }
        }
        out
    }

    /// Forgets the MAC of a next hop (its entry went from the neighbor table).
    pub fn forget_neighbor(&mut self, iface: usize, vlan: Option<u16>, addr: IpAddr) {
        self.neighbors.remove((iface, vlan, addr));
    }

    /// Every next hop the engine knows a MAC for.
    pub fn neighbor_keys(&self) -> Vec<(usize, Option<u16>, IpAddr)> {
        self.neighbors.keys()
    }

    /// Unresolved next hops seen since the last call, for the resolver to ask about.
    pub fn take_misses(&mut self) -> Vec<(usize, Option<u16>, IpAddr)> {
        std::mem::take(&mut self.misses)
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

    /// A later fragment refused as `fragment_unknown` waits for its first fragment, when
    /// holding is on and there is room (see [`reorder`]).
    fn wait_if_early(&mut self, pkt: &Packet, verdict: Verdict, now_ns: u64) -> Verdict {
        let key = self.unknown_fragment.take();
        let (Some(w), Some(key), Verdict::Drop(Drop::FragmentUnknown)) =
            (self.reorder.as_mut(), key, verdict)
        else {
            return verdict;
        };
        if !w.hold(key, pkt, now_ns) {
            return verdict;
        }
        self.counters.stats[Stat::FragmentsHeld as usize] += 1;
        Verdict::Pending
    }

    /// Runs the fragments whose first fragment was translated in this batch, now that their
    /// translation is known, and drops (and counts) those that waited in vain.
    fn release_fragments(&mut self, t: &Arc<Compiled>, now_ns: u64) {
        if self.reorder.is_none() {
            return;
        }
        self.expire_fragments(now_ns);
        let mut ready = Vec::new();
        for key in std::mem::take(&mut self.fragments_ready) {
            ready.extend(self.reorder.as_mut().map(|w| w.take(key)).unwrap_or_default());
        }
        for mut pkt in ready {
            self.rerun = true;
            let verdict = self.one(t, &mut pkt, now_ns, &mut None);
            self.rerun = false;
            self.unknown_fragment = None;
            self.finish(&mut pkt, verdict);
            if matches!(pkt.verdict, Verdict::Forward { .. } | Verdict::Reply { .. }) {
                self.released.push(pkt);
            }
        }
    }

    /// Expires waiting fragments on the worker's timer too (see `Engine::expire`).
    fn expire_fragments(&mut self, now_ns: u64) {
        if let Some(w) = self.reorder.as_mut() {
            let expired = w.expire(now_ns);
            self.counters.drops[Drop::FragmentUnknown as usize] += expired as u64;
        }
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
        steps.push(Step::new("verdict", format!("{:?}", pkt.verdict)));
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

    /// Learns the sender of an ARP packet addressed to one of our addresses, if the sender is
    /// on a connected subnet of the port it came in on (as the XDP program does).
    fn glean_arp(&mut self, t: &Compiled, pkt: &Packet, m: &Meta, port: usize) {
        let f = pkt.frame();
        let Some(arp) = f.get(m.l3_off..m.l3_off + 28) else { return };
        if arp[0..6] != [0, 1, 8, 0, 6, 4] {
            return;
        }
        let sender = IpAddr::V4(Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]));
        let target = IpAddr::V4(Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]));
        let vrf = t.ports[port].vrf;
        if !t.is_local(vrf, target) {
            return;
        }
        let on_link = t.fib.lookup(vrf, sender, 0).is_some_and(|h| h.port == port && h.via.is_none());
        if on_link {
            let mac: [u8; 6] = arp[8..14].try_into().expect("6 bytes");
            self.neighbors.insert((pkt.iface, m.vlan, sender), mac);
        }
    }

    /// The whole pipeline for one packet.
    fn one(&mut self, t: &Compiled, pkt: &mut Packet, now_ns: u64, tr: &mut Option<Vec<Step>>) -> Verdict {
        self.decapsulated = false;
        if !self.rerun {
            self.counters.stats[Stat::Received as usize] += 1;
        }
        let len = pkt.frame().len() as u64;
        macro_rules! step {
            ($stage:expr, $($fmt:tt)*) => {
                if let Some(s) = tr.as_mut() {
                    s.push(Step::new($stage, format!($($fmt)*)));
                }
            };
        }

        let mut m = match packet::parse(pkt.frame()) {
            Ok(m) => m,
            Err(d) => {
                step!("parse", "{}", d.name());
                return Verdict::Drop(d);
            }
        };
        step!("parse", "{m}");
        let Some(port) = self.port_of(pkt.iface, m.vlan) else {
            step!("port", "no port for interface {} VLAN {:?}", pkt.iface, m.vlan);
            return Verdict::Drop(Drop::UnknownPort);
        };
        if !self.rerun {
            self.counters.port_rx_packets.add(port, 1);
            self.counters.port_rx_bytes.add(port, len);
        }
        let mut port = port;
        let mut vrf = t.ports[port].vrf;
        step!("port", "{} → VRF {vrf}", t.config.ports[port].key());

        // GRE from a tunnel's remote end to its local end: continue with the inner packet, as
        // received on the tunnel port.
        if let (L3::V4 { src, dst }, packet::gre::IPPROTO_GRE) = (m.l3, m.proto) {
            if let Some(tp) = t.tunnel(vrf, u32::from(dst), u32::from(src)) {
                if m.frag != Frag::Whole {
                    step!("tunnel", "fragmented GRE is not reassembled");
                    return Verdict::Drop(Drop::UnsupportedProtocol);
                }
                let (inner, ethertype, key) = match packet::gre::parse(pkt.frame(), &m) {
                    Ok(x) => x,
                    Err(d) => return Verdict::Drop(d),
                };
                if key != t.ports[tp].tunnel.as_ref().and_then(|x| x.key) {
                    step!("tunnel", "GRE key {key:?} is not the tunnel's");
                    return Verdict::Drop(Drop::UnknownPort);
                }
                pkt.decapsulate(inner, ethertype);
                self.decapsulated = true;
                m = match packet::parse(pkt.frame()) {
                    Ok(inner) => inner,
                    Err(d) => return Verdict::Drop(d),
                };
                port = tp;
                vrf = t.ports[tp].vrf;
                self.counters.port_rx_packets.add(port, 1);
                self.counters.port_rx_bytes.add(port, pkt.frame().len() as u64);
                step!("tunnel", "decapsulated on {} → VRF {vrf}: {m}", t.config.ports[tp].key());
            }
        }

        let (src, dst) = match m.l3 {
            L3::Arp => {
                self.glean_arp(t, pkt, &m, port);
                step!("host", "ARP goes to the host stack");
                return Verdict::ToHost;
            }
            L3::V4 { src, dst } => (IpAddr::V4(src), IpAddr::V4(dst)),
            L3::V6 { src, dst } => (IpAddr::V6(src), IpAddr::V6(dst)),
        };
        if t.is_local(vrf, dst) {
            step!("host", "{dst} is the gateway's own address");
            return Verdict::ToHost;
        }
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
            // Link-scope and multicast destinations (NDP, MLD, router discovery) are never
            // forwarded: the host stack's. Neither are packets from the unspecified or a
            // link-local source (RFC 4291 2.5.2, 2.5.6).
            if link_scope(d) {
                step!("host", "{dst} is link-scope or multicast");
                return Verdict::ToHost;
            }
            if s.is_unspecified() || link_scope(s) {
                step!("route", "{src} never leaves its link");
                return Verdict::Drop(Drop::NoRoute);
            }
        }
        if m.ttl <= 1 {
            step!("ttl", "TTL {} expires here", m.ttl);
            return self.icmp_error(t, pkt, &m, port, IcmpError::TimeExceeded, now_ns, tr, Drop::TtlExpired);
        }

        let ports = match m.l4 {
            L4::Ports { src, dst, .. } => Some((src, dst)),
            _ => None,
        };
        let key = FlowKey { vrf, src, dst, proto: m.proto, ports };
        let now_s = (now_ns / 1_000_000_000) as u32;
        let emb = packet::embedded::parse(pkt.frame(), &m);
        let mut offload_rule = None;

        // Sessions first: return traffic and established flows pass as their session says.
        let plan = match self.stateful(&m, vrf, emb.as_ref(), now_s) {
            Err(d) => {
                step!("nat", "{}", d.name());
                return Verdict::Drop(d);
            }
            Ok(Some(plan)) => {
                step!("nat", "existing session");
                plan
            }
            // An echo request to a pool's or a service's address, no session's: the gateway
            // answers for its NAT addresses as for its own.
            Ok(None)
                if m.proto == packet::IPPROTO_ICMP
                    && matches!(m.l4, L4::Icmp { kind: 8, .. })
                    && m.frag == Frag::Whole
                    && t.is_nat_address(vrf, dst) =>
            {
                step!("host", "echo request to {dst}, a NAT address: the host stack answers");
                return Verdict::ToHost;
            }
            Ok(None) => {
                let hits = &mut self.counters.rule_hits;
                let mut counted = false;
                let rule = t.rules.classify(&key, |i| {
                    hits.add(i, 1);
                    counted = true;
                });
                let Some(rule) = rule else {
                    step!("classify", "no rule matches in VRF {vrf}: default deny");
                    return Verdict::Drop(Drop::NoTranslation);
                };
                self.counters.rule_hits.add(rule, 1);
                let r = &t.rules.rules[rule];
                step!("classify", "rule {:?} → {:?}", r.name, r.action);
                match self.plan(t, &r.action, &m, vrf, src, dst, emb.is_some(), now_s) {
                    // A published service's inbound packets may be repeated by the program,
                    // which counts the rule's hit itself (no count rule may have matched too).
                    Ok(p) if r.action == Action::Dnat && !counted && m.frag == Frag::Whole => {
                        offload_rule = Some(rule as u32);
                        Plan { cache: Cache::Yes(None), ..p }
                    }
                    Ok(p) => p,
                    Err(Drop::PortsExhausted) => {
                        step!("nat", "ports exhausted");
                        let kind = IcmpError::AdminProhibited;
                        return self.icmp_error(t, pkt, &m, port, kind, now_ns, tr, Drop::PortsExhausted);
                    }
                    Err(d) => {
                        step!("translate", "{}", d.name());
                        return Verdict::Drop(d);
                    }
                }
            }
        };
        if (plan.src, plan.dst) != (src, dst) || plan.ports.is_some_and(|p| Some(p) != ports) {
            match plan.ports {
                Some((a, b)) if m.proto != packet::IPPROTO_ICMP => step!(
                    "translate",
                    "{src} → {dst} becomes {}:{a} → {}:{b} in VRF {}",
                    plan.src,
                    plan.dst,
                    plan.vrf
                ),
                _ => step!(
                    "translate",
                    "{src} → {dst} becomes {} → {} in VRF {}",
                    plan.src,
                    plan.dst,
                    plan.vrf
                ),
            }
        }

        let hop = match plan.via {
            Some(h) => h,
            None => match t.fib.lookup_with(plan.vrf, plan.dst, || flow_hash(&key)) {
                Some(h) => h,
                None => {
                    step!("route", "no route to {} in VRF {}", plan.dst, plan.vrf);
                    return Verdict::Drop(Drop::NoRoute);
                }
            },
        };
        // A tunnel port is a route's egress too: its packets then leave, encapsulated, through
        // the physical port that reaches the tunnel's remote end in the underlay VRF.
        let via_port = &t.ports[hop.port];
        let mut next = hop.via.unwrap_or(plan.dst);
        let mut phys = hop.port;
        step!("route", "via {} out of {}", next, t.config.ports[hop.port].key());
        if let Some(tun) = &via_port.tunnel {
            let remote = IpAddr::V4(tun.remote);
            let under =
                t.fib.lookup(tun.underlay_vrf, remote, 0).filter(|u| t.ports[u.port].tunnel.is_none());
            let Some(under) = under else {
                step!("tunnel", "no route to tunnel end {remote} in VRF {}", tun.underlay_vrf);
                return Verdict::Drop(Drop::NoRoute);
            };
            phys = under.port;
            next = under.via.unwrap_or(remote);
            step!("tunnel", "GRE to {remote}, via {next} out of {}", t.config.ports[phys].key());
        }
        let egress = &t.ports[phys];

        if m.ip_len() > via_port.mtu as usize {
            let df = match m.l3 {
                L3::V4 { .. } => pkt.frame()[m.l3_off + 6] & 0x40 != 0,
                _ => true,
            };
            step!(
                "mtu",
                "{} bytes exceed MTU {} (DF {df}); the gateway does not fragment",
                m.ip_len(),
                via_port.mtu
            );
            if df {
                let kind = IcmpError::TooBig { mtu: via_port.mtu };
                return self.icmp_error(t, pkt, &m, port, kind, now_ns, tr, Drop::TooBig);
            }
            return Verdict::Drop(Drop::TooBig);
        }

        // Only an engine behind the XDP program records offloads; others skip the work.
        let offload = match plan.cache {
            Cache::Yes(session)
                if self.offloads.is_some() && egress.vlan.is_none() && via_port.tunnel.is_none() =>
            {
                offload_of(&m, vrf, &plan, session)
            }
            _ => None,
        };
        let Some(out_iface) = self.from_compiled.get(egress.iface).copied().flatten() else {
            step!("neighbor", "the engine does not run on the egress interface");
            return Verdict::Drop(Drop::NoRoute);
        };
        let nkey = (out_iface, egress.vlan, next);
        let mut hold = None;
        let dst_mac = match self.neighbors.get(nkey) {
            Some(mac) => mac,
            None if self.assume_neighbors => {
                step!(
                    "neighbor",
                    "{next}: not resolved in an offline trace (the gateway resolves it by ARP/NDP)"
                );
                [0; 6]
            }
            None => {
                if self.misses.len() < MAX_MISSES && !self.misses.contains(&nkey) {
                    self.misses.push(nkey);
                }
                if self.held.as_ref().is_some_and(|h| h.has_room(&nkey, pkt.frame().len())) {
                    step!("neighbor", "{next} is not resolved yet: the packet waits for it");
                    hold = Some(nkey);
                    [0; 6]
                } else {
                    step!("neighbor", "{next} is not resolved yet");
                    return Verdict::Drop(Drop::NoNeighbor);
                }
            }
        };

        // --- rewrite: nothing below can fail -----------------------------------------------------
        let f = pkt.frame_mut();
        match (plan.src, plan.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                if IpAddr::V4(s) != src {
                    packet::rewrite::set_ipv4_addr(f, &mut m, true, s);
                }
                if IpAddr::V4(d) != dst {
                    packet::rewrite::set_ipv4_addr(f, &mut m, false, d);
                }
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                if IpAddr::V6(s) != src {
                    packet::rewrite::set_ipv6_addr(f, &mut m, true, s);
                }
                if IpAddr::V6(d) != dst {
                    packet::rewrite::set_ipv6_addr(f, &mut m, false, d);
                }
            }
            _ => unreachable!("translations keep the address family"),
        }
        if let Some((sp, dp)) = plan.ports {
            match m.l4 {
                L4::Ports { src: a, dst: b, .. } => {
                    if sp != a {
                        packet::rewrite::set_port(f, &mut m, true, sp);
                    }
                    if dp != b {
                        packet::rewrite::set_port(f, &mut m, false, dp);
                    }
                }
                L4::Icmp { ident, .. } => {
                    let new = if sp != ident { sp } else { dp };
                    if new != ident {
                        packet::rewrite::set_icmp_ident(f, &mut m, new);
                    }
                }
                L4::Opaque => {}
            }
        }
        if let Some(mut e) = emb {
            // RFC 5508: the quoted packet went the other way; it takes the reverse translation.
            let (old_src, old_dst) = (src, dst);
            let mut changed = false;
            if let (IpAddr::V4(new_dst), IpAddr::V4(od)) = (plan.dst, old_dst) {
                if IpAddr::V4(e.src) == IpAddr::V4(od) && new_dst != od {
                    packet::embedded::set_addr(f, &mut e, true, new_dst);
                    changed = true;
                }
            }
            if let (IpAddr::V4(new_src), IpAddr::V4(os)) = (plan.src, old_src) {
                if e.dst == os && new_src != os {
                    packet::embedded::set_addr(f, &mut e, false, new_src);
                    changed = true;
                }
            }
            if let Some(fix) = plan.emb_ports {
                if let Some(p) = fix.src {
                    packet::embedded::set_port(f, &mut e, true, p);
                }
                if let Some(p) = fix.dst {
                    packet::embedded::set_port(f, &mut e, false, p);
                }
                changed = true;
            }
            if changed {
                packet::embedded::fix_icmp_checksum(f, &m);
            }
        }
        if let (Some((ip_off, es, ed)), IpAddr::V6(os), IpAddr::V6(od), IpAddr::V6(ns), IpAddr::V6(nd)) =
            (packet::embedded::parse_v6(f, &m), src, dst, plan.src, plan.dst)
        {
            // RFC 6296 with ICMPv6 errors: the quoted packet takes the reverse translation.
            if es == od && nd != od {
                packet::embedded::set_addr_v6(f, ip_off, true, nd);
            }
            if ed == os && ns != os {
                packet::embedded::set_addr_v6(f, ip_off, false, ns);
            }
        }
        packet::rewrite::decrement_ttl(f, &mut m);
        let mut vlan_in = m.vlan;
        if let Some(tun) = &via_port.tunnel {
            let inner = if matches!(m.l3, L3::V4 { .. }) { packet::ETH_P_IPV4 } else { packet::ETH_P_IPV6 };
            let outer = packet::gre::outer(tun.local, tun.remote, m.ip_len(), inner, tun.key);
            pkt.encapsulate(m.l3_off, m.end, &outer);
            vlan_in = None;
            self.counters.port_tx_packets.add(hop.port, 1);
        }
        let f = pkt.frame_mut();
        packet::rewrite::set_macs(f, dst_mac, self.ifaces[out_iface].mac);
        match (vlan_in, egress.vlan) {
            (None, Some(v)) => pkt.push_vlan(v),
            (Some(_), None) => pkt.pop_vlan(),
            (Some(a), Some(b)) if a != b => {
                let tci = u16::from_be_bytes([f[14], f[15]]);
                f[14..16].copy_from_slice(&((tci & 0xf000) | b).to_be_bytes());
            }
            _ => {}
        }
        if let (Some(key), Some(h)) = (hold, self.held.as_mut()) {
            // Counted when it leaves (or is given up); its flow is offloaded by a later packet.
            let deadline_ns = now_ns + held::WAIT_NS;
            h.push(held::Entry { key, pkt: pkt.clone(), out_iface, phys, deadline_ns });
            return Verdict::Pending;
        }
        self.counters.port_tx_packets.add(phys, 1);
        self.counters.port_tx_bytes.add(phys, pkt.frame().len() as u64);
        step!("rewrite", "TTL {}, out of {} to {}", m.ttl, self.ifaces[out_iface].name, fmt_mac(&dst_mac));
        if let (Some(mut o), Some(list), IpAddr::V4(next)) = (offload, self.offloads.as_mut(), next) {
            if list.len() < MAX_OFFLOADS {
                o.iface = out_iface;
                o.next_hop = next;
                o.rule = offload_rule;
                list.push(o);
            }
        }
        Verdict::Forward { iface: out_iface }
    }

    /// Decides the translation for a matched rule without touching the packet.
    #[allow(clippy::too_many_arguments)]
    fn plan(
        &mut self,
        t: &Compiled,
        action: &Action,
        m: &Meta,
        vrf: u32,
        src: IpAddr,
        dst: IpAddr,
        is_error: bool,
        now_s: u32,
    ) -> Result<Plan, Drop> {
        let same = Plan { src, dst, vrf, via: None, ports: None, emb_ports: None, cache: Cache::No };
        match action {
            Action::Napt { pool } => {
                // An ICMP error never opens a session; it can only follow one (RFC 5508).
                let tuple = if is_error { None } else { nat_tuple(m, vrf) };
                let Some(tuple) = tuple else {
                    return Err(match (m.frag, m.l3) {
                        (Frag::Later { id }, L3::V4 { src, dst }) => {
                            self.unknown_fragment =
                                Some((vrf, u32::from(src), u32::from(dst), m.proto, id as u16));
                            Drop::FragmentUnknown
                        }
                        _ => Drop::NoTranslation,
                    });
                };
                let idx =
                    t.config.nat_pools.iter().position(|p| p.name == *pool).ok_or(Drop::NoTranslation)?
                        as u16;
                let mut x = self.nat.create(idx, &tuple, now_s)?;
                let ours = self.nat.hairpin(&mut x, tuple.class, now_s);
                self.remember_fragment(m, vrf, x, now_s);
                let plan = Plan::from_xlat(x, true);
                if m.frag == Frag::Whole && !ours {
                    let rport = if tuple.class == nat::sessions::ICMP { 0 } else { tuple.dport };
                    return Ok(plan.cached(&x, (tuple.dst, rport)));
                }
                Ok(plan)
            }
            Action::Dnat => {
                let tuple = if is_error { None } else { nat_tuple(m, vrf) };
                let x = tuple.and_then(|tu| self.nat.service_inbound(&tu)).ok_or(Drop::NoTranslation)?;
                self.remember_fragment(m, vrf, x, now_s);
                Ok(Plan::from_xlat(x, true))
            }
            Action::Permit => Ok(same),
            Action::Deny => Err(Drop::PolicyDeny),
            Action::Count => unreachable!("count rules never decide"),
            Action::RouteVia { port, via } => {
                let port = t.config.ports.iter().position(|p| p.key() == *port).ok_or(Drop::NoRoute)?;
                Ok(Plan { via: Some(NextHop { port, via: *via }), ..same })
            }
            Action::Netmap => {
                let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else { return Err(Drop::NoTranslation) };
                let find = |idx: &[compiled::NatIndex], a: Ipv4Addr| {
                    idx.get(vrf as usize).and_then(|x| x.v4.as_ref()).and_then(|l| l.lookup(u32::from(a)))
                };
                if let Some(i) = find(&t.nat_inside, s) {
                    let n = &t.config.netmaps[i as usize];
                    Ok(Plan { src: IpAddr::V4(translate::netmap(s, n.outside)), vrf: n.outside_vrf, ..same })
                } else if let Some(i) = find(&t.nat_outside, d) {
                    let n = &t.config.netmaps[i as usize];
                    Ok(Plan { dst: IpAddr::V4(translate::netmap(d, n.inside)), vrf: n.inside_vrf, ..same })
                } else {
                    Err(Drop::NoTranslation)
                }
            }
            Action::Nptv6 => {
                let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else { return Err(Drop::NoTranslation) };
                let find = |idx: &[compiled::NatIndex], a| {
                    idx.get(vrf as usize)
                        .and_then(|x| x.v6.iter().find(|(n, _)| n.contains(&a)).map(|(_, i)| *i))
                };
                if let Some(i) = find(&t.nat_inside, s) {
                    let n = &t.config.nptv6[i];
                    let s2 = translate::nptv6(s, n.inside, n.outside).ok_or(Drop::NoTranslation)?;
                    Ok(Plan { src: IpAddr::V6(s2), vrf: n.outside_vrf, ..same })
                } else if let Some(i) = find(&t.nat_outside, d) {
                    let n = &t.config.nptv6[i];
                    let d2 = translate::nptv6(d, n.outside, n.inside).ok_or(Drop::NoTranslation)?;
                    Ok(Plan { dst: IpAddr::V6(d2), vrf: n.inside_vrf, ..same })
                } else {
                    Err(Drop::NoTranslation)
                }
            }
        }
    }

    /// Remembers a first fragment's NAT translation for the datagram's later fragments.
    fn remember_fragment(&mut self, m: &Meta, vrf: u32, x: nat::Xlat, now_s: u32) {
        if let (Frag::First { id }, L3::V4 { src, dst }) = (m.frag, m.l3) {
            let key = (vrf, u32::from(src), u32::from(dst), m.proto, id as u16);
            self.nat.remember_fragment(key, x, now_s);
            if self.reorder.as_ref().is_some_and(|w| !w.is_empty()) {
                self.fragments_ready.push(key);
            }
        }
    }

    /// The NAT session stage: a packet of an existing session (either direction), a later
    /// fragment of a translated datagram, or an ICMP error about a session's packet.
    fn stateful(
        &mut self,
        m: &Meta,
        vrf: u32,
        emb: Option<&packet::embedded::Embedded>,
        now: u32,
    ) -> Result<Option<Plan>, Drop> {
        let L3::V4 { src, dst } = m.l3 else { return Ok(None) };
        if !self.nat.involved(vrf) {
            return Ok(None);
        }
        let (s, d) = (u32::from(src), u32::from(dst));
        if let Frag::Later { id } = m.frag {
            let key = (vrf, s, d, m.proto, id as u16);
            let x = self.nat.recall_fragment(key, now);
            // To a pool's or a service's address, it can only be a session's: its first
            // fragment has not come yet.
            if x.is_none() && self.nat.is_outside_address(vrf, d) {
                self.unknown_fragment = Some(key);
                return Err(Drop::FragmentUnknown);
            }
            return Ok(x.map(|x| Plan::from_xlat(x, false)));
        }
        if let Some(e) = emb {
            // The quoted packet went the other way: its destination is our side of the session.
            let (Some((qs, qd)), Some(class)) = (e.ports, nat::class(e.proto)) else { return Ok(None) };
            let t = nat::Tuple {
                vrf,
                class,
                src: u32::from(e.dst),
                dst: u32::from(e.src),
                sport: qd,
                dport: qs,
                flags: 0,
            };
            if let Some(x) = self.nat.outbound_existing(&t, now) {
                // From inside: the outer source and the quoted destination become the mapping.
                let mut p = Plan::from_xlat(nat::Xlat { dst: d, ..x }, false);
                p.emb_ports = Some(EmbeddedPorts { src: None, dst: Some(x.sport) });
                return Ok(Some(p));
            }
            if let Some(x) = self.nat.inbound_existing(&t, now)? {
                // From outside: the outer destination and the quoted source go back inside.
                let mut p = Plan::from_xlat(nat::Xlat { src: s, ..x }, false);
                p.emb_ports = Some(EmbeddedPorts { src: Some(x.dport), dst: None });
                return Ok(Some(p));
            }
            return Ok(None);
        }
        let Some(t) = nat_tuple(m, vrf) else { return Ok(None) };
        let remote_port = |p: u16| if t.class == nat::sessions::ICMP { 0 } else { p };
        if let Some(mut x) = self.nat.outbound_existing(&t, now) {
            // A packet to one of our own mappings depends on two sessions (and on the other's
            // filtering): the engine keeps it.
            let ours = self.nat.hairpin(&mut x, t.class, now);
            self.remember_fragment(m, vrf, x, now);
            let plan = Plan::from_xlat(x, true);
            let whole = m.frag == Frag::Whole && !ours;
            return Ok(Some(if whole { plan.cached(&x, (t.dst, remote_port(t.dport))) } else { plan }));
        }
        if let Some(x) = self.nat.inbound_existing(&t, now)? {
            self.remember_fragment(m, vrf, x, now);
            let plan = Plan::from_xlat(x, true);
            let whole = m.frag == Frag::Whole;
            return Ok(Some(if whole { plan.cached(&x, (t.src, remote_port(t.sport))) } else { plan }));
        }
        Ok(None)
    }

    /// The packet is dropped for `reason`; where the RFCs ask for it and the rate limit allows,
    /// it is replaced by an ICMP error back to its sender.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        m: &Meta,
        port: usize,
        kind: IcmpError,
        now_ns: u64,
        tr: &mut Option<Vec<Step>>,
        reason: Drop,
    ) -> Verdict {
        if t.ports[port].tunnel.is_some() {
            // Answering would need the error encapsulated back through the tunnel; not yet.
            return Verdict::Drop(reason);
        }
        let want_v4 = matches!(m.l3, L3::V4 { .. });
        let from = t.config.ports[port].addresses.iter().map(|a| a.addr()).find(|a| a.is_ipv4() == want_v4);
        let mac = self.ifaces[pkt.iface].mac;
        let Some(reply) = from.and_then(|from| icmp::answer(pkt.frame(), m, kind, from, mac)) else {
            return Verdict::Drop(reason);
        };
        if !self.icmp.allow(now_ns) {
            self.counters.stats[Stat::IcmpSuppressed as usize] += 1;
            if let Some(s) = tr.as_mut() {
                s.push(Step::new("icmp", "error suppressed by the rate limit".into()));
            }
            return Verdict::Drop(reason);
        }
        if let Some(s) = tr.as_mut() {
            s.push(Step::new("icmp", format!("{kind:?} back out of {}", self.ifaces[pkt.iface].name)));
        }
        pkt.replace(&reply);
        self.counters.stats[Stat::IcmpErrors as usize] += 1;
        self.counters.port_tx_packets.add(port, 1);
        self.counters.port_tx_bytes.add(port, reply.len() as u64);
        Verdict::Reply { iface: pkt.iface, dropped: reason }
    }
}

/// The offload of a packet about to be forwarded by `plan` (interface and next hop filled in by
/// the caller), if the XDP program can repeat it: see [`Offload`].
fn offload_of(m: &Meta, vrf: u32, plan: &Plan, session: Option<(u64, (u32, u16))>) -> Option<Offload> {
    let (L3::V4 { src, dst }, IpAddr::V4(new_src), IpAddr::V4(new_dst)) = (m.l3, plan.src, plan.dst) else {
        return None;
    };
    if m.vlan.is_some() || m.frag != Frag::Whole {
        return None;
    }
    let (sport, dport, new_sport, new_dport) = match (m.l4, plan.ports) {
        // SYN, FIN and RST change the session's state: the userspace engine must see them.
        (L4::Ports { src, dst, tcp_flags }, Some((a, b))) if tcp_flags & 0x07 == 0 => (src, dst, a, b),
        (L4::Icmp { kind: kind @ (0 | 8), ident, .. }, Some((a, b))) => {
            let new = if a != ident { a } else { b };
            (ident, kind as u16, new, kind as u16)
        }
        _ => return None,
    };
    Some(Offload {
        vrf,
        proto: m.proto,
        src,
        dst,
        sport,
        dport,
        new_src,
        new_dst,
        new_sport,
        new_dport,
        iface: 0,
        next_hop: Ipv4Addr::UNSPECIFIED,
        session,
        rule: None,
    })
}

/// What NAT sees of an IPv4 packet, if it can translate it: TCP/UDP with ports, or an ICMP
/// echo request/reply with its identifier.
fn nat_tuple(m: &Meta, vrf: u32) -> Option<nat::Tuple> {
    let L3::V4 { src, dst } = m.l3 else { return None };
    let class = nat::class(m.proto)?;
    let (sport, dport, flags) = match m.l4 {
        L4::Ports { src, dst, tcp_flags } => (src, dst, tcp_flags),
        L4::Icmp { kind: 0 | 8, ident, .. } => (ident, ident, 0),
        _ => return None,
    };
    Some(nat::Tuple { vrf, class, src: u32::from(src), dst: u32::from(dst), sport, dport, flags })
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// What the host stack answers for, by the config the engine runs: on a port, echo for the
/// gateway's addresses in the port's VRF and the NAT addresses there; ARP and NDP for the
/// port's own addresses and the NAT addresses on its subnets. Never for an address the kernel
/// holds (an untagged port's, put on its interface): the kernel answers for those itself, and
/// a packet socket sees their requests too.
impl crate::host::Owns for Engine {
    fn owns(&self, iface: usize, vlan: Option<u16>, addr: IpAddr, ask: crate::host::Ask) -> bool {
        let t = &self.tables;
        let Some(port) = self.port_of(iface, vlan) else { return false };
        let vrf = t.ports[port].vrf;
        let subnets = &t.config.ports[port].addresses;
        let kernels = t.config.ports.iter().any(|p| {
            p.vrf == vrf
                && p.vlan.is_none()
                && p.tunnel.is_none()
                && p.addresses.iter().any(|n| n.addr() == addr)
        });
        if kernels {
            return false;
        }
        match ask {
            crate::host::Ask::Echo => t.is_local(vrf, addr) || t.is_nat_address(vrf, addr),
            crate::host::Ask::Resolve => {
                subnets.iter().any(|n| n.addr() == addr)
                    || (t.is_nat_address(vrf, addr) && subnets.iter().any(|n| n.contains(&addr)))
            }
        }
    }
}
