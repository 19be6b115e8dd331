//! ICMP errors the gateway sends: time exceeded, fragmentation needed / packet too big (the
//! tunnel's MTU too), their rate limit, and NPTv6's translated quotes.

use super::*;

#[test]
fn ttl_expiry_is_answered_with_time_exceeded_from_the_gateway() {
    let mut e = engine(demo());
    let f = udp((HOST_MAC, L_MAC), HOST, SERVER, 1, 10);
    let out = run(&mut e, 0, &f);
    assert_eq!(out.verdict, Verdict::Reply { iface: 0, dropped: Drop::TtlExpired });
    let m = packet::parse(out.frame()).unwrap();
    assert_eq!(m.l3, L3::V4 { src: "10.20.0.1".parse().unwrap(), dst: "10.20.0.10".parse().unwrap() });
    assert_eq!(m.l4, L4::Icmp { kind: 11, code: 0, ident: 0 });
    assert_eq!(&out.frame()[m.l4_off + 8..], &f[14..], "the whole short original is quoted");
    assert_eq!((e.counters.drop(Drop::TtlExpired), e.counters.stat(Stat::IcmpErrors)), (1, 1));
    // Precedence 6, internetwork control (RFC 1812 4.3.2.5), under a checksum still right.
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&out.frame()[14..]).unwrap();
    assert_eq!(ip.dcp().value() << 2 | ip.ecn().value(), 0xc0);
    assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
}

#[test]
fn icmp_errors_are_rate_limited() {
    let mut e = engine(demo());
    let f = udp((HOST_MAC, L_MAC), HOST, SERVER, 1, 10);
    let mut batch: Vec<Packet> = (0..ICMP_BURST + 10).map(|_| Packet::new(0, &f)).collect();
    e.process(&mut batch, 1);
    assert_eq!(e.counters.stat(Stat::IcmpErrors), ICMP_BURST);
    assert_eq!(e.counters.stat(Stat::IcmpSuppressed), 10);
    assert_eq!(e.counters.drop(Drop::TtlExpired), ICMP_BURST + 10);
}

#[test]
fn df_packet_over_the_egress_mtu_gets_fragmentation_needed() {
    let mut c = demo();
    c.ports[1].mtu = 1280;
    let mut e = engine(c);
    let big = udp((HOST_MAC, L_MAC), HOST, SERVER, 64, 1300); // etherparse sets DF
    let out = run(&mut e, 0, &big);
    assert_eq!(out.verdict, Verdict::Reply { iface: 0, dropped: Drop::TooBig });
    let m = packet::parse(out.frame()).unwrap();
    assert_eq!(m.l4, L4::Icmp { kind: 3, code: 4, ident: 0 });
    assert_eq!(&out.frame()[m.l4_off + 6..m.l4_off + 8], &1280u16.to_be_bytes());
    // Without DF the gateway, which does not fragment, drops without an error.
    let mut no_df = big.clone();
    no_df[20] &= !0x40;
    let sum = u16::from_be_bytes([no_df[24], no_df[25]]);
    no_df[24..26].copy_from_slice(
        &hutong_common::checksum::replace2(sum.to_be(), 0x4000u16.to_be(), 0).to_be().to_be_bytes(),
    );
    assert_eq!(run(&mut e, 0, &no_df).verdict, Verdict::Drop(Drop::TooBig));
}

#[test]
fn icmpv6_errors_through_nptv6_carry_the_translated_quote() {
    let c = nptv6_config();
    let mut e = engine(c);
    let inside: [u8; 16] = "fd01:203:405:1::1234".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let outside: [u8; 16] = "2001:db8:1:d550::1234".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let router: [u8; 16] = "2001:db8:ff::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let remote: [u8; 16] = "2400:1::80".parse::<std::net::Ipv6Addr>().unwrap().octets();
    e.set_neighbor(0, None, IpAddr::from(inside), HOST_MAC);
    let err = |eth: ([u8; 6], [u8; 6]), to: [u8; 16], quoted_src: [u8; 16], hop| {
        let mut q = Vec::new();
        PacketBuilder::ipv6(quoted_src, remote, 1).udp(5000, 53).write(&mut q, b"q").unwrap();
        let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv6(router, to, hop).icmpv6(
            etherparse::Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded),
        );
        let mut v = Vec::new();
        b.write(&mut v, &q).unwrap();
        v
    };
    let p = run(&mut e, 1, &err((SERVER_MAC, U_MAC), outside, outside, 64));
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(
        p.frame(),
        err((L_MAC, HOST_MAC), inside, inside, 63),
        "quote and every checksum as if built inside"
    );
}

#[test]
fn the_tunnel_mtu_is_enforced_on_the_inner_packet() {
    let mut e = engine(tunnelled());
    let big = udp((HOST_MAC, L_MAC), HOST, [10, 30, 1, 1], 64, 1460); // 1488 bytes of IP
    let p = run(&mut e, 0, &big);
    assert_eq!(p.verdict, Verdict::Reply { iface: 0, dropped: Drop::TooBig });
    let m = packet::parse(p.frame()).unwrap();
    assert_eq!(&p.frame()[m.l4_off + 6..m.l4_off + 8], &1472u16.to_be_bytes());
}

#[test]
fn ipv6_packets_over_the_egress_mtu_get_packet_too_big() {
    let mut c = demo();
    c.ports[0].addresses.push("fd01:203:405::1/48".parse().unwrap());
    c.ports[1].addresses.push("2001:db8:ff::1/64".parse().unwrap());
    c.ports[1].mtu = 1280;
    c.routes.push(RouteConfig {
        vrf: 1,
        prefix: "2400::/16".parse().unwrap(),
        port: "legacy0".into(),
        via: None,
    });
    c.policies.push(Rule {
        name: "v6".into(),
        vrf: 1,
        src: None,
        dst: Some("2400::/16".parse().unwrap()),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Permit,
    });
    c.ports[0].mtu = 1280;
    let mut e = engine(c);
    let src: [u8; 16] = "fd01:203:405:1::9".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dst: [u8; 16] = "2400:1::80".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let b = PacketBuilder::ethernet2(HOST_MAC, L_MAC).ipv6(src, dst, 64).udp(1, 2);
    let mut f = Vec::new();
    b.write(&mut f, &[0; 1300]).unwrap();
    let p = run(&mut e, 0, &f);
    assert_eq!(p.verdict, Verdict::Reply { iface: 0, dropped: Drop::TooBig });
    let m = packet::parse(p.frame()).unwrap();
    assert_eq!(m.l4, L4::Icmp { kind: 2, code: 0, ident: 0 });
    assert_eq!(m.l3, L3::V6 { src: "fd01:203:405::1".parse().unwrap(), dst: std::net::Ipv6Addr::from(src) });
}
