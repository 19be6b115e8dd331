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
        fn entries(&self) -> Vec<(FlowKey, Flow)> {
            self.flows.iter().map(|(k, v)| (*k, *v)).collect()
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
            session: Some(SessionRef { session: S, remote: REMOTE }),
            rule: None,
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
            o.session = Some(SessionRef { session: S, remote: (1, 1) });
            o.sport += 1;
        }
        cache.follow(&mut map, 0, 2, &[], &other, |i| Some(i as u32));
        assert_eq!(map.flows.len(), 4);
        cache.follow(
            &mut map,
            0,
            2,
            &[NatEvent::Forgot(SessionRef { session: S, remote: REMOTE })],
            &[],
            |i| Some(i as u32),
        );
        assert_eq!(map.flows.keys().copied().collect::<Vec<_>>(), cache.live_keys());
        assert_eq!(map.flows.len(), 2);
        let mut kept: Vec<FlowKey> = other.iter().map(key_of).collect();
        kept.sort();
        assert_eq!(map.flows.keys().copied().collect::<Vec<_>>(), kept);
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
    fn a_flow_without_a_session_goes_when_unused() {
        let mut map = Model { cap: 8, ..Model::default() };
        let mut cache = FlowCache::new(&mut map, 0, 0);
        let mut reply = pair()[0];
        reply.session = None;
        cache.follow(&mut map, 0, 0, &[], &[reply], |i| Some(i as u32));
        let mut clock = Clock::default();
        let s = 1_000_000_000;
        cache.tick(&mut map, &mut clock, 10 * s, 8);
        // Used at 200 s: kept past 310 s; unused since, gone after 500 s.
        map.flows.get_mut(&key_of(&reply)).unwrap().last_seen = 200 * s;
        cache.tick(&mut map, &mut clock, 250 * s, 8);
        cache.tick(&mut map, &mut clock, 400 * s, 8);
        assert_eq!(map.flows.len(), 1);
        cache.tick(&mut map, &mut clock, 551 * s, 8);
        assert!(map.flows.is_empty());
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

    /// A keep-forwarding restart: a new engine takes over the flows the old one left, and with
    /// them its sessions, with the same outside ports; new sessions do not collide with them.
    #[test]
    fn a_new_process_adopts_the_sessions_behind_the_flows_it_finds() {
        use etherparse::PacketBuilder;

        use crate::{
            buffer::{Packet, Verdict},
            config::{NatPool, examples::demo},
            engine::{Engine, Iface},
        };
        let mut config = demo();
        config.netmaps.clear();
        config.nat_pools =
            vec![NatPool::defaults("city".into(), 1, 0, vec!["198.18.30.0/31".parse().unwrap()])];
        config.policies[0].action = crate::Action::Napt { pool: "city".into() };
        config.policies.truncate(1);
        let ifaces = vec![
            Iface { name: "legacy0".into(), mac: [2, 0, 0, 0, 0, 1] },
            Iface { name: "uplink0".into(), mac: [2, 0, 0, 0, 0, 2] },
        ];
        let new_engine = || {
            let mut e = Engine::new(config.clone(), ifaces.clone()).unwrap();
            e.set_neighbor(1, None, [198, 19, 0, 2].into(), [2; 6]);
            e.set_neighbor(0, None, [10, 20, 0, 5].into(), [3; 6]);
            e.set_neighbor(0, None, [10, 20, 0, 6].into(), [4; 6]);
            e.track_offloads();
            e
        };
        let udp = |iface: usize, src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2([9; 6], [2, 0, 0, 0, 0, 1 + iface as u8])
                .ipv4(src, dst, 64)
                .udp(sp, dp)
                .write(&mut v, b"x")
                .unwrap();
            Packet::new(iface, &v)
        };
        let run = |e: &mut Engine, cache: &mut FlowCache, map: &mut Model, mut p: Packet, s: u64| {
            e.process(std::slice::from_mut(&mut p), s * 1_000_000_000);
            let (events, offloads) = (e.nat_mut().take_events(), e.take_offloads());
            cache.follow(map, e.generation(), 1, &events, &offloads, |i| Some(10 + i as u32));
            p
        };
        let mut map = Model { cap: 64, ..Model::default() };
        let mut old = new_engine();
        let mut cache = FlowCache::new(&mut map, 1, old.generation());
        let out = run(&mut old, &mut cache, &mut map, udp(0, [10, 20, 0, 5], 5000, [198, 19, 0, 2], 53), 10);
        let mapped = (out.frame()[26..30].to_vec(), u16::from_be_bytes([out.frame()[34], out.frame()[35]]));
        let m_addr: [u8; 4] = mapped.0.clone().try_into().unwrap();
        let back = run(&mut old, &mut cache, &mut map, udp(1, [198, 19, 0, 2], 53, m_addr, mapped.1), 11);
        assert!(matches!(back.verdict, Verdict::Forward { iface: 0 }));
        assert_eq!(map.flows.len(), 2);
        // A stale flow of another epoch is not adopted.
        let mut stale = *map.flows.values().next().unwrap();
        stale.epoch = 0;
        let stale_key = FlowKey { sport: [0, 9], ..*map.flows.keys().next().unwrap() };
        map.flows.insert(stale_key, stale);

        // The restart: a new engine, the same map.
        let mut new = new_engine();
        let generation = new.generation();
        let (mut cache, kept) = FlowCache::adopt(&mut map, new.nat_mut(), 1, generation, 100_000_000_000);
        assert_eq!((kept, map.flows.len()), (2, 2), "both directions kept, the stale flow removed");
        // The remote's answer finds its session (nothing was sent since the restart).
        let back = run(&mut new, &mut cache, &mut map, udp(1, [198, 19, 0, 2], 53, m_addr, mapped.1), 101);
        assert!(matches!(back.verdict, Verdict::Forward { iface: 0 }), "{:?}", back.verdict);
        // A new session of the same host does not get the adopted port...
        let fresh =
            run(&mut new, &mut cache, &mut map, udp(0, [10, 20, 0, 5], 7000, [198, 19, 0, 2], 53), 102);
        let fresh_port = u16::from_be_bytes([fresh.frame()[34], fresh.frame()[35]]);
        assert_ne!(fresh_port, mapped.1);
        // ...and the adopted one keeps its mapping.
        let again =
            run(&mut new, &mut cache, &mut map, udp(0, [10, 20, 0, 5], 5000, [198, 19, 0, 2], 53), 103);
        let again_port = u16::from_be_bytes([again.frame()[34], again.frame()[35]]);
        assert_eq!((&again.frame()[26..30], again_port), (&mapped.0[..], mapped.1));
    }

    proptest::proptest! {
        /// Whatever happens to sessions, in whatever order, the map holds exactly the flows the
        /// cache lists, and never a flow of a freed session or of a forgotten remote.
        #[test]
        fn the_map_never_keeps_a_flow_its_session_lost(
            ops in proptest::collection::vec((0u8..4, 0u64..4, 0u16..3, 1u32..400), 1..120)
        ) {
            let mut map = Model { cap: 12, ..Model::default() };
            let mut cache = FlowCache::new(&mut map, 1, 0);
            let mut clock = Clock::default();
            // What the engine would say: freed sessions, and remotes each session forgot.
            let mut freed: BTreeMap<u64, bool> = BTreeMap::new();
            let mut forgotten: Vec<SessionRef> = Vec::new();
            for (op, session, remote, t) in ops {
                let remote = (0xc613_0000 + remote as u32, 53);
                let mut o = pair()[0];
                let gone = SessionRef { session, remote };
                o.session = Some(gone);
                o.sport = 1000 + session as u16 * 10 + remote.0 as u16 % 10;
                let mut back = pair()[1];
                back.session = o.session;
                back.dport = o.sport;
                match op {
                    0 => {
                        clock.sessions.insert(session, (t + 60, 60));
                        freed.insert(session, false);
                        forgotten.retain(|f| *f != gone);
                        cache.follow(&mut map, 0, 1, &[], &[o, back], |i| Some(i as u32));
                    }
                    1 => {
                        clock.sessions.remove(&session);
                        freed.insert(session, true);
                        cache.follow(&mut map, 0, 1, &[NatEvent::Freed(session)], &[], |i| Some(i as u32));
                    }
                    2 => {
                        forgotten.push(gone);
                        cache.follow(&mut map, 0, 1, &[NatEvent::Forgot(gone)], &[], |i| Some(i as u32));
                    }
                    _ => cache.tick(&mut map, &mut clock, t as u64 * 1_000_000_000, 8),
                }
                let listed = cache.live_keys();
                proptest::prop_assert_eq!(map.flows.keys().copied().collect::<Vec<_>>(), listed);
                for key in map.flows.keys() {
                    let e = cache.entries[key];
                    let r = e.session.unwrap();
                    proptest::prop_assert!(!freed.get(&r.session).copied().unwrap_or(false), "a freed session kept a flow");
                    proptest::prop_assert!(!forgotten.contains(&r), "a forgotten remote kept a flow");
                }
                proptest::prop_assert_eq!(cache.stats().active as usize, map.flows.len());
            }
        }
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
