use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::*;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const HOST: [u8; 6] = [2, 0, 0, 0, 0, 9];
const POOL: Ipv4Addr = Ipv4Addr::new(10, 30, 0, 100);
const FAR_POOL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// Port 0 untagged, and VLAN 30 of interface 1.
fn stack() -> HostStack {
    HostStack::new(&[
        PortSpec { iface: 0, vlan: None, mac: MAC, addresses: vec!["10.30.0.1/24".parse().unwrap()] },
        PortSpec {
            iface: 1,
            vlan: Some(30),
            mac: MAC,
            addresses: vec!["10.30.0.1/24".parse().unwrap(), "fd30::1/64".parse().unwrap()],
        },
    ])
}

/// What the engine would say: the ports' own addresses, and a pool address on 10.30.0.0/24
/// and one far from it (echo only).
fn owns(_iface: usize, _vlan: Option<u16>, addr: IpAddr, ask: Ask) -> bool {
    let own = ["10.30.0.1", "fd30::1"].iter().any(|a| addr == a.parse::<IpAddr>().unwrap());
    own || addr == IpAddr::V4(POOL) || (ask == Ask::Echo && addr == IpAddr::V4(FAR_POOL))
}

fn arp_request(vid: Option<u16>, from: &str, target: &str) -> Vec<u8> {
    let f = solicit(vid.unwrap_or(0), HOST, &[from.parse().unwrap()], target.parse().unwrap()).unwrap();
    if vid.is_some() { f } else { [&f[..12], &f[16..]].concat() }
}

fn echo_v4(tag: Option<[u8; 4]>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let b =
        PacketBuilder::ethernet2(HOST, MAC).ipv4(src.octets(), dst.octets(), 61).icmpv4_echo_request(7, 3);
    let mut f = Vec::new();
    b.write(&mut f, b"ping payload").unwrap();
    tagged(f, tag)
}

fn echo_v6(tag: Option<[u8; 4]>, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let b =
        PacketBuilder::ethernet2(HOST, MAC).ipv6(src.octets(), dst.octets(), 61).icmpv6_echo_request(7, 3);
    let mut f = Vec::new();
    b.write(&mut f, b"ping payload").unwrap();
    tagged(f, tag)
}

fn tagged(f: Vec<u8>, tag: Option<[u8; 4]>) -> Vec<u8> {
    match tag {
        Some(t) => [&f[..12], &t[..], &f[12..]].concat(),
        None => f,
    }
}

/// The one answer, checked to be a well-formed frame to the host from us.
fn only(answers: Vec<Vec<u8>>) -> Vec<u8> {
    assert_eq!(answers.len(), 1, "{answers:02x?}");
    let a = answers.into_iter().next().unwrap();
    assert_eq!(&a[..12], &[HOST, MAC].concat()[..], "from our MAC to the asker's");
    a
}

#[test]
fn arp_requests_for_our_addresses_and_on_link_pools_are_answered_in_their_vlan() {
    let mut s = stack();
    for (iface, vid, target) in
        [(1, Some(30), "10.30.0.1"), (0, None, "10.30.0.100"), (1, Some(30), "10.30.0.100")]
    {
        let r = only(s.answer(iface, &arp_request(vid, "10.30.0.9/24", target), &owns));
        let arp = match vid {
            Some(v) => {
                assert_eq!(&r[12..16], &[0x81, 0, 0, v as u8], "tagged as the request was");
                &r[18..]
            }
            None => {
                assert_eq!(&r[12..14], &[8, 6]);
                &r[14..]
            }
        };
        assert_eq!(&arp[6..8], &[0, 2], "a reply");
        assert_eq!(&arp[8..14], &MAC, "with our MAC");
        assert_eq!(
            Ipv4Addr::from(<[u8; 4]>::try_from(&arp[14..18]).unwrap()),
            target.parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(&arp[18..24], &HOST, "to the asker");
        assert_eq!(&arp[24..28], &[10, 30, 0, 9]);
    }
    assert_eq!(s.counters().arp_replies, 3);
    // Not ours, a pool address off the link, an asker off the subnet, a VLAN not served:
    // nothing.
    for (iface, vid, from, target) in [
        (1, Some(30), "10.30.0.9/24", "10.30.0.2"),
        (0, None, "10.30.0.9/0", "198.51.100.7"),
        (1, Some(30), "10.99.0.9/8", "10.30.0.1"),
        (1, Some(31), "10.30.0.9/24", "10.30.0.1"),
        (1, None, "10.30.0.9/24", "10.30.0.1"),
    ] {
        assert_eq!(
            s.answer(iface, &arp_request(vid, from, target), &owns),
            Vec::<Vec<u8>>::new(),
            "{target} {vid:?}"
        );
    }
    assert_eq!(s.counters().ignored, 5);
}

#[test]
fn a_neighbor_solicitation_for_us_gets_a_valid_advertisement() {
    let mut s = stack();
    let host: Ipv6Addr = "fd30::9".parse().unwrap();
    let ask = solicit(30, HOST, &["fd30::9/64".parse().unwrap()], "fd30::1".parse().unwrap()).unwrap();
    let r = only(s.answer(1, &ask, &owns));
    assert_eq!(&r[12..16], &[0x81, 0, 0, 30]);
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("IPv6") };
    assert_eq!(
        (ip.header().source_addr(), ip.header().destination_addr()),
        ("fd30::1".parse().unwrap(), host)
    );
    assert_eq!(ip.header().hop_limit(), 255);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!("ICMPv6") };
    assert_eq!(icmp.type_u8(), 136, "a neighbor advertisement");
    let want = icmp
        .icmp_type()
        .calc_checksum(ip.header().source(), ip.header().destination(), icmp.payload())
        .unwrap();
    assert_eq!(icmp.checksum(), want, "the checksum verifies");
    // Its target link-layer option teaches the host our MAC: our own reader learns it back.
    assert_eq!(learned(&r, &["fd30::9/64".parse().unwrap()]), Some(("fd30::1".parse().unwrap(), MAC)));
    // For someone else: nothing.
    let other = solicit(30, HOST, &["fd30::9/64".parse().unwrap()], "fd30::2".parse().unwrap()).unwrap();
    assert!(s.answer(1, &other, &owns).is_empty());
    assert_eq!(s.counters().neighbor_adverts, 1);
}

#[test]
fn echo_requests_to_our_pool_and_vlan_addresses_are_answered_back_the_way_they_came() {
    let mut s = stack();
    // 802.1ad with priority bits: the answer carries the tag exactly as it came.
    let tag = [0x88, 0xa8, 0xa0, 30];
    let far = Ipv4Addr::new(203, 0, 113, 5);
    for (iface, tag, dst) in
        [(0, None, FAR_POOL), (0, None, POOL), (1, Some(tag), Ipv4Addr::new(10, 30, 0, 1))]
    {
        let r = only(s.answer(iface, &echo_v4(tag, far, dst), &owns));
        if let Some(t) = tag {
            assert_eq!(&r[12..16], &t);
        }
        let p = SlicedPacket::from_ethernet(&r).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else { panic!("IPv4") };
        assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (dst, far));
        let computed = ip.header().to_header().calc_header_checksum();
        assert_eq!(ip.header().header_checksum(), computed, "IPv4 header checksum");
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else { panic!("ICMP") };
        assert!(matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(e) if e.id == 7 && e.seq == 3));
        assert_eq!(icmp.payload(), b"ping payload");
        assert_eq!(icmp.checksum(), icmp.icmp_type().calc_checksum(icmp.payload()), "ICMP checksum");
    }
    let far6: Ipv6Addr = "2001:db8::5".parse().unwrap();
    let r = only(s.answer(1, &echo_v6(Some([0x81, 0, 0, 30]), far6, "fd30::1".parse().unwrap()), &owns));
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("IPv6") };
    assert_eq!(ip.header().destination_addr(), far6);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!("ICMPv6") };
    assert!(matches!(icmp.icmp_type(), Icmpv6Type::EchoReply(e) if e.id == 7 && e.seq == 3));
    let want = icmp
        .icmp_type()
        .calc_checksum(ip.header().source(), ip.header().destination(), icmp.payload())
        .unwrap();
    assert_eq!(icmp.checksum(), want);
    assert_eq!(s.counters().echo_replies, 4);
}

#[test]
fn echo_to_other_addresses_bad_checksums_and_junk_get_nothing() {
    let mut s = stack();
    let far = Ipv4Addr::new(203, 0, 113, 5);
    assert!(s.answer(0, &echo_v4(None, far, Ipv4Addr::new(10, 30, 0, 77)), &owns).is_empty());
    assert!(s.answer(0, &echo_v4(None, far, Ipv4Addr::BROADCAST), &owns).is_empty());
    let mut bad = echo_v4(None, far, POOL);
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // the ICMP checksum no longer verifies
    assert!(s.answer(0, &bad, &owns).is_empty());
    let requests = [
        echo_v4(None, far, POOL),
        echo_v6(Some([0x81, 0, 0, 30]), "2001:db8::5".parse().unwrap(), "fd30::1".parse().unwrap()),
        arp_request(Some(30), "10.30.0.9/24", "10.30.0.1"),
        solicit(30, HOST, &["fd30::9/64".parse().unwrap()], "fd30::1".parse().unwrap()).unwrap(),
    ];
    for r in &requests {
        let iface = if r[12] == 0x81 { 1 } else { 0 };
        for cut in 0..r.len() {
            assert!(s.answer(iface, &r[..cut], &owns).is_empty(), "cut at {cut}");
        }
    }
    assert_eq!(s.counters().echo_replies + s.counters().arp_replies + s.counters().neighbor_adverts, 0);
}
