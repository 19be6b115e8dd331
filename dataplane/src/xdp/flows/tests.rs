//! The flow cache against a model of the map: both directions together, freed sessions and
//! forgotten remotes, the clock hand, and a property test over random operations.

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
    cache.follow(&mut map, 0, 2, &[NatEvent::Forgot(SessionRef { session: S, remote: REMOTE })], &[], |i| {
        Some(i as u32)
    });
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
    config.nat_pools = vec![NatPool::defaults("city".into(), 1, 0, vec!["198.18.30.0/31".parse().unwrap()])];
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
    let fresh = run(&mut new, &mut cache, &mut map, udp(0, [10, 20, 0, 5], 7000, [198, 19, 0, 2], 53), 102);
    let fresh_port = u16::from_be_bytes([fresh.frame()[34], fresh.frame()[35]]);
    assert_ne!(fresh_port, mapped.1);
    // ...and the adopted one keeps its mapping.
    let again = run(&mut new, &mut cache, &mut map, udp(0, [10, 20, 0, 5], 5000, [198, 19, 0, 2], 53), 103);
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
