//! Behaviour of the whole pipeline, on the demo shape and variations of it. Expected frames are
//! built independently with etherparse, which computes every checksum from scratch.

use std::net::IpAddr;

use etherparse::{PacketBuilder, VlanId};
use proptest::prelude::*;

use super::*;
use crate::{
    Drop, Netmap, Nptv6,
    buffer::Packet,
    config::{
        PortConfig, PortRange, Role, RouteConfig, Rule, Vrf,
        examples::{demo, rule},
    },
    packet::{self, L3, L4},
};

mod errors;
mod forwarding;
mod ipv6;
mod neighbors;
mod tunnels;

const L_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const U_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x22];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0x20, 0x0a];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x19, 0x02];
const HOST: [u8; 4] = [10, 20, 0, 10];
const HOST_PLAN: [u8; 4] = [198, 18, 20, 10];
const SERVER: [u8; 4] = [198, 19, 0, 2];

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

fn engine(config: Config) -> Engine {
    let ifaces =
        vec![Iface { name: "legacy0".into(), mac: L_MAC }, Iface { name: "uplink0".into(), mac: U_MAC }];
    let mut e = Engine::new(config, ifaces).unwrap();
    e.set_neighbor(1, None, ip(SERVER), SERVER_MAC);
    e.set_neighbor(0, None, ip(HOST), HOST_MAC);
    e
}

fn udp(eth: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], ttl: u8, len: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, dst, ttl).udp(40000, 53);
    let mut v = Vec::new();
    b.write(&mut v, &vec![0x5a; len]).unwrap();
    v
}

fn run(e: &mut Engine, iface: usize, frame: &[u8]) -> Packet {
    let mut batch = [Packet::new(iface, frame)];
    e.process(&mut batch, 0);
    batch[0].clone()
}

/// Two legacy networks that both use 10.0.0.0/16, each in its own VRF on its own interface,
/// netmapped to different plan blocks, reaching the same server.
fn overlapping() -> (Engine, [u8; 6]) {
    let mut c = demo();
    c.vrfs.push(Vrf { id: 2, name: "lan2".into() });
    c.ports[0].addresses = vec!["10.0.0.1/16".parse().unwrap()];
    c.ports.push(PortConfig {
        name: "legacy1".into(),
        vlan: None,
        role: Role::Legacy,
        vrf: 2,
        addresses: vec!["10.0.0.1/16".parse().unwrap()],
        mtu: 1500,
        tunnel: None,
    });
    c.netmaps = vec![
        Netmap {
            inside_vrf: 1,
            inside: "10.0.0.0/16".parse().unwrap(),
            outside_vrf: 0,
            outside: "198.18.0.0/16".parse().unwrap(),
        },
        Netmap {
            inside_vrf: 2,
            inside: "10.0.0.0/16".parse().unwrap(),
            outside_vrf: 0,
            outside: "198.20.0.0/16".parse().unwrap(),
        },
    ];
    c.policies = vec![
        rule("a-out", 1, Some("10.0.0.0/16"), None, Action::Netmap),
        rule("b-out", 2, Some("10.0.0.0/16"), None, Action::Netmap),
        rule("a-in", 0, None, Some("198.18.0.0/16"), Action::Netmap),
        rule("b-in", 0, None, Some("198.20.0.0/16"), Action::Netmap),
    ];
    let l2_mac = [2, 0, 0, 0, 0, 0x33];
    let ifaces = vec![
        Iface { name: "legacy0".into(), mac: L_MAC },
        Iface { name: "uplink0".into(), mac: U_MAC },
        Iface { name: "legacy1".into(), mac: l2_mac },
    ];
    let mut e = Engine::new(c, ifaces).unwrap();
    e.set_neighbor(1, None, ip(SERVER), SERVER_MAC);
    e.set_neighbor(0, None, ip([10, 0, 0, 5]), [2, 0, 0, 0, 0xa, 5]);
    e.set_neighbor(2, None, ip([10, 0, 0, 5]), [2, 0, 0, 0, 0xb, 5]);
    (e, l2_mac)
}

/// The demo with IPv6: fd01:203:405::/48 inside, NPTv6 to 2001:db8:1::/48, both ways.
fn nptv6_config() -> Config {
    let mut c = demo();
    c.ports[0].addresses.push("fd01:203:405::1/48".parse().unwrap());
    c.ports[1].addresses.push("2001:db8:ff::1/64".parse().unwrap());
    c.nptv6 = vec![Nptv6 {
        inside_vrf: 1,
        inside: "fd01:203:405::/48".parse().unwrap(),
        outside_vrf: 0,
        outside: "2001:db8:1::/48".parse().unwrap(),
    }];
    c.routes.push(RouteConfig {
        vrf: 0,
        prefix: "::/0".parse().unwrap(),
        port: "uplink0".into(),
        via: Some("2001:db8:ff::2".parse().unwrap()),
    });
    c.policies.push(rule("v6-out", 1, Some("fd01:203:405::/48"), None, Action::Nptv6));
    c.policies.push(rule("v6-in", 0, None, Some("2001:db8:1::/48"), Action::Nptv6));
    c
}

/// The demo gateway reaching a branch network 10.30.0.0/16 through a GRE tunnel over the
/// extranet (a transitional network), with key 7.
fn tunnelled() -> Config {
    let mut c = demo();
    c.ports.push(PortConfig {
        name: "gre-branch".into(),
        vlan: None,
        role: Role::Tunnel,
        vrf: 1,
        addresses: vec![],
        mtu: 1472,
        tunnel: Some(crate::config::GreTunnel {
            local: "198.19.0.1".parse().unwrap(),
            remote: "198.51.100.9".parse().unwrap(),
            underlay_vrf: 0,
            key: Some(7),
        }),
    });
    c.routes.push(RouteConfig {
        vrf: 1,
        prefix: "10.30.0.0/16".parse().unwrap(),
        port: "gre-branch".into(),
        via: None,
    });
    let permit = |name: &str, src: Option<&str>, dst: &str| Rule {
        name: name.into(),
        vrf: 1,
        src: src.map(|s| s.parse().unwrap()),
        dst: Some(dst.parse().unwrap()),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Permit,
    };
    c.policies.insert(0, permit("to-branch", None, "10.30.0.0/16"));
    c.policies.insert(0, permit("from-branch", Some("10.30.0.0/16"), "10.20.0.0/24"));
    c
}

fn gre_frame(eth: ([u8; 6], [u8; 6]), outer_src: &str, outer_dst: &str, key: u32, inner: &[u8]) -> Vec<u8> {
    let mut v = [eth.1, eth.0].concat();
    v.extend_from_slice(&[0x08, 0x00]);
    v.extend_from_slice(&crate::packet::gre::outer(
        outer_src.parse().unwrap(),
        outer_dst.parse().unwrap(),
        inner.len(),
        0x0800,
        Some(key),
    ));
    v.extend_from_slice(inner);
    v
}

fn ip_udp(src: [u8; 4], dst: [u8; 4], ttl: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, ttl).udp(4000, 5000).write(&mut v, &vec![0x33; len]).unwrap();
    v
}
