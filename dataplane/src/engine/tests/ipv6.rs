//! IPv6: NPTv6 both ways (longest prefix, checksums kept), and link scope never forwarded.

use super::*;

#[test]
fn nptv6_translates_both_ways_keeping_checksums() {
    let c = nptv6_config();
    let mut e = engine(c);
    let gw6: IpAddr = "2001:db8:ff::2".parse().unwrap();
    e.set_neighbor(1, None, gw6, SERVER_MAC);
    let inside: [u8; 16] = "fd01:203:405:1::1234".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let outside: [u8; 16] = "2001:db8:1:d550::1234".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let remote: [u8; 16] = "2400:1::80".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let tcp = |eth: ([u8; 6], [u8; 6]), src, dst, hop| {
        let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv6(src, dst, hop).tcp(5555, 443, 1, 1000).syn();
        let mut v = Vec::new();
        b.write(&mut v, b"hi").unwrap();
        v
    };
    let out = run(&mut e, 0, &tcp((HOST_MAC, L_MAC), inside, remote, 64));
    assert_eq!(out.verdict, Verdict::Forward { iface: 1 });
    assert_eq!(out.frame(), tcp((U_MAC, SERVER_MAC), outside, remote, 63));
    e.set_neighbor(0, None, IpAddr::from(inside), HOST_MAC);
    let back = run(&mut e, 1, &tcp((SERVER_MAC, U_MAC), remote, outside, 64));
    assert_eq!(back.frame(), tcp((L_MAC, HOST_MAC), remote, inside, 63));
}

#[test]
fn ipv6_link_scope_goes_to_the_host_and_never_leaves_its_link() {
    let mut e = engine(nptv6_config());
    e.set_neighbor(1, None, "2001:db8:ff::2".parse().unwrap(), SERVER_MAC);
    let udp = |src: &str, dst: &str| {
        let b = PacketBuilder::ethernet2(HOST_MAC, L_MAC)
            .ipv6(
                src.parse::<std::net::Ipv6Addr>().unwrap().octets(),
                dst.parse::<std::net::Ipv6Addr>().unwrap().octets(),
                255,
            )
            .udp(546, 547);
        let mut v = Vec::new();
        b.write(&mut v, b"x").unwrap();
        v
    };
    // Neighbor solicitations (to a solicited-node group), multicast, link-local: the host's.
    for dst in ["ff02::1:ff00:1", "ff05::2", "fe80::1"] {
        assert_eq!(run(&mut e, 0, &udp("fd01:203:405:1::9", dst)).verdict, Verdict::ToHost, "{dst}");
    }
    // The rules would translate these; their sources never leave the link.
    for src in ["fe80::9", "::"] {
        let out = run(&mut e, 0, &udp(src, "2400:1::80"));
        assert_eq!(out.verdict, Verdict::Drop(Drop::NoRoute), "{src}");
    }
    assert_eq!(
        run(&mut e, 0, &udp("fd01:203:405:1::9", "2400:1::80")).verdict,
        Verdict::Forward { iface: 1 }
    );
}

#[test]
fn nptv6_takes_the_longest_matching_prefix() {
    let mut c = nptv6_config();
    // A /32 around the /48, listed before it, with its own outside prefix: it only takes the
    // hosts the /48 does not cover.
    c.nptv6.insert(
        0,
        Nptv6 {
            inside_vrf: 1,
            inside: "fd01:203::/32".parse().unwrap(),
            outside_vrf: 0,
            outside: "2001:db9::/32".parse().unwrap(),
        },
    );
    c.policies.push(rule("v6-out-wide", 1, Some("fd01:203::/32"), None, Action::Nptv6));
    c.validate().unwrap();
    let mut e = engine(c);
    e.set_neighbor(1, None, "2001:db8:ff::2".parse().unwrap(), SERVER_MAC);
    let out = |src: &str| {
        let b = PacketBuilder::ethernet2(HOST_MAC, L_MAC)
            .ipv6(
                src.parse::<std::net::Ipv6Addr>().unwrap().octets(),
                "2400:1::80".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                64,
            )
            .udp(1, 2);
        let mut v = Vec::new();
        b.write(&mut v, b"x").unwrap();
        v
    };
    let f = run(&mut e, 0, &out("fd01:203:405:1::9"));
    assert_eq!(&f.frame()[22..28], &[0x20, 0x01, 0x0d, 0xb8, 0, 1], "the /48's outside prefix");
    let f = run(&mut e, 0, &out("fd01:203:406:1::9"));
    assert_eq!(&f.frame()[22..28], &[0x20, 0x01, 0x0d, 0xb9, 4, 6], "the /32's");
}
