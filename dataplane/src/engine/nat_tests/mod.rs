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

mod fragments;
mod icmp;
mod mappings;
mod sessions;

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

fn echo(eth: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], id: u16, request: bool, ttl: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, dst, ttl);
    let b = if request { b.icmpv4_echo_request(id, 1) } else { b.icmpv4_echo_reply(id, 1) };
    let mut v = Vec::new();
    b.write(&mut v, b"ping").unwrap();
    v
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
