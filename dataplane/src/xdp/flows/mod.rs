//! The XDP program's flows: established NAT sessions forwarded in the kernel.
//!
//! The userspace engine behind the slow path owns every NAT session. When it forwards a whole
//! packet of a session, it records an [`Offload`]: the packet's 5-tuple and what it became. The
//! slow path writes that into the program's `FLOWS` map, and the program repeats the decision for
//! the flow's next packets in that direction. A flow is only a cache of one decision:
//!
//! - it holds for one config epoch (the program ignores flows of another);
//! - it is removed, both directions with it, as soon as its session is freed (expired, reset,
//!   removed by a new policy) and before that session's outside port can be handed to another
//!   host, or as soon as the session's filtering forgets the remote it talks to;
//! - the program stamps the flows it uses, and the slow path turns the stamps into the session's
//!   idle timer, so traffic the kernel forwards keeps its session alive in the engine.
//!
//! Nothing else evicts flows: `FLOWS` is a plain hash map, never an LRU, so no mapping can lose
//! its reverse entry behind the engine's back (a bug peers have shipped). A full map means new
//! flows stay on the slow path, which still forwards them.

use hutong_common::{Flow, FlowKey};
use rustc_hash::FxHashMap;

use crate::{
    engine::Offload,
    nat::{Nat, NatEvent, SessionRef},
};

/// Where flows live: the program's `FLOWS` map, or a model of it in tests.
pub trait FlowMap {
    /// Writes a flow; `false` when the map is full (or refuses it).
    fn insert(&mut self, key: &FlowKey, flow: &Flow) -> bool;
    fn remove(&mut self, key: &FlowKey);
    /// The flow's `last_seen` stamp, or `None` if it is not in the map.
    fn last_seen(&self, key: &FlowKey) -> Option<u64>;
    /// Every entry in the map.
    fn entries(&self) -> Vec<(FlowKey, Flow)>;
}

/// The sessions behind flows: the engine's NAT state, or a model of it in tests.
pub trait Sessions {
    /// Keeps session `key` alive as if a packet passed at `at` (seconds); whether it is live.
    fn refresh(&mut self, key: u64, at: u32, now: u32) -> bool;
    fn is_live(&self, key: u64, now: u32) -> bool;
}

impl Sessions for Nat {
    fn refresh(&mut self, key: u64, at: u32, now: u32) -> bool {
        Nat::refresh(self, key, at, now)
    }

    fn is_live(&self, key: u64, now: u32) -> bool {
        Nat::is_live(self, key, now)
    }
}

/// The map key of an offload: the packet as it arrives.
pub fn key_of(o: &Offload) -> FlowKey {
    FlowKey {
        vrf: o.vrf,
        src: o.src.octets(),
        dst: o.dst.octets(),
        sport: o.sport.to_be_bytes(),
        dport: dport_bytes(o.proto, o.dport),
        proto: o.proto,
        _pad: [0; 3],
    }
}

/// ICMP echo keys carry the type in the first byte of `dport` (see [`FlowKey`]).
fn dport_bytes(proto: u8, dport: u16) -> [u8; 2] {
    if proto == hutong_common::wire::IPPROTO_ICMP { [dport as u8, 0] } else { dport.to_be_bytes() }
}

/// The map value of an offload, leaving by `ifindex` under config `epoch`.
pub fn flow_of(o: &Offload, ifindex: u32, epoch: u32) -> Flow {
    Flow {
        src: o.new_src.octets(),
        dst: o.new_dst.octets(),
        sport: o.new_sport.to_be_bytes(),
        dport: dport_bytes(o.proto, o.new_dport),
        ifindex,
        nexthop: o.next_hop.octets(),
        epoch,
        rule: o.rule.map_or(0, |r| r + 1),
        _pad: 0,
        last_seen: 0,
    }
}

/// How long a flow without a session stays unused before it goes, nanoseconds: the UDP
/// session timeout's default, so a service's replies fill the map no longer than sessions do.
pub const IDLE_WITHOUT_SESSION: u64 = 300_000_000_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    session: Option<SessionRef>,
    /// The last `last_seen` stamp turned into a session refresh.
    seen: u64,
    /// When the clock hand last saw it in use (or first saw it); 0 before its first visit.
    active_at: u64,
    /// Removed from the map; the entry stays until the clock hand passes, so a key is listed
    /// in `order` exactly once.
    live: bool,
}

/// Counters of the flow cache, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows in the map now.
    pub active: u64,
    pub installed: u64,
    pub removed: u64,
    /// Offloads not written because the map was full (those flows stay on the slow path).
    pub full: u64,
}

/// The slow path's record of the flows it wrote, by key and by session.
#[derive(Debug)]
pub struct FlowCache {
    epoch: u32,
    generation: u64,
    entries: FxHashMap<FlowKey, Entry>,
    by_session: FxHashMap<u64, Vec<FlowKey>>,
    order: Vec<FlowKey>,
    hand: usize,
    stats: FlowStats,
}

impl FlowCache {
    /// An empty cache for config `epoch` and engine `generation`. Whatever `map` holds (flows
    /// of a previous process) is removed: no session behind them exists in this one.
    pub fn new(map: &mut impl FlowMap, epoch: u32, generation: u64) -> FlowCache {
        for (k, _) in map.entries() {
            map.remove(&k);
        }
        FlowCache::empty(epoch, generation)
    }

    fn empty(epoch: u32, generation: u64) -> FlowCache {
        FlowCache {
            epoch,
            generation,
            entries: FxHashMap::default(),
            by_session: FxHashMap::default(),
            order: Vec::new(),
            hand: 0,
            stats: FlowStats::default(),
        }
    }

    /// Takes over the flows a previous process left in `map` under the same config `epoch` (a
    /// keep-forwarding restart with an unchanged config): each flow's session is recreated in
    /// `nat` with the same outside address and port, so the connections the program kept
    /// forwarding go on with the same translation. Flows of another epoch, and flows whose
    /// mapping cannot be had, are removed. Returns the cache and the number of flows kept.
    pub fn adopt(
        map: &mut impl FlowMap,
        nat: &mut Nat,
        epoch: u32,
        generation: u64,
        now_ns: u64,
    ) -> (FlowCache, usize) {
        let now = (now_ns / 1_000_000_000) as u32;
        let mut cache = FlowCache::empty(epoch, generation);
        for (key, flow) in map.entries() {
            let session = if flow.epoch == epoch { adopt_session(nat, &key, &flow, now) } else { None };
            let Some(session) = session else {
                map.remove(&key);
                continue;
            };
            cache.entries.insert(key, Entry { session, seen: flow.last_seen, active_at: 0, live: true });
            cache.order.push(key);
            cache.link(&key, session);
            cache.stats.installed += 1;
            cache.stats.active += 1;
        }
        // More remotes than a session remembers: the forgotten ones lose their flows.
        let events = nat.take_events();
        cache.follow(map, generation, epoch, &events, &[], |_| None);
        let kept = cache.stats.active as usize;
        (cache, kept)
    }

    /// How many flows of session `key` are in the map.
    pub fn flows_of(&self, key: u64) -> usize {
        self.by_session.get(&key).map_or(0, |v| v.len())
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Follows the engine after a batch, in this order: a new config (engine generation) drops
    /// every flow and takes `epoch`; freed sessions and forgotten remotes drop their flows; then
    /// the batch's offloads are written. `ifindex` maps an engine interface to its ifindex.
    /// Call it before the batch is transmitted, so no reply can meet a stale flow.
    pub fn follow(
        &mut self,
        map: &mut impl FlowMap,
        generation: u64,
        epoch: u32,
        events: &[NatEvent],
        offloads: &[Offload],
        ifindex: impl Fn(usize) -> Option<u32>,
    ) {
        if generation != self.generation {
            self.flush(map);
            self.generation = generation;
            self.epoch = epoch;
        }
        for e in events {
            match *e {
                NatEvent::Freed(s) => self.remove_session(map, s, |_| true),
                NatEvent::Forgot(gone) => self.remove_session(map, gone.session, |e| e.session == Some(gone)),
            }
        }
        for o in offloads {
            let Some(ifindex) = ifindex(o.iface) else { continue };
            let key = key_of(o);
            if !map.insert(&key, &flow_of(o, ifindex, self.epoch)) {
                self.stats.full += 1;
                continue;
            }
            let fresh = Entry { session: o.session, seen: 0, active_at: 0, live: true };
            match self.entries.get(&key).copied() {
                Some(e) if e.live => {
                    if e.session != o.session {
                        // Same packet key, another session (the old one was freed meanwhile).
                        self.entries.insert(key, Entry { session: o.session, ..e });
                        self.unlink(&key, e.session);
                        self.link(&key, o.session);
                    }
                    continue;
                }
                Some(_) => {
                    self.entries.insert(key, fresh);
                }
                None => {
                    self.entries.insert(key, fresh);
                    self.order.push(key);
                }
            }
            self.link(&key, o.session);
            self.stats.installed += 1;
            self.stats.active += 1;
        }
    }

    /// Moves the clock hand over up to `budget` flows: stamps newer than the last seen refresh
    /// their session, and flows whose session is no longer live are removed (with the
    /// session's other flows). A flow without a session (a published service's replies) goes
    /// after [`IDLE_WITHOUT_SESSION`] unused. `now_ns` is the clock of the program's stamps
    /// (CLOCK_MONOTONIC).
    pub fn tick(&mut self, map: &mut impl FlowMap, sessions: &mut impl Sessions, now_ns: u64, budget: usize) {
        let now = (now_ns / 1_000_000_000) as u32;
        for _ in 0..budget.min(self.order.len()) {
            if self.hand >= self.order.len() {
                self.hand = 0;
            }
            let key = self.order[self.hand];
            let Some(e) = self.entries.get(&key).copied() else {
                self.order.swap_remove(self.hand);
                continue;
            };
            if !e.live {
                self.entries.remove(&key);
                self.order.swap_remove(self.hand);
                continue;
            }
            self.hand += 1;
            let Some(stamp) = map.last_seen(&key) else {
                // Gone from the map under us: forget it.
                self.drop_entry(map, &key);
                continue;
            };
            let used = stamp > e.seen;
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.seen = stamp;
                if used || entry.active_at == 0 {
                    entry.active_at = now_ns;
                }
            }
            match e.session.map(|r| r.session) {
                Some(s) => {
                    if used {
                        sessions.refresh(s, (stamp / 1_000_000_000) as u32, now);
                    }
                    if !sessions.is_live(s, now) {
                        self.remove_session(map, s, |_| true);
                    }
                }
                None if !used
                    && e.active_at != 0
                    && now_ns.saturating_sub(e.active_at) > IDLE_WITHOUT_SESSION =>
                {
                    self.drop_entry(map, &key);
                }
                None => {}
            }
        }
    }

    /// Removes every flow (a new config, or the end).
    pub fn flush(&mut self, map: &mut impl FlowMap) {
        let live: Vec<FlowKey> = self.entries.iter().filter(|(_, e)| e.live).map(|(k, _)| *k).collect();
        for k in live {
            self.drop_entry(map, &k);
        }
    }

    fn remove_session(&mut self, map: &mut impl FlowMap, session: u64, which: impl Fn(&Entry) -> bool) {
        let Some(keys) = self.by_session.get(&session) else { return };
        let doomed: Vec<FlowKey> = keys
            .iter()
            .filter(|k| self.entries.get(*k).is_some_and(|e| e.live && which(e)))
            .copied()
            .collect();
        for k in doomed {
            self.drop_entry(map, &k);
        }
    }

    fn drop_entry(&mut self, map: &mut impl FlowMap, key: &FlowKey) {
        map.remove(key);
        let Some(e) = self.entries.get_mut(key) else { return };
        if !e.live {
            return;
        }
        e.live = false;
        let session = e.session;
        self.unlink(key, session);
        self.stats.removed += 1;
        self.stats.active -= 1;
    }

    fn link(&mut self, key: &FlowKey, session: Option<SessionRef>) {
        if let Some(SessionRef { session: s, .. }) = session {
            self.by_session.entry(s).or_default().push(*key);
        }
    }

    fn unlink(&mut self, key: &FlowKey, session: Option<SessionRef>) {
        let Some(SessionRef { session: s, .. }) = session else { return };
        if let Some(v) = self.by_session.get_mut(&s) {
            v.retain(|k| k != key);
            if v.is_empty() {
                self.by_session.remove(&s);
            }
        }
    }

    /// Keys of the live flows (tests, diagnostics).
    pub fn live_keys(&self) -> Vec<FlowKey> {
        let mut v: Vec<FlowKey> = self.entries.iter().filter(|(_, e)| e.live).map(|(k, _)| *k).collect();
        v.sort();
        v
    }
}

/// The session behind a flow found in the map, recreated in `nat`: `Some(None)` for a published
/// service's reply (no session), `None` if it cannot be had.
#[allow(clippy::option_option)]
fn adopt_session(nat: &mut Nat, k: &FlowKey, f: &Flow, now: u32) -> Option<Option<SessionRef>> {
    let class = crate::nat::class(k.proto)?;
    let icmp = class == crate::nat::sessions::ICMP;
    let port = |b: [u8; 2]| u16::from_be_bytes(b);
    let (ksrc, kdst, fsrc, fdst) = (
        u32::from_be_bytes(k.src),
        u32::from_be_bytes(k.dst),
        u32::from_be_bytes(f.src),
        u32::from_be_bytes(f.dst),
    );
    // Outbound: the source became one of a pool's outside addresses.
    if fsrc != ksrc {
        if let Some(pool) = nat.pool_of(Some(k.vrf), None, fsrc) {
            let remote = (kdst, if icmp { 0 } else { port(k.dport) });
            let key = nat.adopt(pool, class, (ksrc, port(k.sport)), (fsrc, port(f.sport)), remote, now)?;
            return Some(Some(SessionRef { session: key, remote }));
        }
        return nat.serves(k.vrf, class, ksrc, port(k.sport)).then_some(None);
    }
    // A published service's inbound packets: the config alone decides them.
    if f.rule != 0 && nat.publishes(k.vrf, class, kdst, port(k.dport)) {
        return Some(None);
    }
    // Inbound: the destination was one of a pool's outside addresses.
    let pool = nat.pool_of(None, Some(k.vrf), kdst)?;
    let (out_port, in_port) =
        if icmp { (port(k.sport), port(f.sport)) } else { (port(k.dport), port(f.dport)) };
    let remote = (ksrc, if icmp { 0 } else { port(k.sport) });
    let key = nat.adopt(pool, class, (fdst, in_port), (kdst, out_port), remote, now)?;
    Some(Some(SessionRef { session: key, remote }))
}

#[cfg(test)]
mod tests;
