//! The map contents of configs, checked entry by entry.

use super::*;
use crate::config::examples::demo;
use hutong_common::{MAX_RULES_PER_VRF, PORT_FLOWS, PORT_NAPT_INSIDE, ROLE_LEGACY};

fn resolve(name: &str) -> Option<PortHandle> {
    match name {
        "legacy0" => Some(PortHandle { ifindex: 4, mac: [2, 0, 0, 0, 0, 4] }),
        "uplink0" => Some(PortHandle { ifindex: 5, mac: [2, 0, 0, 0, 0, 5] }),
        _ => None,
    }
}

#[test]
fn demo_tables() {
    let t = build(&demo(), resolve).unwrap();
    assert_eq!(t.ports.len(), 2);
    assert_eq!(
        t.ports[0],
        (
            4,
            Port {
                vrf: 1,
                mac: [2, 0, 0, 0, 0, 4],
                role: ROLE_LEGACY,
                flags: 0,
                mtu: 1500,
                slot: 0,
                rules_first: 1,
                rules_count: 1,
                // The demo's rules are all on IPv4 prefixes.
                rules6_first: 0,
                rules6_count: 0,
                vlan: 0,
                _pad: 0,
                parent: 4,
            }
        )
    );
    assert_eq!(t.local, vec![V4Key::new(1, [10, 20, 0, 1]), V4Key::new(0, [198, 19, 0, 1])]);
    // legacy 10.20.0.0/24 in VRF 1 -> 198.18.20.0/24 in VRF 0, and back.
    assert_eq!(
        t.nat_src,
        vec![(
            56,
            V4Key::new(1, [10, 20, 0, 0]),
            NetmapEntry {
                to: u32::from_ne_bytes([198, 18, 20, 0]),
                mask: u32::from_ne_bytes([255, 255, 255, 0]),
                vrf_out: 0,
                flags: 0,
            }
        )]
    );
    assert_eq!(t.nat_dst[0].1, V4Key::new(0, [198, 18, 20, 0]));
    assert_eq!(t.nat_dst[0].2.to, u32::from_ne_bytes([10, 20, 0, 0]));
    assert_eq!(t.nat_dst[0].2.vrf_out, 1);
    // Two connected routes, then the default route via the extranet next hop.
    assert_eq!(t.fib.len(), 3);
    assert_eq!(t.fib[0], (56, V4Key::new(1, [10, 20, 0, 0]), Route { ifindex: 4, nexthop: [0; 4] }));
    assert_eq!(t.fib[2], (32, V4Key::new(0, [0, 0, 0, 0]), Route { ifindex: 5, nexthop: [198, 19, 0, 2] }));
    assert_eq!(t.nexthops, vec![NeighKey { ifindex: 5, addr: [198, 19, 0, 2] }]);
}

#[test]
fn rules_are_scanned_in_order_per_vrf_with_their_counters() {
    let t = build(&demo(), resolve).unwrap();
    assert_eq!(t.vrf_rules, vec![(0, VrfRules { first: 0, count: 1 }), (1, VrfRules { first: 1, count: 1 })]);
    // VRF 0's rule is the config's second: its counter is index 1.
    assert_eq!((t.rules[0].index, t.rules[0].action), (1, RULE_NETMAP));
    assert_eq!(t.rules[0].dst_mask, u32::from_ne_bytes([255, 255, 255, 0]));
    let mut c = demo();
    c.policies.push(Rule {
        name: "web".into(),
        vrf: 1,
        src: None,
        dst: Some("2001:db8::/32".parse().unwrap()),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Deny,
    });
    c.policies.push(Rule {
        name: "dns-via".into(),
        vrf: 0,
        src: None,
        dst: None,
        proto: Some(17),
        src_ports: Some(crate::PortRange { first: 1024, last: 65535 }),
        dst_ports: Some(crate::PortRange { first: 53, last: 53 }),
        action: Action::RouteVia { port: "uplink0".into(), via: Some("198.19.0.9".parse().unwrap()) },
    });
    let t = build(&c, resolve).unwrap();
    assert_eq!(t.vrf_rules[1], (1, VrfRules { first: 2, count: 1 }), "the IPv6 rule is left out");
    let r = t.rules[1];
    assert_eq!(
        (r.flags, r.proto, r.sport_lo, r.sport_hi, r.dport_lo, r.dport_hi),
        (7, 17, 1024, 65535, 53, 53)
    );
    assert_eq!((r.action, r.via_ifindex, r.via_nexthop, r.index), (RULE_ROUTE_VIA, 5, [198, 19, 0, 9], 3));
}

#[test]
fn what_the_program_cannot_do_goes_to_the_slow_path() {
    let slow_ports = |c: &Config| -> Vec<bool> {
        build(c, resolve).unwrap().ports.iter().map(|(_, p)| p.flags & PORT_SLOW != 0).collect()
    };
    assert_eq!(slow_ports(&demo()), [false, false], "the demo is all fast path");
    // A deny rule in the legacy VRF: that VRF scans its rules (in order, counters by
    // position), with its netmaps whole; it stays on the fast path.
    let mut c = demo();
    c.policies[0].action = Action::Deny;
    let t = build(&c, resolve).unwrap();
    assert_eq!(slow_ports(&c), [false, false]);
    assert_eq!(t.vrf_rules[1], (1, VrfRules { first: 1, count: 1 }));
    assert_eq!((t.rules[1].action, t.rules[1].index), (RULE_DENY, 0));
    assert_eq!(t.nat_src.len(), 1, "the whole netmap: the rules decide");
    // New sessions (NAPT) are the slow path's: a pool's inside sends what sessions may
    // decide there, which is everything but netmapped sources no session can have.
    let napt_ports = |c: &Config| -> Vec<bool> {
        build(c, resolve).unwrap().ports.iter().map(|(_, p)| p.flags & PORT_NAPT_INSIDE != 0).collect()
    };
    let free = |c: &Config| build(c, resolve).unwrap().nat_src[0].2.flags & NETMAP_SESSION_FREE != 0;
    let mut c = demo();
    c.policies[0].action = Action::Napt { pool: "p".into() };
    assert_eq!((slow_ports(&c), napt_ports(&c)), (vec![false, false], vec![true, false]));
    assert!(!free(&c), "no netmap rule: its prefix is NAPT's");
    // The shipped conversions: the netmap rule of a part of the network first, then NAPT
    // for all of it. The netmapped part has no sessions; the program forwards it.
    let mut c = demo();
    c.netmaps[0].inside = "10.20.0.0/26".parse().unwrap();
    c.netmaps[0].outside = "198.18.20.0/26".parse().unwrap();
    c.policies[0].src = Some("10.20.0.0/26".parse().unwrap());
    let napt = Rule {
        name: "lan-napt".into(),
        src: Some("10.20.0.0/24".parse().unwrap()),
        action: Action::Napt { pool: "p".into() },
        ..c.policies[0].clone()
    };
    c.policies.insert(1, napt.clone());
    assert_eq!((slow_ports(&c), napt_ports(&c)), (vec![false, false], vec![true, false]));
    assert!(free(&c));
    // NAPT first: the netmapped sources may have sessions.
    c.policies.swap(0, 1);
    assert!(!free(&c));
    // A netmap rule narrowed to a protocol leaves the rest of the prefix to NAPT.
    c.policies.swap(0, 1);
    c.policies[0].proto = Some(6);
    assert!(!free(&c));
    // Inside a service everything is the slow path's: replies belong to sessions.
    let mut c = demo();
    c.services.push(crate::config::Service {
        name: "s".into(),
        proto: 6,
        inside_vrf: 1,
        inside: "10.20.0.5".parse().unwrap(),
        inside_port: 80,
        outside_vrf: 0,
        outside: "198.18.30.1".parse().unwrap(),
        outside_port: 80,
    });
    assert_eq!((slow_ports(&c), napt_ports(&c)), (vec![true, false], vec![false, false]));
    // More rules than the program scans per VRF.
    let mut c = demo();
    let rule = c.policies[0].clone();
    c.policies.extend((0..MAX_RULES_PER_VRF).map(|i| Rule { name: format!("r{i}"), ..rule.clone() }));
    assert_eq!(slow_ports(&c), [true, false]);
    // ECMP anywhere: everything.
    let mut c = demo();
    let mut second = c.routes[0].clone();
    second.via = Some("198.19.0.3".parse().unwrap());
    c.routes.push(second);
    assert_eq!(slow_ports(&c), [true, true]);
    assert!(SlowScope::of(&c).is_everything(&c));
}

/// A demo with IPv6: addresses on both ports, NPTv6 between them, a default route, and
/// rules for IPv6 (one of them for both families).
fn demo6() -> Config {
    let mut c = demo();
    c.ports[0].addresses.push("fd20::1/64".parse().unwrap());
    c.ports[1].addresses.push("2001:db8:19::1/64".parse().unwrap());
    c.nptv6.push(crate::config::Nptv6 {
        inside_vrf: 1,
        inside: "fd20::/48".parse().unwrap(),
        outside_vrf: 0,
        outside: "2001:db8:20::/48".parse().unwrap(),
    });
    c.routes.push(crate::config::RouteConfig {
        vrf: 0,
        prefix: "::/0".parse().unwrap(),
        port: "uplink0".into(),
        via: Some("2001:db8:19::2".parse().unwrap()),
    });
    let rule = |name: &str, vrf: u32, dst: Option<&str>, action: Action| Rule {
        name: name.into(),
        vrf,
        src: None,
        dst: dst.map(|d| d.parse().unwrap()),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action,
    };
    c.policies.push(rule("npt-out", 1, Some("2001:db8::/32"), Action::Nptv6));
    c.policies.push(rule("npt-in", 0, Some("2001:db8:20::/48"), Action::Nptv6));
    c.policies.push(rule("count-any", 0, None, Action::Count));
    c
}

#[test]
fn ipv6_tables() {
    let t = build(&demo6(), resolve).unwrap();
    assert_eq!(
        t.local6,
        vec![
            V6Key::new(1, "fd20::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
            V6Key::new(0, "2001:db8:19::1".parse::<std::net::Ipv6Addr>().unwrap().octets())
        ]
    );
    // Connected /64s and the default route, keyed behind the 32 VRF bits.
    let bits: Vec<u32> = t.fib6.iter().map(|(b, _, _)| *b).collect();
    assert_eq!(bits, [96, 96, 32]);
    assert_eq!(t.fib6[2].2.ifindex, 5);
    assert_eq!(
        t.nexthops6,
        vec![Neigh6Key {
            ifindex: 5,
            addr: "2001:db8:19::2".parse::<std::net::Ipv6Addr>().unwrap().octets()
        }]
    );
    // NPTv6 both ways, checksum-neutral: the entry computes what `translate::nptv6` does.
    assert_eq!((t.npt_src.len(), t.npt_dst.len()), (1, 1));
    let (bits, key, e) = t.npt_src[0];
    assert_eq!((bits, key.addr[..6].to_vec(), e.vrf_out), (80, vec![0xfd, 0x20, 0, 0, 0, 0], 0));
    let inside: std::net::Ipv6Addr = "fd20:0:0:1234::77".parse().unwrap();
    let want = crate::engine::translate::nptv6(
        inside,
        "fd20::/48".parse().unwrap(),
        "2001:db8:20::/48".parse().unwrap(),
    )
    .unwrap();
    let o = inside.octets();
    let hi = (u64::from_ne_bytes(o[..8].try_into().unwrap()) & !e.mask) | e.to;
    let mut got = o;
    got[..8].copy_from_slice(&hi.to_ne_bytes());
    let w = checksum::nptv6_word(u16::from_ne_bytes([got[6], got[7]]), e.adjust).unwrap();
    got[6..8].copy_from_slice(&w.to_ne_bytes());
    assert_eq!(std::net::Ipv6Addr::from(got), want);
    // IPv6 rules: the IPv4-only demo rules are left out, the any-family count rule is in.
    assert_eq!(
        t.vrf_rules6,
        vec![(0, VrfRules { first: 0, count: 2 }), (1, VrfRules { first: 2, count: 1 })]
    );
    assert_eq!((t.rules6[0].action, t.rules6[0].index), (RULE_NPT6, 3));
    assert_eq!((t.rules6[1].action, t.rules6[1].index), (RULE_COUNT, 4));
    assert_eq!(t.vrf_rules[0].1.count, 2, "the count rule is an IPv4 rule too");
    let legacy = t.ports[0].1;
    assert_eq!((legacy.rules6_first, legacy.rules6_count), (2, 1));
    assert!(t.slow.vrfs.is_empty() && t.slow.all.is_none(), "{:?}", t.slow);
}

#[test]
fn ipv6_route_via_an_ipv4_next_hop_is_flagged() {
    let mut c = demo6();
    c.policies.push(Rule {
        name: "via".into(),
        vrf: 1,
        src: None,
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::RouteVia { port: "uplink0".into(), via: Some("198.19.0.9".parse().unwrap()) },
    });
    let t = build(&c, resolve).unwrap();
    let r = t.rules6.last().unwrap();
    assert_eq!(
        (r.action, r.flags & RULE_VIA_V4, &r.via_nexthop[..4]),
        (RULE_ROUTE_VIA, RULE_VIA_V4, &[198, 19, 0, 9][..])
    );
    // An IPv6 next hop for a rule IPv4 packets can match is the slow path's.
    c.policies.last_mut().unwrap().action =
        Action::RouteVia { port: "uplink0".into(), via: Some("2001:db8:19::9".parse().unwrap()) };
    assert!(SlowScope::of(&c).vrfs.contains_key(&1));
    c.policies.last_mut().unwrap().dst = Some("2001:db8::/32".parse().unwrap());
    assert!(!SlowScope::of(&c).vrfs.contains_key(&1), "an IPv6-only rule is the program's");
}

#[test]
fn vlan_ports_have_keys_of_their_own_and_send_through_their_interface() {
    let mut c = demo();
    // legacy0 carries only VLAN 100 (VRF 1); uplink0 is untagged and carries VLAN 7 too.
    c.ports[0].vlan = Some(100);
    let mut tagged = c.ports[1].clone();
    tagged.vlan = Some(7);
    tagged.addresses = vec!["198.19.7.1/24".parse().unwrap()];
    c.ports.push(tagged);
    c.routes[0].port = "legacy0.100".into();
    c.routes[0].vrf = 1;
    c.routes[0].via = Some("10.20.0.254".parse().unwrap());
    c.validate().unwrap();
    let t = build(&c, resolve).unwrap();
    let (k100, k7) = (vlan_port_key(0, 100), vlan_port_key(1, 7));
    let keys: Vec<(u32, u16, u16, u32, bool)> =
        t.ports.iter().map(|(i, p)| (*i, p.slot, p.vlan, p.parent, p.flags & PORT_BARE != 0)).collect();
    assert_eq!(
        keys,
        [(4, 0, 0, 4, true), (5, 1, 0, 5, false), (k100, 0, 100, 4, false), (k7, 1, 7, 5, false)]
    );
    assert_eq!(t.interfaces().map(|(i, _)| *i).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(t.ports[2].1.vrf, 1);
    // Addresses and connected routes belong to the VLAN ports; so does a route's egress.
    assert!(t.local.contains(&V4Key::new(0, [198, 19, 7, 1])));
    assert!(t.fib.iter().any(|(_, k, r)| *k == V4Key::new(0, [198, 19, 7, 0]) && r.ifindex == k7));
    assert!(t.fib.iter().any(|(_, k, r)| *k == V4Key::new(1, [10, 20, 0, 0]) && r.ifindex == k100));
    assert_eq!(t.nexthops, [NeighKey { ifindex: k100, addr: [10, 20, 0, 254] }]);
    assert!(t.slow.vrfs.is_empty() && t.slow.all.is_none());
}

#[test]
fn only_nat_vrfs_look_up_flows() {
    let flows = |c: &Config| -> Vec<bool> {
        build(c, resolve).unwrap().ports.iter().map(|(_, p)| p.flags & PORT_FLOWS != 0).collect()
    };
    assert_eq!(flows(&demo()), [false, false], "netmap alone makes no sessions");
    let mut c = demo();
    c.nat_pools.push(crate::config::NatPool::defaults(
        "p".into(),
        1,
        0,
        vec!["198.18.30.0/31".parse().unwrap()],
    ));
    assert_eq!(flows(&c), [true, true]);
}

#[test]
fn missing_interface_is_named() {
    let err = build(&demo(), |n| if n == "uplink0" { None } else { resolve(n) }).unwrap_err();
    assert_eq!(err, MapContentsError::NoSuchInterface("uplink0".into()));
}
