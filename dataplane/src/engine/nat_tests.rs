//! NAT behaviour through the whole pipeline, each test named after the requirement it checks
//! (RFC 4787 for UDP, RFC 5382 for TCP, RFC 5508 for ICMP, RFC 7422 for deterministic NAT).
//! Expected frames are built independently with etherparse.

use std::net::Ipv4Addr;

use etherparse::{Icmpv4Type, PacketBuilder, icmpv4::DestUnreachableHeader};
use proptest::prelude::*;

use super::{steer, *};
use crate::{
    Drop,
    buffer::Packet,
    config::{Filtering, NatPool, PoolMode, PortRange, Rule, Service, examples::demo},
    packet::{self, L4},
};

const L_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const U_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x22];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0x20, 0x0a];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x19, 0x02];
const SERVER: [u8; 4] = [198, 19, 0, 2];
const REMOTE: [u8; 4] = [203, 0, 113, 53];
const SEC: u64 = 1_000_000_000;

fn pool(filtering: Filtering) -> NatPool {
    NatPool {
        filtering,
        max_sessions: 10_000,
        ..NatPool::defaults("city".into(), 1, 0, vec!["198.18.30.0/30".parse().unwrap()])
    }
}

fn napt_rule() -> Rule {
    Rule {
        name: "lan-napt".into(),
        vrf: 1,
        src: Some("10.20.0.0/24".parse().unwrap()),
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Napt { pool: "city".into() },
    }
}

fn config(p: NatPool) -> Config {
    let mut c = demo();
    c.netmaps.clear();
    c.policies = vec![napt_rule()];
    c.nat_pools = vec![p];
    c
}

fn engine(c: Config) -> Engine {
    let ifaces =
        vec![Iface { name: "legacy0".into(), mac: L_MAC }, Iface { name: "uplink0".into(), mac: U_MAC }];
    let mut e = Engine::new(c, ifaces).unwrap();
    e.set_neighbor(1, None, IpAddr::from(SERVER), SERVER_MAC);
    for h in 1..=20u8 {
        e.set_neighbor(0, None, IpAddr::from([10, 20, 0, h]), HOST_MAC);
    }
    e
}

fn udp(eth: ([u8; 6], [u8; 6]), src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ttl: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, dst, ttl).udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    v
}

fn tcp(eth: ([u8; 6], [u8; 6]), src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn run_at(e: &mut Engine, iface: usize, f: &[u8], secs: u64) -> Packet {
    let mut b = [Packet::new(iface, f)];
    e.process(&mut b, secs * SEC);
    b[0].clone()
}

/// Source address and port of an IPv4 TCP/UDP frame.
fn src_of(f: &[u8]) -> ([u8; 4], u16) {
    (f[26..30].try_into().unwrap(), u16::from_be_bytes([f[34], f[35]]))
}

/// Sends host:sport -> dst:dport out and returns the outside address and port it got.
fn out(e: &mut Engine, host: u8, sport: u16, dst: [u8; 4], dport: u16, secs: u64) -> ([u8; 4], u16) {
    let p = run_at(e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, host], sport, dst, dport, 64), secs);
    assert_eq!(p.verdict, Verdict::Forward { iface: 1 }, "outbound from host {host}");
    src_of(p.frame())
}

/// Sends a reply from `from`:`fport` to the mapping; the verdict.
fn reply(e: &mut Engine, from: [u8; 4], fport: u16, to: ([u8; 4], u16), secs: u64) -> Packet {
    run_at(e, 1, &udp((SERVER_MAC, U_MAC), from, fport, to.0, to.1, 64), secs)
}

#[test]
fn rfc4787_req1_mapping_is_endpoint_independent() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let a = out(&mut e, 5, 5000, SERVER, 53, 0);
    let b = out(&mut e, 5, 5000, REMOTE, 123, 0);
    assert_eq!(a, b, "one inside endpoint, one mapping, whatever the destination");
    let pool: ipnet::Ipv4Net = "198.18.30.0/30".parse().unwrap();
    assert!(pool.contains(&Ipv4Addr::from(a.0)));
}

#[test]
fn rfc4787_req3_no_port_overloading() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let mut seen = std::collections::HashSet::new();
    for host in 1..=20u8 {
        for sport in [1000, 5000, 5001] {
            assert!(
                seen.insert(out(&mut e, host, sport, SERVER, 53, 0)),
                "an outside endpoint was given twice"
            );
        }
    }
}

#[test]
fn rfc4787_req5_udp_mapping_lives_at_least_two_minutes() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    assert_eq!(reply(&mut e, SERVER, 53, m, 299).verdict, Verdict::Forward { iface: 0 });
    // Refreshed by that reply at 299 s; idle past 5 minutes later it is gone.
    assert_eq!(reply(&mut e, SERVER, 53, m, 299 + 301).verdict, Verdict::Drop(Drop::NoTranslation));
    let mut short = pool(Filtering::AddressAndPortDependent);
    short.timeouts.udp = 60;
    assert!(
        config(short).validate().unwrap_err().iter().any(|e| e.message.contains("below the RFC minimums"))
    );
}

#[test]
fn rfc4787_req6_outbound_packets_refresh_the_mapping() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    assert_eq!(out(&mut e, 5, 5000, SERVER, 53, 250), m);
    assert_eq!(reply(&mut e, SERVER, 53, m, 500).verdict, Verdict::Forward { iface: 0 });
}

#[test]
fn rfc4787_req8_filtering_is_configurable() {
    let mut apdf = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut apdf, 5, 5000, SERVER, 53, 0);
    assert_eq!(reply(&mut apdf, SERVER, 53, m, 1).verdict, Verdict::Forward { iface: 0 });
    assert_eq!(reply(&mut apdf, SERVER, 54, m, 1).verdict, Verdict::Drop(Drop::Filtered), "other port");
    assert_eq!(
        reply(&mut apdf, [198, 19, 0, 9], 53, m, 1).verdict,
        Verdict::Drop(Drop::Filtered),
        "other address"
    );
    assert_eq!(apdf.counters.drop(Drop::Filtered), 2);
    let mut eif = engine(config(pool(Filtering::EndpointIndependent)));
    let m = out(&mut eif, 5, 5000, SERVER, 53, 0);
    assert_eq!(reply(&mut eif, [198, 19, 0, 9], 999, m, 1).verdict, Verdict::Forward { iface: 0 });
}

#[test]
fn rfc4787_req9_hairpinning() {
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    let ma = out(&mut e, 5, 5000, SERVER, 53, 0);
    let mb = out(&mut e, 6, 6000, SERVER, 53, 0);
    // Host 6 sends to host 5's outside endpoint: it comes back inside, from 6's mapping.
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 6], 6000, ma.0, ma.1, 64), 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(p.frame(), udp((L_MAC, HOST_MAC), mb.0, mb.1, [10, 20, 0, 5], 5000, 63));
}

#[test]
fn rfc5382_tcp_established_lives_two_hours_four_minutes_and_transitory_four_minutes() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let syn = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 5], 40000, SERVER, 443, "S"), 0);
    let m = src_of(syn.frame());
    let back = |e: &mut Engine, flags, secs| {
        run_at(e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 443, m.0, m.1, flags), secs).verdict
    };
    assert_eq!(back(&mut e, "SA", 1), Verdict::Forward { iface: 0 });
    // Established: idle for 2 h 3 min, still there.
    assert_eq!(back(&mut e, "A", 1 + 7380), Verdict::Forward { iface: 0 });
    // A half-open connection is transitory: gone after 4 minutes idle.
    let syn2 = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 6], 40000, SERVER, 443, "S"), 10_000);
    let m2 = src_of(syn2.frame());
    let v = run_at(&mut e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 443, m2.0, m2.1, "SA"), 10_000 + 241).verdict;
    assert_eq!(v, Verdict::Drop(Drop::NoTranslation));
    // After a reset the session is transitory too.
    assert_eq!(back(&mut e, "R", 7400), Verdict::Forward { iface: 0 });
    assert_eq!(back(&mut e, "A", 7400 + 241), Verdict::Drop(Drop::NoTranslation));
}

fn echo(eth: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], id: u16, request: bool, ttl: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, dst, ttl);
    let b = if request { b.icmpv4_echo_request(id, 1) } else { b.icmpv4_echo_reply(id, 1) };
    let mut v = Vec::new();
    b.write(&mut v, b"ping").unwrap();
    v
}

#[test]
fn rfc5508_req1_echo_identifiers_are_translated_and_queries_live_sixty_seconds() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    // Two hosts ping with the same identifier.
    let a = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], SERVER, 7, true, 64), 0);
    let b = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 6], SERVER, 7, true, 64), 0);
    let id = |f: &[u8]| u16::from_be_bytes([f[38], f[39]]);
    let (sa, sb) = ((a.frame()[26..30].to_vec(), id(a.frame())), (b.frame()[26..30].to_vec(), id(b.frame())));
    assert_ne!(sa, sb, "two queries, two outside identities");
    let out_a: [u8; 4] = sa.0.clone().try_into().unwrap();
    let r = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, out_a, sa.1, false, 64), 59);
    assert_eq!(r.frame(), echo((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], 7, false, 63));
    // Idle past 60 s from the last packet (the reply at 59 s refreshed it), the query is over.
    let late = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, out_a, sa.1, false, 64), 59 + 61);
    assert_eq!(late.verdict, Verdict::Drop(Drop::NoTranslation));
}

/// An ICMP port unreachable from `router` to `to`, quoting UDP `q_src`:`q_sport` -> `q_dst`:53.
fn unreachable(
    eth: ([u8; 6], [u8; 6]),
    router: [u8; 4],
    to: [u8; 4],
    q: ([u8; 4], u16, [u8; 4], u16),
    ttl: u8,
) -> Vec<u8> {
    let qb = PacketBuilder::ipv4(q.0, q.2, 63).udp(q.1, q.3);
    let mut quoted = Vec::new();
    qb.write(&mut quoted, b"hello").unwrap();
    let b = PacketBuilder::ethernet2(eth.0, eth.1)
        .ipv4(router, to, ttl)
        .icmpv4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port));
    let mut v = Vec::new();
    b.write(&mut v, &quoted).unwrap();
    v
}

#[test]
fn rfc5508_req3_inbound_icmp_errors_are_translated_with_their_quoted_packet() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, REMOTE, 53, 0);
    let err = unreachable((SERVER_MAC, U_MAC), SERVER, m.0, (m.0, m.1, REMOTE, 53), 64);
    let p = run_at(&mut e, 1, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    let want = unreachable((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], ([10, 20, 0, 5], 5000, REMOTE, 53), 63);
    assert_eq!(p.frame(), want, "outer, quoted IP and UDP, and ICMP checksums all as if built fresh");
    // An error about a session that does not exist goes nowhere.
    let stray = unreachable((SERVER_MAC, U_MAC), SERVER, m.0, (m.0, m.1 + 1, REMOTE, 53), 64);
    assert_eq!(run_at(&mut e, 1, &stray, 1).verdict, Verdict::Drop(Drop::NoTranslation));
}

#[test]
fn rfc5508_req4_outbound_icmp_errors_are_translated_too() {
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    let m = out(&mut e, 5, 5000, REMOTE, 53, 0);
    // The remote sends to the mapping; the inside host answers with port unreachable.
    let err = unreachable((HOST_MAC, L_MAC), [10, 20, 0, 5], REMOTE, (REMOTE, 53, [10, 20, 0, 5], 5000), 64);
    let p = run_at(&mut e, 0, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 1 });
    assert_eq!(p.frame(), unreachable((U_MAC, SERVER_MAC), m.0, REMOTE, (REMOTE, 53, m.0, m.1), 63));
}

fn fragment(src: [u8; 4], dst: [u8; 4], id: u16, first: bool, payload: &[u8]) -> Vec<u8> {
    let mut h =
        etherparse::Ipv4Header::new(payload.len() as u16, 64, etherparse::IpNumber::UDP, src, dst).unwrap();
    h.identification = id;
    h.more_fragments = first;
    h.fragment_offset = etherparse::IpFragOffset::try_new(if first { 0 } else { 3 }).unwrap();
    let mut v = Vec::new();
    etherparse::Ethernet2Header {
        source: HOST_MAC,
        destination: L_MAC,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut v)
    .unwrap();
    h.write(&mut v).unwrap();
    v.extend_from_slice(payload);
    v
}

#[test]
fn later_fragments_follow_their_first_fragments_translation() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    // First fragment: a UDP header (port 5000 -> 53) and data.
    let mut first_payload = vec![0x13, 0x88, 0x00, 0x35, 0x00, 0x30, 0x00, 0x00];
    first_payload.extend_from_slice(&[7; 16]);
    let f1 = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 0x77, true, &first_payload), 0);
    assert_eq!(f1.verdict, Verdict::Forward { iface: 1 });
    let mapped = src_of(f1.frame());
    let f2 = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 0x77, false, &[9; 24]), 0);
    assert_eq!(f2.verdict, Verdict::Forward { iface: 1 });
    assert_eq!(&f2.frame()[26..30], &mapped.0, "same outside address");
    assert_eq!(&f2.frame()[34..], &[9; 24], "payload untouched");
    // A later fragment of a datagram never seen is dropped and counted.
    let orphan = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 0x78, false, &[9; 24]), 0);
    assert_eq!(orphan.verdict, Verdict::Drop(Drop::FragmentUnknown));
}

#[test]
fn exhausted_ports_drop_with_admin_prohibited_and_never_panic() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.block_size = 4;
    p.max_blocks_per_host = 1;
    let mut e = engine(config(p));
    for sport in 0..4 {
        out(&mut e, 5, 6000 + sport, SERVER, 53, 0);
    }
    let v = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 7000, SERVER, 53, 64), 0);
    assert_eq!(v.verdict, Verdict::Reply { iface: 0, dropped: Drop::PortsExhausted });
    let m = packet::parse(v.frame()).unwrap();
    assert_eq!(m.l4, L4::Icmp { kind: 3, code: 13, ident: 0 });
    // Other hosts still get ports.
    out(&mut e, 6, 6000, SERVER, 53, 0);
}

#[test]
fn a_full_session_table_drops_new_flows_and_keeps_old_ones() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.max_sessions = 2;
    let mut e = engine(config(p));
    let m = out(&mut e, 5, 1, SERVER, 53, 0);
    out(&mut e, 5, 2, SERVER, 53, 0);
    let v = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 3, SERVER, 53, 64), 0).verdict;
    assert_eq!(v, Verdict::Drop(Drop::SessionsFull));
    assert_eq!(reply(&mut e, SERVER, 53, m, 1).verdict, Verdict::Forward { iface: 0 });
    // Once sessions expire, the sweep frees room.
    for s in 0..200 {
        e.process(&mut [], (400 + s) * SEC);
    }
    out(&mut e, 5, 3, SERVER, 53, 600);
}

#[test]
fn rfc7422_deterministic_pool_follows_its_formula_both_ways() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.mode = PoolMode::Deterministic { inside: "10.20.0.0/24".parse().unwrap() };
    p.block_size = 1024; // 63 blocks per address, 4 addresses: 252 hosts (validation allows /24? no)
    let mut c = config(p.clone());
    assert!(c.validate().is_err(), "a /24 needs 256 blocks; the pool has 252");
    p.mode = PoolMode::Deterministic { inside: "10.20.0.0/25".parse().unwrap() };
    c = config(p);
    let mut e = engine(c);
    let (addr, port) = out(&mut e, 5, 5000, SERVER, 53, 0);
    // Host 5: 63 blocks per address, so the first address, block 5.
    assert_eq!((addr, port), ([198, 18, 30, 0], 1024 + 5 * 1024));
    assert_eq!(e.nat().who_owned(Ipv4Addr::from(addr), port + 17), Some(Ipv4Addr::new(10, 20, 0, 5)));
}

fn published() -> Config {
    let mut c = config(pool(Filtering::AddressAndPortDependent));
    c.services = vec![Service {
        name: "city-portal".into(),
        proto: 6,
        outside_vrf: 0,
        outside: "198.18.40.80".parse().unwrap(),
        outside_port: 80,
        inside_vrf: 1,
        inside: "10.20.0.8".parse().unwrap(),
        inside_port: 8080,
    }];
    c.policies.push(Rule {
        name: "portal-in".into(),
        vrf: 0,
        src: None,
        dst: Some("198.18.40.80/32".parse().unwrap()),
        proto: Some(6),
        src_ports: None,
        dst_ports: Some(PortRange { first: 80, last: 80 }),
        action: Action::Dnat,
    });
    c
}

#[test]
fn a_published_service_is_reachable_at_its_plan_address_and_answers_from_it() {
    let mut e = engine(published());
    let p = run_at(&mut e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 33000, [198, 18, 40, 80], 80, "S"), 0);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    let mut want = tcp((L_MAC, HOST_MAC), SERVER, 33000, [10, 20, 0, 8], 8080, "S");
    want[22] = 63; // TTL
    let sum = u16::from_be_bytes([want[24], want[25]]);
    let fixed = hutong_common::checksum::replace2(
        sum.to_be(),
        u16::from_be_bytes([64, 6]).to_be(),
        u16::from_be_bytes([63, 6]).to_be(),
    );
    want[24..26].copy_from_slice(&fixed.to_ne_bytes());
    assert_eq!(p.frame(), want);
    let r = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 8], 8080, SERVER, 33000, "SA"), 0);
    assert_eq!(src_of(r.frame()), ([198, 18, 40, 80], 80));
    // Another port of the same address is not published.
    let other = run_at(&mut e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 33000, [198, 18, 40, 80], 22, "S"), 0);
    assert_eq!(other.verdict, Verdict::Drop(Drop::NoTranslation));
}

#[test]
fn sessions_survive_a_config_swap_unless_the_new_policy_removes_them() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    let mut same = config(pool(Filtering::AddressAndPortDependent));
    same.policies.insert(
        0,
        Rule { name: "unrelated".into(), vrf: 1, src: Some("10.99.0.0/16".parse().unwrap()), ..napt_rule() },
    );
    e.swap(same).unwrap();
    assert_eq!(reply(&mut e, SERVER, 53, m, 1).verdict, Verdict::Forward { iface: 0 }, "still there");
    let mut deny = config(pool(Filtering::AddressAndPortDependent));
    deny.policies.insert(
        0,
        Rule {
            name: "no-host-5".into(),
            src: Some("10.20.0.5/32".parse().unwrap()),
            action: Action::Deny,
            ..napt_rule()
        },
    );
    e.swap(deny).unwrap();
    assert_eq!(
        reply(&mut e, SERVER, 53, m, 2).verdict,
        Verdict::Drop(Drop::NoTranslation),
        "removed by policy"
    );
}

#[test]
fn overlapping_legacy_networks_behind_napt_get_their_own_replies() {
    let mut c = config(pool(Filtering::AddressAndPortDependent));
    c.vrfs.push(crate::config::Vrf { id: 2, name: "lan2".into() });
    c.ports.push(crate::config::PortConfig {
        name: "legacy1".into(),
        vlan: None,
        role: crate::config::Role::Legacy,
        vrf: 2,
        addresses: vec!["10.20.0.1/24".parse().unwrap()],
        mtu: 1500,
        tunnel: None,
    });
    let mut p2 = pool(Filtering::AddressAndPortDependent);
    p2.name = "lan2".into();
    p2.inside_vrf = 2;
    p2.addresses = vec!["198.18.31.0/30".parse().unwrap()];
    c.nat_pools.push(p2);
    c.policies.push(Rule {
        name: "lan2-napt".into(),
        vrf: 2,
        action: Action::Napt { pool: "lan2".into() },
        ..napt_rule()
    });
    let ifaces = vec![
        Iface { name: "legacy0".into(), mac: L_MAC },
        Iface { name: "uplink0".into(), mac: U_MAC },
        Iface { name: "legacy1".into(), mac: [2, 0, 0, 0, 0, 0x33] },
    ];
    let mut e = Engine::new(c, ifaces).unwrap();
    e.set_neighbor(1, None, IpAddr::from(SERVER), SERVER_MAC);
    e.set_neighbor(0, None, IpAddr::from([10, 20, 0, 5]), [2, 0, 0, 0, 0xa, 5]);
    e.set_neighbor(2, None, IpAddr::from([10, 20, 0, 5]), [2, 0, 0, 0, 0xb, 5]);
    // The same inside address and port in both networks.
    let a = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 5000, SERVER, 53, 64), 0);
    let b =
        run_at(&mut e, 2, &udp((HOST_MAC, [2, 0, 0, 0, 0, 0x33]), [10, 20, 0, 5], 5000, SERVER, 53, 64), 0);
    let (ma, mb) = (src_of(a.frame()), src_of(b.frame()));
    assert_ne!(ma.0, mb.0, "different pools, different plan addresses");
    let ra = reply(&mut e, SERVER, 53, ma, 1);
    let rb = reply(&mut e, SERVER, 53, mb, 1);
    assert_eq!((ra.verdict, &ra.frame()[0..6]), (Verdict::Forward { iface: 0 }, &[2, 0, 0, 0, 0xa, 5][..]));
    assert_eq!((rb.verdict, &rb.frame()[0..6]), (Verdict::Forward { iface: 2 }, &[2, 0, 0, 0, 0xb, 5][..]));
}

proptest! {
    /// Out, then the reply to what went out, comes back as the reply to the original packet.
    #[test]
    fn napt_round_trip_restores_the_original(host in 1u8..=20, sport in 1u16.., dport in 1u16.., tcp_flow in any::<bool>()) {
        let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
        let build = |eth: ([u8; 6], [u8; 6]), s: [u8; 4], sp: u16, d: [u8; 4], dp: u16, ttl: u8| {
            let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(s, d, ttl);
            let mut v = Vec::new();
            if tcp_flow { b.tcp(sp, dp, 9, 512).syn().write(&mut v, b"x").unwrap(); } else { b.udp(sp, dp).write(&mut v, b"x").unwrap(); }
            v
        };
        let inside = [10, 20, 0, host];
        let o = run_at(&mut e, 0, &build((HOST_MAC, L_MAC), inside, sport, SERVER, dport, 64), 0);
        prop_assert_eq!(o.verdict, Verdict::Forward { iface: 1 });
        let (ma, mp) = src_of(o.frame());
        prop_assert_eq!(o.frame(), &build((U_MAC, SERVER_MAC), ma, mp, SERVER, dport, 63)[..]);
        let back = run_at(&mut e, 1, &build((SERVER_MAC, U_MAC), SERVER, dport, ma, mp, 64), 1);
        prop_assert_eq!(back.frame(), &build((L_MAC, HOST_MAC), SERVER, dport, inside, sport, 63)[..]);
    }
}

/// An ICMP error of `kind` from `router` to `to`, quoting `quoted` (an IPv4 packet, whole).
fn error_quoting(
    eth: ([u8; 6], [u8; 6]),
    router: [u8; 4],
    to: [u8; 4],
    t: Icmpv4Type,
    quoted: &[u8],
    ttl: u8,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(router, to, ttl).icmpv4(t);
    let mut v = Vec::new();
    b.write(&mut v, quoted).unwrap();
    v
}

fn ip_tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 63).tcp(sport, dport, 77, 1000).syn().write(&mut v, &[]).unwrap();
    v
}

fn ip_echo(src: [u8; 4], dst: [u8; 4], id: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 1).icmpv4_echo_request(id, 9).write(&mut v, b"ping").unwrap();
    v
}

#[test]
fn rfc5508_icmp_error_quoting_tcp_fixes_the_quoted_tcp_checksum() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let syn = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 5], 40000, REMOTE, 443, "S"), 0);
    let m = src_of(syn.frame());
    let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host);
    let err =
        error_quoting((SERVER_MAC, U_MAC), SERVER, m.0, unreach.clone(), &ip_tcp(m.0, m.1, REMOTE, 443), 64);
    let p = run_at(&mut e, 1, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    let want = error_quoting(
        (L_MAC, HOST_MAC),
        SERVER,
        [10, 20, 0, 5],
        unreach,
        &ip_tcp([10, 20, 0, 5], 40000, REMOTE, 443),
        63,
    );
    assert_eq!(p.frame(), want);
}

#[test]
fn rfc5508_icmp_error_quoting_an_echo_request_restores_its_identifier() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let ping = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], REMOTE, 7, true, 64), 0);
    let (ma, mid) = (
        <[u8; 4]>::try_from(&ping.frame()[26..30]).unwrap(),
        u16::from_be_bytes([ping.frame()[38], ping.frame()[39]]),
    );
    let te = Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit);
    let err = error_quoting((SERVER_MAC, U_MAC), SERVER, ma, te.clone(), &ip_echo(ma, REMOTE, mid), 64);
    let p = run_at(&mut e, 1, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(
        p.frame(),
        error_quoting((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], te, &ip_echo([10, 20, 0, 5], REMOTE, 7), 63)
    );
}

#[test]
fn rfc5508_icmp_errors_about_netmapped_traffic_are_translated_statelessly() {
    let mut e = engine(demo());
    let te = Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit);
    let quoted = |src: [u8; 4]| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, REMOTE, 1).udp(5000, 53).write(&mut v, b"q").unwrap();
        v
    };
    let err = error_quoting(
        (SERVER_MAC, U_MAC),
        SERVER,
        [198, 18, 20, 5],
        te.clone(),
        &quoted([198, 18, 20, 5]),
        64,
    );
    let p = run_at(&mut e, 1, &err, 0);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(
        p.frame(),
        error_quoting((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], te, &quoted([10, 20, 0, 5]), 63)
    );
}

#[test]
fn route_via_forwards_untranslated_to_a_fixed_next_hop() {
    let mut c = demo();
    c.policies.insert(
        0,
        Rule {
            name: "to-old-branch".into(),
            vrf: 1,
            src: None,
            dst: Some("10.30.0.0/16".parse().unwrap()),
            proto: None,
            src_ports: None,
            dst_ports: None,
            action: Action::RouteVia { port: "legacy0".into(), via: Some("10.20.0.254".parse().unwrap()) },
        },
    );
    let mut e = engine(c);
    let router = [2, 0, 0, 0, 0x20, 0xfe];
    e.set_neighbor(0, None, IpAddr::from([10, 20, 0, 254]), router);
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 1, [10, 30, 1, 1], 2, 64), 0);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(p.frame(), udp((L_MAC, router), [10, 20, 0, 5], 1, [10, 30, 1, 1], 2, 63));
}

/// Two workers behind a steering function: every session's packets meet the worker that holds
/// it, in both directions, fragments included.
#[test]
fn sessions_are_sharded_across_workers_and_steering_finds_them() {
    let c = config(pool(Filtering::AddressAndPortDependent));
    let mk = |w| {
        let ifaces =
            vec![Iface { name: "legacy0".into(), mac: L_MAC }, Iface { name: "uplink0".into(), mac: U_MAC }];
        let mut e = Engine::new_worker(c.clone(), ifaces, w, 2).unwrap();
        e.set_neighbor(1, None, IpAddr::from(SERVER), SERVER_MAC);
        for h in 1..=60u8 {
            e.set_neighbor(0, None, IpAddr::from([10, 20, 0, h]), HOST_MAC);
        }
        e
    };
    let mut workers = [mk(0), mk(1)];
    let compiled = workers[0].config_handle().current();
    let mut steer = steer::Steering::default();
    let mut send = |iface: usize, f: &[u8]| {
        let w = steer.worker(&compiled, iface, f, 2) as usize;
        run_at(&mut workers[w], iface, f, 0)
    };
    let mut mapped = Vec::new();
    for h in 2..=60u8 {
        let p = send(0, &udp((HOST_MAC, L_MAC), [10, 20, 0, h], 4000, SERVER, 53, 64));
        assert_eq!(p.verdict, Verdict::Forward { iface: 1 });
        mapped.push((h, src_of(p.frame())));
    }
    for (h, m) in &mapped {
        let p = send(1, &udp((SERVER_MAC, U_MAC), SERVER, 53, m.0, m.1, 64));
        assert_eq!(
            p.frame(),
            udp((L_MAC, HOST_MAC), SERVER, 53, [10, 20, 0, *h], 4000, 63),
            "reply to host {h}"
        );
    }
    // Inbound fragments: the first carries the port, the later one follows it to its worker.
    let (h, m) = mapped[7];
    let mut first = vec![0x00, 0x35, (m.1 >> 8) as u8, m.1 as u8, 0x00, 0x30, 0x00, 0x00];
    first.extend_from_slice(&[1; 16]);
    let frag = |payload: &[u8], is_first: bool| {
        let mut f = fragment(SERVER, m.0, 0x99, is_first, payload);
        f[0..12].copy_from_slice(&[U_MAC, SERVER_MAC].concat());
        f
    };
    assert_eq!(send(1, &frag(&first, true)).verdict, Verdict::Forward { iface: 0 });
    let later = send(1, &frag(&[2; 24], false));
    assert_eq!(later.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(&later.frame()[30..34], &[10, 20, 0, h]);
    let (a, b) = (workers[0].nat().sessions().len(), workers[1].nat().sessions().len());
    assert_eq!(a + b, mapped.len());
    assert!(a > 10 && b > 10, "sessions spread over both workers: {a} and {b}");
}

/// What the XDP program may repeat (see [`Offload`]): whole packets of a session, never SYN,
/// FIN, RST, fragments or hairpins, and nothing unless asked for.
#[test]
fn offloads_are_recorded_only_for_repeatable_session_packets() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    out(&mut e, 5, 5000, SERVER, 53, 0);
    assert!(e.take_offloads().is_empty(), "nothing is recorded unless tracked");
    e.track_offloads();
    let m = out(&mut e, 5, 5000, SERVER, 53, 1);
    let o = e.take_offloads();
    assert_eq!(o.len(), 1, "{o:?}");
    let o = o[0];
    assert_eq!(
        (o.src, o.sport, o.dst, o.dport),
        (Ipv4Addr::new(10, 20, 0, 5), 5000, Ipv4Addr::from(SERVER), 53)
    );
    assert_eq!((o.new_src.octets(), o.new_sport, o.iface, o.next_hop), (m.0, m.1, 1, Ipv4Addr::from(SERVER)));
    let key = nat::sessions::out_key(nat::sessions::UDP, u32::from_be_bytes(m.0), m.1);
    assert_eq!(o.session, Some(nat::SessionRef { session: key, remote: (u32::from_be_bytes(SERVER), 53) }));
    // The answer: the reverse direction, same session.
    assert!(matches!(reply(&mut e, SERVER, 53, m, 2).verdict, Verdict::Forward { iface: 0 }));
    let back = e.take_offloads();
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].new_dst, back[0].new_dport, back[0].session),
        (Ipv4Addr::new(10, 20, 0, 5), 5000, o.session)
    );
    // TCP: the SYN and FIN are the engine's to see; the ACK in between may be repeated.
    for (flags, repeatable) in [("S", false), ("A", true), ("FA", false), ("RA", false)] {
        let f = tcp((HOST_MAC, L_MAC), [10, 20, 0, 6], 6000, SERVER, 80, flags);
        assert!(matches!(run_at(&mut e, 0, &f, 3).verdict, Verdict::Forward { .. }), "{flags}");
        assert_eq!(e.take_offloads().len(), repeatable as usize, "TCP {flags}");
    }
    // A first fragment: its later fragments follow it in the engine alone.
    let p = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 9, true, &[0; 16]), 4);
    assert!(matches!(p.verdict, Verdict::Forward { .. }));
    assert!(e.take_offloads().is_empty(), "first fragment");
    // To another host's mapping: refused by its filtering, the packet goes on to the uplink, but
    // that changes as soon as the other host writes to this one; the engine keeps it.
    let mb = out(&mut e, 7, 7000, SERVER, 53, 5);
    e.take_offloads();
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 5000, mb.0, mb.1, 64), 6);
    assert!(matches!(p.verdict, Verdict::Forward { iface: 1 }), "{:?}", p.verdict);
    assert!(e.take_offloads().is_empty(), "to a mapping of ours, filtered");
    // A hairpin proper (endpoint-independent filtering) depends on two sessions.
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    e.track_offloads();
    let mb = out(&mut e, 7, 7000, SERVER, 53, 0);
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 5000, mb.0, mb.1, 64), 1);
    assert!(matches!(p.verdict, Verdict::Forward { iface: 0 }), "{:?}", p.verdict);
    assert_eq!(e.take_offloads().len(), 1, "only host 7's own first packet");
}

/// The session events the flows follow: a fourth remote makes filtering forget the first, and
/// an expired session is freed.
#[test]
fn nat_events_name_forgotten_remotes_and_freed_sessions() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    e.track_offloads();
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    for port in [54, 55, 56] {
        out(&mut e, 5, 5000, SERVER, port, 1);
    }
    let key = nat::sessions::out_key(nat::sessions::UDP, u32::from_be_bytes(m.0), m.1);
    let events = e.nat_mut().take_events();
    assert_eq!(
        events,
        vec![nat::NatEvent::Forgot(nat::SessionRef {
            session: key,
            remote: (u32::from_be_bytes(SERVER), 53)
        })]
    );
    // Refreshed from outside (the program forwarded a packet at 250 s), it outlives its timeout.
    assert!(e.nat_mut().refresh(key, 250, 250));
    out(&mut e, 6, 6000, SERVER, 53, 400);
    assert!(e.nat().is_live(key, 400) && e.nat_mut().take_events().is_empty());
    // Idle past the UDP timeout (300 s after 250 s): the sweep frees it.
    for s in 560..600 {
        out(&mut e, 6, 6000, SERVER, 53, s);
    }
    assert!(e.nat_mut().take_events().contains(&nat::NatEvent::Freed(key)));
}

/// The sessions API's view: filters and pages over live sessions, in outside order.
#[test]
fn sessions_are_found_by_address_port_vrf_and_protocol_a_page_at_a_time() {
    use crate::nat::query::SessionFilter;
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m5 = out(&mut e, 5, 5000, SERVER, 53, 0);
    out(&mut e, 6, 6000, SERVER, 53, 0);
    out(&mut e, 6, 6001, REMOTE, 53, 0);
    let all = e.nat().query(&SessionFilter::default(), 0, 10, 1);
    assert_eq!(all.total, 3);
    let host5 = SessionFilter { addr: Some(Ipv4Addr::new(10, 20, 0, 5)), ..SessionFilter::default() };
    let page = e.nat().query(&host5, 0, 10, 1);
    assert_eq!(page.total, 1);
    let s = &page.sessions[0];
    assert_eq!((s.proto, s.pool.as_str(), s.inside.as_str()), ("udp", "city", "10.20.0.5:5000"));
    assert_eq!(s.outside, format!("{}:{}", Ipv4Addr::from(m5.0), m5.1));
    assert_eq!((s.remotes.clone(), s.expires_in_seconds), (vec!["198.19.0.2:53".to_string()], Some(299)));
    let remote = SessionFilter { addr: Some(Ipv4Addr::from(REMOTE)), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&remote, 0, 10, 1).total, 1, "by remote address");
    let port = SessionFilter { port: Some(6001), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&port, 0, 10, 1).total, 1);
    let tcp = SessionFilter { proto: Some(6), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&tcp, 0, 10, 1).total, 0);
    let other_vrf = SessionFilter { vrf: Some(7), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&other_vrf, 0, 10, 1).total, 0);
    // Pages: in outside order, without overlap.
    let first = e.nat().query(&SessionFilter::default(), 0, 2, 1);
    let second = e.nat().query(&SessionFilter::default(), 2, 2, 1);
    assert_eq!((first.sessions.len(), second.sessions.len(), second.total), (2, 1, 3));
    let mut keys: Vec<u64> = first.sessions.iter().chain(&second.sessions).map(|s| s.key).collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted);
    keys.dedup();
    assert_eq!(keys.len(), 3);
    // Expired sessions are not shown.
    assert_eq!(e.nat().query(&SessionFilter::default(), 0, 10, 400).total, 0);
}

#[test]
fn echo_requests_to_pool_and_service_addresses_go_to_the_host_stack_and_replies_do_not() {
    use crate::host::{Ask, Owns};
    let mut e = engine(published());
    // Pool 198.18.30.0/30 and service 198.18.40.80, both outside in VRF 0 (the uplink).
    for dst in [[198, 18, 30, 2], [198, 18, 40, 80]] {
        let p = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, dst, 9, true, 64), 0);
        assert_eq!(p.verdict, Verdict::ToHost, "{dst:?}");
        // An echo reply with no session is not the host's: nobody here asked.
        let p = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, dst, 9, false, 64), 0);
        assert_eq!(p.verdict, Verdict::Drop(Drop::NoTranslation), "{dst:?}");
    }
    // Off the pool, and from the inside VRF (the pool is not an address there).
    let p = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, [198, 18, 30, 9], 9, true, 64), 0);
    assert_eq!(p.verdict, Verdict::Drop(Drop::NoTranslation));
    let p = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], [198, 18, 30, 2], 9, true, 64), 0);
    assert_ne!(p.verdict, Verdict::ToHost);
    // A session's echo still goes to its inside host: a query out, its answer back.
    let (out_addr, id) = {
        let q = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], SERVER, 7, true, 64), 1);
        let f = q.frame();
        (<[u8; 4]>::try_from(&f[26..30]).unwrap(), u16::from_be_bytes([f[38], f[39]]))
    };
    let r = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, out_addr, id, false, 64), 1);
    assert_eq!(r.verdict, Verdict::Forward { iface: 0 });

    // What the host stack answers for, by port: echo for the NAT addresses of the port's VRF;
    // ARP for NAT addresses on its subnets only. The ports' own addresses are untagged ones
    // here, on their interfaces: the kernel's.
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(e.owns(1, None, ip("198.18.30.2"), Ask::Echo));
    assert!(!e.owns(0, None, ip("198.18.30.2"), Ask::Echo), "not in the legacy VRF");
    assert!(!e.owns(1, None, ip("198.18.30.2"), Ask::Resolve), "198.18.30.0/30 is not on 198.19.0.0/24");
    assert!(!e.owns(1, None, ip("198.19.0.1"), Ask::Echo), "the kernel's");
    assert!(!e.owns(1, None, ip("198.19.0.1"), Ask::Resolve), "the kernel's");
    assert!(!e.owns(1, Some(5), ip("198.18.30.2"), Ask::Echo), "no such port");
    let mut c = published();
    c.nat_pools[0].addresses = vec!["198.19.0.100/32".parse().unwrap()];
    c.ports[1].vlan = Some(7); // the uplink as a VLAN port: no kernel address
    for r in &mut c.routes {
        r.port = c.ports[1].key();
    }
    let mut e = engine(c);
    e.set_neighbor(1, Some(7), IpAddr::from(SERVER), SERVER_MAC);
    assert!(e.owns(1, Some(7), ip("198.19.0.100"), Ask::Resolve), "a pool address on the uplink's subnet");
    assert!(e.owns(1, Some(7), ip("198.19.0.1"), Ask::Resolve), "a VLAN port's own address");
    assert!(e.owns(1, Some(7), ip("198.19.0.1"), Ask::Echo));
    assert!(!e.owns(1, None, ip("198.19.0.1"), Ask::Echo), "no untagged port there");
}

/// After a flood the pool is full (its `max_sessions`); once the sessions' timeout passes, the timed expiry
/// frees them all within a turn of the clock hand (`nat::EXPIRY_TURN`, in calls every
/// `EXPIRY_INTERVAL`) without a single packet, so a new host gets ports at once. Before, only
/// packet batches swept, 64 slots each: one datagram a second would have taken hours.
#[test]
fn idle_sessions_free_their_ports_on_time_without_traffic() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.max_blocks_per_host = 64;
    let mut e = engine(config(p));
    // Hosts 1-20 open sessions until the pool refuses more.
    let mut sessions = 0;
    'flood: for host in 1..=20u8 {
        for sport in 1000..1500u16 {
            let f = udp((HOST_MAC, L_MAC), [10, 20, 0, host], sport, SERVER, 53, 64);
            if run_at(&mut e, 0, &f, 0).verdict != (Verdict::Forward { iface: 1 }) {
                break 'flood;
            }
            sessions += 1;
        }
    }
    assert_eq!(sessions, 10_000, "max_sessions ends the flood");
    let usage = &e.nat().pool_usage()[0];
    assert_eq!(usage.sessions, 10_000);
    let timeout = crate::config::Timeouts::default().udp as u64;
    // Before the timeout nothing goes.
    assert_eq!(e.expire((timeout - 1) * SEC), 0);
    let calls = (crate::nat::EXPIRY_TURN.as_millis() / crate::nat::EXPIRY_INTERVAL.as_millis()) as usize;
    let mut freed = 0;
    for _ in 0..calls {
        freed += e.expire((timeout + 1) * SEC);
    }
    let usage = &e.nat().pool_usage()[0];
    assert_eq!((freed, usage.sessions, usage.blocks_used), (10_000, 0, 0), "all freed within a turn");
    let (addr, _) = out(&mut e, 21, 7000, SERVER, 53, timeout + 1);
    assert!(addr[..3] == [198, 18, 30], "a new host gets a mapping at once");
}

/// A session query walks the table a bounded step at a time (the forwarding loop runs batches
/// between steps), and its page is the one a whole sort gives: the same sessions in the same
/// order, the same total, with filters and offsets.
#[test]
fn session_queries_walk_the_table_in_bounded_steps() {
    use crate::nat::query::{MAX_DEPTH, SCAN_STEP, SessionFilter, SessionScan};
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.max_blocks_per_host = 64;
    let mut e = engine(config(p));
    for host in 1..=20u8 {
        for sport in 1000..1500u16 {
            out(&mut e, host, sport, SERVER, 53, 0);
        }
    }
    let nat = e.nat();
    let by_hand = |f: &SessionFilter| {
        let mut keys: Vec<u64> = nat
            .sessions()
            .iter()
            .filter(|(_, s)| f.addr.is_none_or(|a| s.in_addr == u32::from(a)))
            .map(|(_, s)| s.out_key())
            .collect();
        keys.sort_unstable();
        keys
    };
    for (filter, offset, limit) in [
        (SessionFilter::default(), 0, 100),
        (SessionFilter::default(), 9_950, 50),
        (SessionFilter { addr: Some(Ipv4Addr::new(10, 20, 0, 7)), ..Default::default() }, 100, 1000),
    ] {
        let mut scan = SessionScan::new(filter.clone(), offset, limit, 1);
        let mut steps = 1;
        while !nat.scan(&mut scan, SCAN_STEP) {
            steps += 1;
        }
        assert_eq!(steps, nat.sessions().slots().div_ceil(SCAN_STEP), "one step per {SCAN_STEP} slots");
        let page = nat.page(scan);
        let expected = by_hand(&filter);
        assert_eq!(page.total, expected.len());
        let keys: Vec<u64> = page.sessions.iter().map(|s| s.key).collect();
        assert_eq!(keys, expected.iter().copied().skip(offset).take(limit).collect::<Vec<_>>());
        assert_eq!(page, nat.query(&filter, offset, limit, 1));
    }
    // No deeper than MAX_DEPTH.
    let page = nat.query(&SessionFilter::default(), MAX_DEPTH - 10, 1000, 1);
    assert_eq!((page.total, page.sessions.len()), (10_000, 10));
}

/// `fragment`, arriving on `iface` with these MACs.
fn fragment_on(
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    first: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = fragment(src, dst, id, first, payload);
    f[..6].copy_from_slice(&macs.1);
    f[6..12].copy_from_slice(&macs.0);
    f
}

/// RFC 4787 REQ-14: a NAT must handle fragments out of order. A later fragment that arrives
/// before its first waits (counted as `fragments_held`) and leaves, translated like the first,
/// once the first has been; outbound and inbound alike. One whose first never comes is
/// dropped as `fragment_unknown` when its wait is over; and one source cannot hold more than
/// its share.
#[test]
fn rfc4787_req14_fragments_out_of_order_wait_for_their_first() {
    use crate::engine::reorder::{PER_SOURCE, WAIT_NS};
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    e.hold_unresolved();
    let mut first_payload = vec![0x13, 0x88, 0x00, 0x35, 0x00, 0x30, 0x00, 0x00];
    first_payload.extend_from_slice(&[7; 16]);
    let host = [10, 20, 0, 5];
    // Outbound: the later fragment first.
    let later = run_at(&mut e, 0, &fragment(host, SERVER, 0x77, false, &[9; 24]), 0);
    assert_eq!(later.verdict, Verdict::Pending);
    assert_eq!(e.counters.stat(Stat::FragmentsHeld), 1);
    assert!(e.take_released(0).is_empty(), "nothing to release before the first fragment");
    let first = run_at(&mut e, 0, &fragment(host, SERVER, 0x77, true, &first_payload), 0);
    assert_eq!(first.verdict, Verdict::Forward { iface: 1 });
    let mapped = src_of(first.frame());
    let released = e.take_released(0);
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].verdict, Verdict::Forward { iface: 1 });
    assert_eq!(&released[0].frame()[26..30], &mapped.0, "the first fragment's outside address");
    assert_eq!(&released[0].frame()[34..], &[9; 24], "payload untouched");
    // Inbound: the server answers in two fragments, the later one first.
    let (out_addr, out_port) = mapped;
    let mut reply_first = vec![0x00, 0x35];
    reply_first.extend_from_slice(&out_port.to_be_bytes());
    reply_first.extend_from_slice(&[0x00, 0x30, 0x00, 0x00]);
    reply_first.extend_from_slice(&[5; 16]);
    let back_later =
        run_at(&mut e, 1, &fragment_on((SERVER_MAC, U_MAC), SERVER, out_addr, 0x99, false, &[8; 24]), 1);
    assert_eq!(back_later.verdict, Verdict::Pending);
    let back_first =
        run_at(&mut e, 1, &fragment_on((SERVER_MAC, U_MAC), SERVER, out_addr, 0x99, true, &reply_first), 1);
    assert_eq!(back_first.verdict, Verdict::Forward { iface: 0 });
    let released = e.take_released(SEC);
    assert_eq!(released.len(), 1);
    assert_eq!(
        (released[0].verdict, &released[0].frame()[30..34]),
        (Verdict::Forward { iface: 0 }, &host[..])
    );
    // Waiting in vain: dropped and counted once the wait is over.
    let unknown = e.counters.drop(Drop::FragmentUnknown);
    assert_eq!(
        run_at(&mut e, 0, &fragment(host, SERVER, 0x78, false, &[9; 24]), 2).verdict,
        Verdict::Pending
    );
    e.expire(2 * SEC + WAIT_NS);
    assert_eq!(e.counters.drop(Drop::FragmentUnknown), unknown + 1);
    // Bounded per source: the one beyond its share is dropped at once.
    for id in 0..PER_SOURCE as u16 {
        run_at(&mut e, 0, &fragment(host, SERVER, 0x1000 + id, false, &[9; 24]), 10);
    }
    let over = run_at(&mut e, 0, &fragment(host, SERVER, 0x2000, false, &[9; 24]), 10);
    assert_eq!(over.verdict, Verdict::Drop(Drop::FragmentUnknown));
    // Another host still has room.
    let other = run_at(&mut e, 0, &fragment([10, 20, 0, 6], SERVER, 0x2000, false, &[9; 24]), 10);
    assert_eq!(other.verdict, Verdict::Pending);
}
