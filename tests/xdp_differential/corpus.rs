//! The frames both engines are given: a corpus over the demo config's ports (every protocol,
//! address class, TTL, fragment and malformation the parsers tell apart), and its IPv6 and VLAN
//! variants.

use super::*;

pub(crate) const SERVER: [u8; 4] = [198, 19, 0, 2];
/// A server on the extranet's VLAN 7 (see `with_vlans`).
pub(crate) const SERVER7: [u8; 4] = [198, 19, 7, 2];
pub(crate) const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x19, 2];
/// IPv6 (see `with_ipv6`): legacy hosts in fd20::/64 (VRF 1), translated by NPTv6 to
/// 2001:db8:20::/48; the server, also the extranet's next hop, at 2001:db8:19::2.
pub(crate) const SERVER6: &str = "2001:db8:19::2";
pub(crate) const GATEWAY6: [&str; 2] = ["fd20::1", "2001:db8:19::1"];

pub(crate) fn v6(a: &str) -> [u8; 16] {
    a.parse::<Ipv6Addr>().unwrap().octets()
}

pub(crate) fn host6(h: u8) -> [u8; 16] {
    let mut a = v6("fd20::");
    a[15] = h;
    a
}

/// Where the extranet reaches legacy host `h` (its NPTv6 address).
pub(crate) fn outside6(h: u8) -> [u8; 16] {
    dataplane::engine::translate::nptv6(
        host6(h).into(),
        "fd20::/48".parse().unwrap(),
        "2001:db8:20::/48".parse().unwrap(),
    )
    .unwrap()
    .octets()
}

pub(crate) fn host_mac(h: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0x20, h]
}

/// One corpus entry: the frame and the interface it arrives on (0 legacy, 1 uplink).
pub(crate) struct Case {
    pub(crate) what: String,
    pub(crate) iface: usize,
    pub(crate) frame: Vec<u8>,
}

pub(crate) fn build(
    eth: ([u8; 6], [u8; 6]),
    b: impl FnOnce(etherparse::PacketBuilderStep<etherparse::Ethernet2Header>) -> Vec<u8>,
) -> Vec<u8> {
    b(PacketBuilder::ethernet2(eth.0, eth.1))
}

/// The corpus: seeded, so a failure names a case that can be rebuilt.
pub(crate) fn corpus(l_mac: [u8; 6], u_mac: [u8; 6]) -> Vec<Case> {
    let mut rng = SmallRng::seed_from_u64(20_261_127);
    let mut out = Vec::new();
    let mut add = |what: String, iface: usize, frame: Vec<u8>| out.push(Case { what, iface, frame });
    for i in 0..400 {
        let host = rng.random_range(1..=120u8);
        let payload: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
        let ttl =
            if rng.random_range(0..10) == 0 { rng.random_range(0..=2) } else { rng.random_range(2..=255) };
        let (sport, dport) = (rng.random::<u16>(), rng.random::<u16>());
        let inbound = rng.random_bool(0.4);
        let (eth, src, dst, iface) = if inbound {
            let dst = match rng.random_range(0..10) {
                0 => [198, 18, 21, host], // outside the published block
                1 => [198, 19, 0, 1],     // the gateway itself
                _ => [198, 18, 20, host],
            };
            ((SERVER_MAC, u_mac), SERVER, dst, 1)
        } else {
            let src = match rng.random_range(0..10) {
                0 => [10, 20, 1, host], // unmapped
                _ => [10, 20, 0, host],
            };
            let dst = if rng.random_range(0..12) == 0 { [10, 20, 0, 1] } else { SERVER };
            ((host_mac(host), l_mac), src, dst, 0)
        };
        let kind = rng.random_range(0..4);
        let mut f = build(eth, |b| {
            let b = b.ipv4(src, dst, ttl);
            let mut v = Vec::new();
            match kind {
                0 => b.udp(sport, dport).write(&mut v, &payload).unwrap(),
                1 => b
                    .tcp(sport, dport, rng.random(), 1000)
                    .syn()
                    .ack(rng.random())
                    .write(&mut v, &payload)
                    .unwrap(),
                2 => b.icmpv4_echo_request(sport, dport).write(&mut v, &payload).unwrap(),
                _ => b.icmpv4_echo_reply(sport, dport).write(&mut v, &payload).unwrap(),
            }
            v
        });
        if kind == 0 && rng.random_bool(0.1) {
            f[40] = 0; // UDP without checksum
            f[41] = 0;
        }
        if rng.random_bool(0.2) {
            f[20] &= !0x40; // DF off
            let c = u16::from_be_bytes([f[24], f[25]]);
            let c = hutong_common::checksum::replace2(c.to_be(), 0x4000u16.to_be(), 0).to_be();
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
        add(format!("random #{i} kind {kind} {src:?}->{dst:?} ttl {ttl}"), iface, f);
    }
    // Fragments: first and later, both directions, some with IP options.
    for (i, (src, dst, iface, eth)) in [
        ([10, 20, 0, 5], SERVER, 0, (host_mac(5), l_mac)),
        (SERVER, [198, 18, 20, 5], 1, (SERVER_MAC, u_mac)),
        ([10, 20, 1, 5], SERVER, 0, (host_mac(5), l_mac)),
    ]
    .into_iter()
    .enumerate()
    {
        for (first, off) in [(true, 0u16), (false, 185), (false, 1)] {
            let payload = vec![0x11u8; 48];
            let mut h = etherparse::Ipv4Header::new(48, 64, etherparse::IpNumber::UDP, src, dst).unwrap();
            h.identification = 0x4000 + i as u16;
            h.more_fragments = first;
            h.fragment_offset = etherparse::IpFragOffset::try_new(off).unwrap();
            if i == 2 {
                h.options = [1u8, 1, 1, 0].into();
            }
            let mut f = Vec::new();
            etherparse::Ethernet2Header {
                source: eth.0,
                destination: eth.1,
                ether_type: etherparse::EtherType::IPV4,
            }
            .write(&mut f)
            .unwrap();
            h.write(&mut f).unwrap();
            f.extend_from_slice(&payload);
            add(format!("fragment {src:?}->{dst:?} first {first} offset {off}"), iface, f);
        }
    }
    // ICMP errors from the extranet about translated traffic: the slow path's (RFC 5508).
    for host in [5u8, 6, 200] {
        let mut q = Vec::new();
        PacketBuilder::ipv4([198, 18, 20, host], [203, 0, 113, 1], 1)
            .udp(5000, 53)
            .write(&mut q, b"q")
            .unwrap();
        let f = build((SERVER_MAC, u_mac), |b| {
            let mut v = Vec::new();
            b.ipv4(SERVER, [198, 18, 20, host], 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port))
                .write(&mut v, &q)
                .unwrap();
            v
        });
        add(format!("ICMP error to 198.18.20.{host}"), 1, f);
    }
    // Oversized, with and without DF (the slow path decides).
    for (df, len) in [(true, 1600), (false, 1600), (true, 1472), (true, 1473)] {
        let mut f = build((host_mac(5), l_mac), |b| {
            let mut v = Vec::new();
            b.ipv4([10, 20, 0, 5], SERVER, 64).udp(1, 2).write(&mut v, &vec![0; len]).unwrap();
            v
        });
        if !df {
            f[20] &= !0x40;
        }
        add(format!("{} bytes of UDP, DF {df}", len), 0, f);
    }
    // ARP: for the gateway (learned), for someone else, truncated, tagged.
    for (target, sender, cut) in
        [([10, 20, 0, 1], 77u8, 42usize), ([10, 20, 0, 9], 78, 42), ([10, 20, 0, 1], 79, 30)]
    {
        let mac = host_mac(sender);
        let mut a = vec![0xff; 6];
        a.extend_from_slice(&mac);
        a.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        a.extend_from_slice(&mac);
        a.extend_from_slice(&[10, 20, 0, sender, 0, 0, 0, 0, 0, 0]);
        a.extend_from_slice(&target);
        a.truncate(cut);
        add(format!("ARP from 10.20.0.{sender} for {target:?}, {cut} bytes"), 0, a);
        // ...and a packet towards the host that just spoke ARP.
        let back = build((SERVER_MAC, u_mac), |b| {
            let mut v = Vec::new();
            b.ipv4(SERVER, [198, 18, 20, sender], 64).udp(53, 9).write(&mut v, b"back").unwrap();
            v
        });
        add(format!("reply towards 10.20.0.{sender}"), 1, back);
    }
    // VLAN tags (no VLAN ports here), stacked tags, IPv6, other EtherTypes.
    let plain = build((host_mac(5), l_mac), |b| {
        let mut v = Vec::new();
        b.ipv4([10, 20, 0, 5], SERVER, 64).udp(1, 2).write(&mut v, b"tagged").unwrap();
        v
    });
    let tag = |f: &[u8], vid: u16| [&f[..12], &[0x81, 0x00], &vid.to_be_bytes()[..], &f[12..]].concat();
    add("802.1Q tagged".into(), 0, tag(&plain, 100));
    add("QinQ".into(), 0, tag(&tag(&plain, 100), 200));
    let mut bad_tagged = tag(&plain, 100);
    bad_tagged[18] = 0x44;
    add("tagged, IHL 4".into(), 0, bad_tagged);
    let v6 = build((host_mac(5), l_mac), |b| {
        let mut v = Vec::new();
        b.ipv6([0xfd; 16], [0x20; 16], 64).udp(1, 2).write(&mut v, b"v6").unwrap();
        v
    });
    add("IPv6".into(), 0, v6.clone());
    add("IPv6 truncated".into(), 0, v6[..40].to_vec());
    let mut lldp = plain.clone();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    add("LLDP".into(), 0, lldp);
    ipv6_cases(&mut rng, l_mac, u_mac, &mut add);
    vlan_cases(&mut rng, l_mac, u_mac, &mut add);
    // Malformed and truncated: every cut of a TCP frame, and header fields broken one by one.
    let tcp = build((host_mac(5), l_mac), |b| {
        let mut v = Vec::new();
        b.ipv4([10, 20, 0, 5], SERVER, 64).tcp(1000, 80, 1, 100).syn().write(&mut v, b"abc").unwrap();
        v
    });
    for cut in 14..tcp.len() {
        add(format!("TCP cut at {cut}"), 0, tcp[..cut].to_vec());
    }
    for (at, value, what) in [
        (14, 0x55, "version 5"),
        (14, 0x44, "IHL 4"),
        (16, 0xff, "total length too long"),
        (17, 0x05, "total length below header"),
        (46, 0x40, "TCP data offset 4"),
        (46, 0xf0, "TCP data offset past the end"),
    ] {
        let mut f = tcp.clone();
        f[at] = value;
        add(what.into(), 0, f);
    }
    // Garbage of every length from 14 on.
    for len in 14..120 {
        let f: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        add(format!("garbage {len} bytes"), rng.random_range(0..2), f);
    }
    out
}

/// IPv6 frames: random traffic both ways through NPTv6, and the cases around it (the gateway's
/// own, link-scope and multicast destinations, link-local sources, hop limit, extension
/// headers, ICMPv6 errors, an untranslatable subnet, oversized, truncated and malformed).
pub(crate) fn ipv6_cases(
    rng: &mut SmallRng,
    l_mac: [u8; 6],
    u_mac: [u8; 6],
    add: &mut impl FnMut(String, usize, Vec<u8>),
) {
    let server = v6(SERVER6);
    let six = |eth: ([u8; 6], [u8; 6]),
               src: [u8; 16],
               dst: [u8; 16],
               hops: u8,
               kind: u8,
               ports: (u16, u16),
               payload: &[u8]| {
        build(eth, |b| {
            let b = b.ipv6(src, dst, hops);
            let mut v = Vec::new();
            match kind {
                0 => b.udp(ports.0, ports.1).write(&mut v, payload).unwrap(),
                1 => b.tcp(ports.0, ports.1, 7, 1000).ack(1).write(&mut v, payload).unwrap(),
                2 => b.icmpv6_echo_request(ports.0, ports.1).write(&mut v, payload).unwrap(),
                3 => b.icmpv6_echo_reply(ports.0, ports.1).write(&mut v, payload).unwrap(),
                _ => b
                    .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] })
                    .write(&mut v, payload)
                    .unwrap(),
            }
            v
        })
    };
    for i in 0..300 {
        let host = rng.random_range(1..=120u8);
        let payload: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
        let hops =
            if rng.random_range(0..10) == 0 { rng.random_range(0..=2) } else { rng.random_range(2..=255) };
        let ports = (rng.random::<u16>(), rng.random::<u16>());
        let kind = rng.random_range(0..5);
        let (eth, src, dst, iface) = if rng.random_bool(0.4) {
            let dst = match rng.random_range(0..12) {
                0 => v6("2001:db8:21::5"), // outside the translated prefix
                1 => v6(GATEWAY6[1]),
                2 => v6("ff02::1:ff00:1"),
                _ => outside6(host),
            };
            let src = match rng.random_range(0..15) {
                0 => v6("fe80::19:2"),
                1 => [0; 16],
                _ => server,
            };
            ((SERVER_MAC, u_mac), src, dst, 1)
        } else {
            let src = match rng.random_range(0..12) {
                0 => v6("fd21::5"), // outside the translated prefix
                1 => v6("fe80::5"),
                _ => host6(host),
            };
            let dst = match rng.random_range(0..12) {
                0 => v6(GATEWAY6[0]),
                1 => v6("fe80::1"),
                2 => v6("2001:db8:77::1"),
                _ => server,
            };
            ((host_mac(host), l_mac), src, dst, 0)
        };
        let mut f = six(eth, src, dst, hops, kind, ports, &payload);
        if kind == 0 && rng.random_bool(0.1) {
            f[60] = 0; // UDP checksum 0: invalid over IPv6, but forwarded as any other
            f[61] = 0;
        }
        add(
            format!(
                "IPv6 random #{i} kind {kind} {:?}->{:?} hops {hops}",
                Ipv6Addr::from(src),
                Ipv6Addr::from(dst)
            ),
            iface,
            f,
        );
    }
    let out = |h| ((host_mac(h), l_mac), host6(h), server);
    let (eth, src, dst) = out(5);
    // Subnet ffff: its translated word would be 0xffff, which RFC 6296 cannot map back.
    let mut odd = host6(5);
    odd[6..8].copy_from_slice(&[0xff, 0xff]);
    add("IPv6 subnet ffff".into(), 0, six(eth, odd, dst, 64, 0, (1, 2), b"x"));
    add("IPv6 oversized".into(), 0, six(eth, src, dst, 64, 0, (1, 2), &[7; 1480]));
    let udp = six(eth, src, dst, 64, 0, (4000, 53), b"query");
    let mut hop_by_hop = udp.clone();
    hop_by_hop[20] = 0;
    hop_by_hop[18..20].copy_from_slice(&(u16::from_be_bytes([udp[18], udp[19]]) + 8).to_be_bytes());
    hop_by_hop.splice(54..54, [17, 0, 1, 4, 0, 0, 0, 0]);
    add("IPv6 hop-by-hop".into(), 0, hop_by_hop);
    let mut fragment = udp.clone();
    fragment[20] = 44;
    fragment[18..20].copy_from_slice(&(u16::from_be_bytes([udp[18], udp[19]]) + 8).to_be_bytes());
    fragment.splice(54..54, [17, 0, 0, 1, 0, 0, 0, 9]);
    add("IPv6 first fragment".into(), 0, fragment);
    // An ICMPv6 error from the extranet about a translated packet: the slow path's.
    let mut quoted = Vec::new();
    PacketBuilder::ipv6(outside6(5), v6("2001:db8:77::1"), 1).udp(4000, 53).write(&mut quoted, b"q").unwrap();
    let err = build((SERVER_MAC, u_mac), |b| {
        let mut v = Vec::new();
        b.ipv6(server, outside6(5), 64)
            .icmpv6(Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port))
            .write(&mut v, &quoted)
            .unwrap();
        v
    });
    add("ICMPv6 port unreachable".into(), 1, err);
    let tcp = six(eth, src, dst, 64, 1, (1000, 80), b"abc");
    for cut in [14, 20, 53, 54, 60, 73] {
        add(format!("IPv6 TCP cut at {cut}"), 0, tcp[..cut].to_vec());
    }
    for (at, value, what) in [
        (14, 0x70, "IPv6 version 7"),
        (18, 0xff, "IPv6 payload length too long"),
        (66, 0x40, "IPv6 TCP data offset 4"),
    ] {
        let mut f = tcp.clone();
        f[at] = value;
        add(what.into(), 0, f);
    }
}

/// Frames in VLANs (see `with_vlans`): VLAN 100 on the legacy interface, VLAN 7 on the uplink,
/// both ways, into and out of untagged ports and from one VLAN to the other; with priority
/// bits, the 802.1ad TPID, an unknown VLAN, the gateway's own address and ARP in a VLAN.
pub(crate) fn vlan_cases(
    rng: &mut SmallRng,
    l_mac: [u8; 6],
    u_mac: [u8; 6],
    add: &mut impl FnMut(String, usize, Vec<u8>),
) {
    let tag = |f: &[u8], tpid: u16, tci: u16| {
        [&f[..12], &tpid.to_be_bytes()[..], &tci.to_be_bytes()[..], &f[12..]].concat()
    };
    for i in 0..200 {
        let host = rng.random_range(1..=120u8);
        let ttl =
            if rng.random_range(0..10) == 0 { rng.random_range(0..=2) } else { rng.random_range(2..=255) };
        let (sport, dport) = (rng.random::<u16>(), rng.random::<u16>());
        let payload: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
        // (frame's MACs, src, dst, interface, VLAN id or none)
        let (eth, src, dst, iface, vid) = match rng.random_range(0..10) {
            0..=4 => {
                let dst = match rng.random_range(0..6) {
                    0 => [10, 20, 0, 1],
                    1 | 2 => SERVER7,
                    _ => SERVER,
                };
                let vid = if rng.random_range(0..15) == 0 { 101 } else { 100 };
                ((host_mac(host), l_mac), [10, 20, 0, host], dst, 0, Some(vid))
            }
            5..=7 => ((SERVER_MAC, u_mac), SERVER, [198, 18, 22, host], 1, None),
            _ => ((SERVER_MAC, u_mac), SERVER7, [198, 18, 22, host], 1, Some(7)),
        };
        let kind = rng.random_range(0..3);
        let f = build(eth, |b| {
            let b = b.ipv4(src, dst, ttl);
            let mut v = Vec::new();
            match kind {
                0 => b.udp(sport, dport).write(&mut v, &payload).unwrap(),
                1 => b.tcp(sport, dport, 1, 1000).ack(1).write(&mut v, &payload).unwrap(),
                _ => b.icmpv4_echo_request(sport, dport).write(&mut v, &payload).unwrap(),
            }
            v
        });
        let f = match vid {
            None => f,
            Some(v) => {
                let tpid = if rng.random_range(0..8) == 0 { 0x88a8 } else { 0x8100 };
                tag(&f, tpid, v | (rng.random_range(0..8u16) << 13))
            }
        };
        add(format!("VLAN #{i} {vid:?} kind {kind} {src:?}->{dst:?} ttl {ttl}"), iface, f);
    }
    // ARP in VLAN 100 for the gateway's address there: the host stack's, tag and all.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&host_mac(9));
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&host_mac(9));
    arp.extend_from_slice(&[10, 20, 0, 9, 0, 0, 0, 0, 0, 0, 10, 20, 0, 1]);
    add("ARP in VLAN 100".into(), 0, tag(&arp, 0x8100, 100));
}
