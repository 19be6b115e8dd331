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
    nat::{Nat, NatEvent},
};

/// Where flows live: the program's `FLOWS` map, or a model of it in tests.
pub trait FlowMap {
    /// Writes a flow; `false` when the map is full (or refuses it).
    fn insert(&mut self, key: &FlowKey, flow: &Flow) -> bool;
    fn remove(&mut self, key: &FlowKey);
    /// The flow's `last_seen` stamp, or `None` if it is not in the map.
    fn last_seen(&self, key: &FlowKey) -> Option<u64>;
    /// Every key in the map.
    fn keys(&self) -> Vec<FlowKey>;
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
    if proto == 1 { [dport as u8, 0] } else { dport.to_be_bytes() }
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
        last_seen: 0,
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    session: Option<(u64, (u32, u16))>,
    /// The last `last_seen` stamp turned into a session refresh.
    seen: u64,
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
        for k in map.keys() {
            map.remove(&k);
        }
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
                NatEvent::Forgot(s, remote) => {
                    self.remove_session(map, s, |e| e.session.is_some_and(|(_, r)| r == remote))
                }
            }
        }
        for o in offloads {
            let Some(ifindex) = ifindex(o.iface) else { continue };
            let key = key_of(o);
            if !map.insert(&key, &flow_of(o, ifindex, self.epoch)) {
                self.stats.full += 1;
                continue;
            }
            let fresh = Entry { session: o.session, seen: 0, live: true };
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
    /// session's other flows). `now_ns` is the clock of the program's stamps (CLOCK_MONOTONIC).
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
            if stamp > e.seen {
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.seen = stamp;
                }
                if let Some((s, _)) = e.session {
                    sessions.refresh(s, (stamp / 1_000_000_000) as u32, now);
                }
            }
            if let Some((s, _)) = e.session {
                if !sessions.is_live(s, now) {
                    self.remove_session(map, s, |_| true);
                }
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

    fn link(&mut self, key: &FlowKey, session: Option<(u64, (u32, u16))>) {
        if let Some((s, _)) = session {
            self.by_session.entry(s).or_default().push(*key);
        }
    }

    fn unlink(&mut self, key: &FlowKey, session: Option<(u64, (u32, u16))>) {
        let Some((s, _)) = session else { return };
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

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::Ipv4Addr};

    use super::*;

    /// The map, with a capacity like the kernel's.
    #[derive(Default)]
    struct Model {
        flows: BTreeMap<FlowKey, Flow>,
        cap: usize,
    }

    impl FlowMap for Model {
        fn insert(&mut self, key: &FlowKey, flow: &Flow) -> bool {
            if !self.flows.contains_key(key) && self.flows.len() >= self.cap {
                return false;
            }
            self.flows.insert(*key, *flow);
            true
        }
        fn remove(&mut self, key: &FlowKey) {
            self.flows.remove(key);
        }
        fn last_seen(&self, key: &FlowKey) -> Option<u64> {
            self.flows.get(key).map(|f| f.last_seen)
        }
        fn keys(&self) -> Vec<FlowKey> {
            self.flows.keys().copied().collect()
        }
    }

    /// Sessions by key: (expires, timeout).
    #[derive(Default)]
    struct Clock {
        sessions: BTreeMap<u64, (u32, u32)>,
    }

    impl Sessions for Clock {
        fn refresh(&mut self, key: u64, at: u32, now: u32) -> bool {
            let live = self.is_live(key, now);
            if let Some((exp, t)) = self.sessions.get_mut(&key) {
                *exp = (*exp).max(at + *t);
            }
            live
        }
        fn is_live(&self, key: u64, now: u32) -> bool {
            self.sessions.get(&key).is_some_and(|(exp, _)| *exp > now)
        }
    }

    const S: u64 = 77;
    const REMOTE: (u32, u16) = (0xc613_0002, 80);

    /// Both directions of one TCP connection of session `S`.
    fn pair() -> [Offload; 2] {
        let inside = Ipv4Addr::new(10, 20, 0, 5);
        let outside = Ipv4Addr::new(198, 18, 30, 1);
        let remote = Ipv4Addr::from(REMOTE.0);
        let out = Offload {
            vrf: 1,
            proto: 6,
            src: inside,
            dst: remote,
            sport: 40000,
            dport: 80,
            new_src: outside,
            new_dst: remote,
            new_sport: 1024,
            new_dport: 80,
            iface: 1,
            next_hop: remote,
            session: Some((S, REMOTE)),
        };
        let back = Offload {
            vrf: 0,
            src: remote,
            dst: outside,
            sport: 80,
            dport: 1024,
            new_src: remote,
            new_dst: inside,
            new_sport: 80,
            new_dport: 40000,
            iface: 0,
            next_hop: inside,
            ..out
        };
        [out, back]
    }

    fn setup() -> (Model, FlowCache) {
        let mut map = Model { cap: 8, ..Model::default() };
        let mut cache = FlowCache::new(&mut map, 2, 0);
        cache.follow(&mut map, 0, 2, &[], &pair(), |i| Some(10 + i as u32));
        (map, cache)
    }

    #[test]
    fn offloads_become_flows_of_the_current_epoch() {
        let (map, cache) = setup();
        assert_eq!(map.flows.len(), 2);
        let f = map.flows[&key_of(&pair()[0])];
        assert_eq!((f.src, f.sport, f.ifindex, f.epoch), ([198, 18, 30, 1], 1024u16.to_be_bytes(), 11, 2));
        assert_eq!(cache.stats().active, 2);
    }

    #[test]
    fn a_freed_session_takes_both_directions_with_it() {
        let (mut map, mut cache) = setup();
        cache.follow(&mut map, 0, 2, &[NatEvent::Freed(S)], &[], |i| Some(i as u32));
        assert!(map.flows.is_empty(), "a mapping must never keep one direction");
        assert_eq!(cache.stats().active, 0);
    }

    #[test]
    fn a_forgotten_remote_loses_its_flows_and_only_those() {
        let (mut map, mut cache) = setup();
        let mut other = pair();
        for o in &mut other {
            o.session = Some((S, (1, 1)));
            o.sport += 1;
        }
        cache.follow(&mut map, 0, 2, &[], &other, |i| Some(i as u32));
        assert_eq!(map.flows.len(), 4);
        cache.follow(&mut map, 0, 2, &[NatEvent::Forgot(S, REMOTE)], &[], |i| Some(i as u32));
        assert_eq!(map.keys(), cache.live_keys());
        assert_eq!(map.flows.len(), 2);
        let mut kept: Vec<FlowKey> = other.iter().map(key_of).collect();
        kept.sort();
        assert_eq!(map.keys(), kept);
    }

    #[test]
    fn a_new_config_drops_every_flow() {
        let (mut map, mut cache) = setup();
        cache.follow(&mut map, 1, 3, &[], &[], |i| Some(i as u32));
        assert!(map.flows.is_empty());
        cache.follow(&mut map, 1, 3, &[], &pair()[..1], |i| Some(i as u32));
        assert_eq!(map.flows.values().next().unwrap().epoch, 3);
    }

    #[test]
    fn kernel_stamps_keep_the_session_alive_and_idle_sessions_lose_their_flows() {
        let (mut map, mut cache) = setup();
        let mut clock = Clock::default();
        clock.sessions.insert(S, (100, 60));
        // The program forwarded a packet at t=90 s: the session now lives until 150 s.
        map.flows.get_mut(&key_of(&pair()[1])).unwrap().last_seen = 90_000_000_000;
        cache.tick(&mut map, &mut clock, 95_000_000_000, 16);
        assert_eq!(clock.sessions[&S].0, 150);
        assert_eq!(map.flows.len(), 2);
        // No more packets: at 151 s the session is idle and both flows go.
        cache.tick(&mut map, &mut clock, 151_000_000_000, 16);
        assert!(map.flows.is_empty());
        // The hand forgets the removed entries as it passes them.
        cache.tick(&mut map, &mut clock, 152_000_000_000, 16);
        assert!(cache.order.is_empty() && cache.entries.is_empty());
    }

    #[test]
    fn a_full_map_leaves_flows_on_the_slow_path_and_counts_them() {
        let mut map = Model { cap: 1, ..Model::default() };
        let mut cache = FlowCache::new(&mut map, 0, 0);
        cache.follow(&mut map, 0, 0, &[], &pair(), |i| Some(i as u32));
        assert_eq!((map.flows.len(), cache.stats().full, cache.stats().active), (1, 1, 1));
    }

    #[test]
    fn a_new_process_starts_with_an_empty_map() {
        let (mut map, _) = setup();
        let cache = FlowCache::new(&mut map, 4, 0);
        assert!(map.flows.is_empty() && cache.live_keys().is_empty());
    }

    #[test]
    fn reinstalling_a_removed_key_lists_it_once() {
        let (mut map, mut cache) = setup();
        for _ in 0..5 {
            cache.follow(&mut map, 0, 2, &[NatEvent::Freed(S)], &pair(), |i| Some(i as u32));
        }
        assert_eq!(cache.order.len(), 2);
        assert_eq!(cache.stats().active, 2);
    }
}
