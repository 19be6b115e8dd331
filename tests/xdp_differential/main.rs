//! The XDP engine against the userspace engine, packet by packet: a corpus of generated and
//! hand-written frames (every translation kind the program implements, ICMP and ICMP errors,
//! fragments, VLAN tags, IPv6, TTL 1, oversized, malformed and truncated frames) runs through
//! the XDP program (BPF_PROG_TEST_RUN) and through the userspace engine with the same config
//! and neighbors. The verdicts and output bytes must be identical. A frame the program hands to
//! the slow path must reach it unmodified: there, the userspace engine is the engine.

#[path = "../common/mod.rs"]
mod common;
mod corpus;

use dataplane::{
    Action, Drop, PortRange, Rule, Stat,
    buffer::{Packet, Verdict},
    engine::{Engine, Iface},
    xdp::{XdpEngine, action, tables},
};
use std::net::Ipv6Addr;

use corpus::*;
use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, icmpv4::DestUnreachableHeader};
use hutong_common::{Neigh, Neigh6Key, NeighKey};
use rand::{Rng, SeedableRng, rngs::SmallRng};

/// `config` with VLANs: VLAN 100 on the legacy interface is another legacy network, VRF 3, with
/// the same 10.20.0.0/24 (netmapped to 198.18.22.0/24); VLAN 7 on the uplink is the extranet
/// too, with a server at 198.19.7.2.
fn with_vlans(mut config: dataplane::Config) -> dataplane::Config {
    config.vrfs.push(dataplane::Vrf { id: 3, name: "vlan-office".into() });
    let mut office = config.ports[0].clone();
    office.vlan = Some(100);
    office.vrf = 3;
    let mut seven = config.ports[1].clone();
    seven.vlan = Some(7);
    seven.addresses = vec!["198.19.7.1/24".parse().unwrap()];
    config.ports.extend([office, seven]);
    config.netmaps.push(dataplane::Netmap {
        inside_vrf: 3,
        inside: "10.20.0.0/24".parse().unwrap(),
        outside_vrf: 0,
        outside: "198.18.22.0/24".parse().unwrap(),
    });
    config.policies.extend([
        Rule { src: Some("10.20.0.0/24".parse().unwrap()), ..rule("vlan-out", 3, Action::Netmap) },
        Rule { dst: Some("198.18.22.0/24".parse().unwrap()), ..rule("vlan-in", 0, Action::Netmap) },
    ]);
    config
}

#[test]
fn vlans_in_the_program_match_the_userspace_engine() {
    common::require_root("xdp_differential");
    let config = with_vlans(common::demo_config());
    config.validate().unwrap();
    let t = differential("vlans", config);
    assert!(
        t.forwarded_tagged > 100,
        "tagged frames must be forwarded by the program: {}",
        t.forwarded_tagged
    );
    let [in_out, out_in, both] = t.vlan_paths;
    assert!(in_out > 10 && out_in > 10 && both > 10, "every tag combination: {:?}", t.vlan_paths);
}

/// `config` with IPv6 added: addresses on both ports, NPTv6 between them, a default route, and
/// IPv6 rules in both VRFs (counting, denying by ports, translating, and a route-via to an IPv4
/// next hop).
fn with_ipv6(mut config: dataplane::Config) -> dataplane::Config {
    config.ports[0].addresses.push(format!("{}/64", GATEWAY6[0]).parse().unwrap());
    config.ports[1].addresses.push(format!("{}/64", GATEWAY6[1]).parse().unwrap());
    config.nptv6.push(dataplane::config::Nptv6 {
        inside_vrf: 1,
        inside: "fd20::/48".parse().unwrap(),
        outside_vrf: 0,
        outside: "2001:db8:20::/48".parse().unwrap(),
    });
    config.routes.push(dataplane::config::RouteConfig {
        vrf: 0,
        prefix: "::/0".parse().unwrap(),
        port: "uplink0".into(),
        via: Some(SERVER6.parse().unwrap()),
    });
    let ports = |first: u16, last: u16| Some(PortRange { first, last });
    let to_extranet = Some("2001:db8::/32".parse().unwrap());
    config.policies.extend([
        Rule { proto: Some(58), ..rule("count-icmp6", 1, Action::Count) },
        Rule {
            proto: Some(17),
            dst_ports: ports(0, 999),
            dst: to_extranet,
            ..rule("no-low-udp6", 1, Action::Deny)
        },
        Rule { dst: to_extranet, ..rule("npt-out", 1, Action::Nptv6) },
        Rule {
            proto: Some(6),
            src_ports: ports(0, 9999),
            dst: Some("2001:db8:20::/48".parse().unwrap()),
            ..rule("low-tcp-via-v4", 0, Action::RouteVia { port: "uplink0".into(), via: Some(SERVER.into()) })
        },
        Rule { dst: Some("2001:db8:20::/48".parse().unwrap()), ..rule("npt-in", 0, Action::Nptv6) },
    ]);
    config
}

fn rule(name: &str, vrf: u32, action: Action) -> Rule {
    Rule {
        name: name.into(),
        vrf,
        src: None,
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action,
    }
}

#[test]
fn ipv6_in_the_program_matches_the_userspace_engine() {
    common::require_root("xdp_differential");
    let config = with_ipv6(common::demo_config());
    config.validate().unwrap();
    let t = differential("ipv6", config);
    assert!(t.forwarded6 > 100, "IPv6 must be forwarded by the program: {}", t.forwarded6);
    assert!(
        t.to_host6 > 10 && t.dropped6 > 20 && t.slow6 > 10,
        "every IPv6 verdict: {} {} {}",
        t.to_host6,
        t.dropped6,
        t.slow6
    );
    // Every IPv6 rule decides or counts something.
    for (i, h) in t.rule_hits.iter().enumerate().skip(2) {
        assert!(*h > 0, "rule {i}: {:?}", t.rule_hits);
    }
}

#[test]
fn the_xdp_program_matches_the_userspace_engine() {
    common::require_root("xdp_differential");
    let t = differential("demo", common::demo_config());
    assert!(
        t.forwarded > 100 && t.dropped > 100 && t.slow > 10 && t.to_host > 5,
        "the corpus must exercise every verdict"
    );
}

/// The same corpus under a policy the program scans rule by rule: count, deny and permit rules
/// on protocols and port ranges, a netmap limited to high TCP source ports, a route-via, and
/// rules of the extranet VRF. Each rule's hit counter must agree too.
#[test]
fn policy_rules_in_the_program_match_the_userspace_engine() {
    common::require_root("xdp_differential");
    let mut config = common::demo_config();
    let ports = |first: u16, last: u16| Some(PortRange { first, last });
    let lan = config.policies[0].clone();
    let inbound = config.policies[1].clone();
    config.policies = vec![
        rule("count-all", 1, Action::Count),
        Rule { proto: Some(17), dst_ports: ports(0, 20000), ..rule("no-low-udp", 1, Action::Deny) },
        Rule { proto: Some(6), src_ports: ports(30000, 65535), ..rule("tcp-high", 1, Action::Netmap) },
        Rule { src: Some("10.20.0.0/25".parse().unwrap()), ..lan },
        Rule { proto: Some(6), dst_ports: ports(0, 30000), ..rule("no-low-tcp-in", 0, Action::Deny) },
        Rule { dst: Some("198.18.20.64/26".parse().unwrap()), ..rule("permit-upper", 0, Action::Permit) },
        Rule {
            proto: Some(1),
            dst: Some("198.18.21.0/24".parse().unwrap()),
            ..rule(
                "icmp-back-via-uplink",
                0,
                Action::RouteVia { port: "uplink0".into(), via: Some("198.19.0.2".parse().unwrap()) },
            )
        },
        Rule { src: Some("2001:db8::/32".parse().unwrap()), ..rule("v6-only", 0, Action::Deny) },
        inbound,
    ];
    config.validate().unwrap();
    let t = differential("policy", config);
    assert!(t.forwarded > 50 && t.dropped > 100, "the corpus must exercise the rules");
    assert!(t.policy_denied > 30, "deny rules must decide: {}", t.policy_denied);
    // Every rule decides or counts something (the IPv6 one, IPv6 frames from the extranet).
    for (i, h) in t.rule_hits.iter().enumerate() {
        assert!(*h > 0, "rule {i}: {:?}", t.rule_hits);
    }
}

#[derive(Default)]
struct Tally {
    forwarded: usize,
    to_host: usize,
    dropped: usize,
    slow: usize,
    policy_denied: usize,
    rule_hits: Vec<u64>,
    /// Forwarded frames that arrived or left tagged, and of those: tagged in and untagged out,
    /// untagged in and tagged out, tagged both ways.
    forwarded_tagged: usize,
    vlan_paths: [usize; 3],
    /// Of the IPv6 frames.
    forwarded6: usize,
    to_host6: usize,
    dropped6: usize,
    slow6: usize,
}

/// Runs the corpus through both engines under `config` and demands identical verdicts, drop
/// reasons, bytes and rule counters.
fn differential(name: &str, config: dataplane::Config) -> Tally {
    let (ns, legacy, uplink) = common::veth_pair("diff");

    // The XDP engine, with the config's tables and these neighbors.
    let t = tables::build(&config, |n| match n {
        "legacy0" => Some(legacy),
        "uplink0" => Some(uplink),
        _ => None,
    })
    .unwrap();
    // The VLAN ports: their keys in the tables, interface (= slot here) and VLAN id.
    let vlans: Vec<(u32, usize, u16)> =
        t.ports.iter().filter(|(_, p)| p.vlan != 0).map(|(k, p)| (*k, p.slot as usize, p.vlan)).collect();
    assert!(t.slow.vrfs.is_empty() && t.slow.all.is_none(), "{name}: the program runs it all: {:?}", t.slow);
    let mut xdp = XdpEngine::load().unwrap();
    xdp.install(&t).unwrap();
    // The userspace engine on the same interfaces.
    let ifaces = vec![
        Iface { name: "legacy0".into(), mac: legacy.mac },
        Iface { name: "uplink0".into(), mac: uplink.mac },
    ];
    let rules = config.policies.len();
    let mut user = Engine::new(config, ifaces).unwrap();
    {
        let mut n = xdp.neighbor_table().unwrap();
        n.insert(
            NeighKey { ifindex: uplink.ifindex, addr: SERVER },
            Neigh { mac: SERVER_MAC, _pad: [0; 2] },
            0,
        )
        .unwrap();
        user.set_neighbor(1, None, SERVER.into(), SERVER_MAC);
        for h in 2..=100u8 {
            n.insert(
                NeighKey { ifindex: legacy.ifindex, addr: [10, 20, 0, h] },
                Neigh { mac: host_mac(h), _pad: [0; 2] },
                0,
            )
            .unwrap();
            user.set_neighbor(0, None, [10, 20, 0, h].into(), host_mac(h));
        }
        let mut n6 = xdp.neighbor6_table().unwrap();
        let server = v6(SERVER6);
        n6.insert(
            Neigh6Key { ifindex: uplink.ifindex, addr: server },
            Neigh { mac: SERVER_MAC, _pad: [0; 2] },
            0,
        )
        .unwrap();
        user.set_neighbor(1, None, server.into(), SERVER_MAC);
        for h in 2..=100u8 {
            n6.insert(
                Neigh6Key { ifindex: legacy.ifindex, addr: host6(h) },
                Neigh { mac: host_mac(h), _pad: [0; 2] },
                0,
            )
            .unwrap();
            user.set_neighbor(0, None, host6(h).into(), host_mac(h));
        }
        // In the VLANs: the legacy hosts again in VLAN 100, a server in VLAN 7.
        let mut n = xdp.neighbor_table().unwrap();
        for (key, iface, vid) in &vlans {
            let hosts: Vec<([u8; 4], [u8; 6])> = if *iface == 0 {
                (2..=100u8).map(|h| ([10, 20, 0, h], host_mac(h))).collect()
            } else {
                vec![(SERVER7, SERVER_MAC)]
            };
            for (addr, mac) in hosts {
                n.insert(NeighKey { ifindex: *key, addr }, Neigh { mac, _pad: [0; 2] }, 0).unwrap();
                user.set_neighbor(*iface, Some(*vid), addr.into(), mac);
            }
        }
    }

    let cases = corpus(legacy.mac, uplink.mac);
    assert!(cases.len() >= 500, "the corpus has {} cases", cases.len());
    let ifindex = [legacy.ifindex, uplink.ifindex];
    let (mut forwarded, mut to_host, mut slow, mut dropped, mut policy_denied) = (0, 0, 0, 0, 0);
    // The same for IPv6 frames: [forwarded, to host, dropped, slow].
    let mut six = [0usize; 4];
    let (mut forwarded_tagged, mut vlan_paths) = (0, [0usize; 3]);
    // The userspace engine's rule hits for the frames the program decided itself.
    let mut expected_hits = vec![0u64; rules];
    for (n, c) in cases.iter().enumerate() {
        let before = xdp.counters().unwrap();
        let out = ns.run(|| xdp.test_run(&c.frame, ifindex[c.iface])).unwrap().unwrap();
        let after = xdp.counters().unwrap();
        let moved_drop = Drop::ALL.iter().find(|d| after.drop(**d) > before.drop(**d)).copied();
        let moved_stat = |s: Stat| after.stat(s) > before.stat(s);
        let is_v6 = c.frame.get(12..14) == Some(&[0x86, 0xdd][..]);

        let mut batch = [Packet::new(c.iface, &c.frame)];
        let hits_before = user.counters.rule_hits.values.clone();
        user.process(&mut batch, n as u64 * 1_000_000_000);
        let want = &batch[0];

        let fail = |why: &str| -> ! {
            let (a, b) = (&out.frame, want.frame());
            let first = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            panic!(
                "case {n} ({}): {why}\n  xdp: action {} drop {moved_drop:?} ({} bytes)\n  userspace: {:?} ({} bytes)\n  \
                 first differing byte: {first}\n  input: {:02x?}",
                c.what,
                out.action,
                a.len(),
                want.verdict,
                b.len(),
                c.frame
            )
        };
        if moved_stat(Stat::SlowPath) {
            // The userspace engine is the slow path: it must get the frame as it arrived.
            if out.action != action::PASS || out.frame != c.frame {
                fail("a slow-path frame must reach the slow path unmodified");
            }
            slow += 1;
            six[3] += is_v6 as usize;
            continue;
        }
        for (e, (a, b)) in
            expected_hits.iter_mut().zip(user.counters.rule_hits.values.iter().zip(&hits_before))
        {
            *e += a - b;
        }
        match (out.action, want.verdict) {
            (action::REDIRECT, Verdict::Forward { .. }) => {
                if out.frame != want.frame() {
                    fail("forwarded frames differ");
                }
                forwarded += 1;
                let tagged = |f: &[u8]| matches!(f.get(12..14), Some([0x81, 0x00] | [0x88, 0xa8]));
                match (tagged(&c.frame), tagged(&out.frame)) {
                    (true, false) => vlan_paths[0] += 1,
                    (false, true) => vlan_paths[1] += 1,
                    (true, true) => vlan_paths[2] += 1,
                    (false, false) => {}
                }
                forwarded_tagged += (tagged(&c.frame) || tagged(&out.frame)) as usize;
                six[0] += is_v6 as usize;
            }
            (action::PASS, Verdict::ToHost) => {
                if out.frame != c.frame {
                    fail("a frame for the host must be unmodified");
                }
                to_host += 1;
                six[1] += is_v6 as usize;
            }
            (action::DROP, Verdict::Drop(reason)) => {
                policy_denied += (reason == Drop::PolicyDeny) as usize;
                if moved_drop != Some(reason) {
                    fail("different drop reasons");
                }
                dropped += 1;
                six[2] += is_v6 as usize;
            }
            _ => fail("different verdicts"),
        }
    }
    let rule_hits = xdp.rule_hits(rules).unwrap();
    assert_eq!(rule_hits, expected_hits, "{name}: per-rule hits (program, userspace)");
    eprintln!(
        "differential ({name}): {} cases identical: {forwarded} forwarded, {to_host} to the host, {dropped} dropped \
         ({policy_denied} by policy), {slow} to the slow path (IPv6 of those: {} forwarded, {} to the host, {} \
         dropped, {} to the slow path; tagged: {forwarded_tagged} forwarded, {vlan_paths:?} (in, out, both)); \
         rule hits {rule_hits:?}",
        cases.len(),
        six[0],
        six[1],
        six[2],
        six[3]
    );
    Tally {
        forwarded,
        to_host,
        dropped,
        slow,
        policy_denied,
        rule_hits,
        forwarded_tagged,
        vlan_paths,
        forwarded6: six[0],
        to_host6: six[1],
        dropped6: six[2],
        slow6: six[3],
    }
}
