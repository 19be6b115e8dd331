//! One pass over a frame's headers into [`Meta`].

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

/// Network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    Arp,
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

/// Fragment position of the datagram (IPv4 flags/offset or the IPv6 fragment header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    /// Not a fragment.
    Whole,
    /// Offset 0 with more fragments: carries the L4 header.
    First { id: u32 },
    /// Offset > 0: no L4 header; follows its first fragment's translation.
    Later { id: u32 },
}

/// Transport layer, as far as the gateway reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP or UDP ports (and TCP flags; 0 for UDP).
    Ports { src: u16, dst: u16, tcp_flags: u8 },
    /// ICMP/ICMPv6: type, code, and the echo identifier (0 unless an echo message).
    Icmp { kind: u8, code: u8, ident: u16 },
    /// A later fragment, or a protocol whose header the gateway does not read.
    Opaque,
}

/// Where everything is in a frame, and the fields classification needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// VLAN id of the one 802.1Q tag, if tagged.
    pub vlan: Option<u16>,
    /// Offset of the network header (14, or 18 with a tag).
    pub l3_off: usize,
    /// Offset of the transport header (after IPv4 options or IPv6 extension headers).
    pub l4_off: usize,
    /// Offset one past the datagram: frames may carry Ethernet padding after it.
    pub end: usize,
    pub l3: L3,
    /// Final protocol (IPv6: after extension headers).
    pub proto: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    pub frag: Frag,
    pub l4: L4,
}

impl Meta {
    /// Bytes of the IP datagram (header included).
    pub fn ip_len(&self) -> usize {
        self.end - self.l3_off
    }
}

impl std::fmt::Display for Meta {
    /// One line for traces: `IPv4 10.20.0.10 → 198.19.0.2 UDP 40000 → 53, TTL 64`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.l3 {
            L3::Arp => write!(f, "ARP")?,
            L3::V4 { src, dst } => write!(f, "IPv4 {src} → {dst}")?,
            L3::V6 { src, dst } => write!(f, "IPv6 {src} → {dst}")?,
        }
        let proto = match self.proto {
            IPPROTO_TCP => "TCP".to_string(),
            IPPROTO_UDP => "UDP".to_string(),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => "ICMP".to_string(),
            p => format!("protocol {p}"),
        };
        match self.l4 {
            L4::Ports { src, dst, .. } => write!(f, " {proto} {src} → {dst}")?,
            L4::Icmp { kind, code, ident } => write!(f, " {proto} type {kind} code {code} id {ident}")?,
            L4::Opaque if self.l3 != L3::Arp => write!(f, " {proto}")?,
            L4::Opaque => {}
        }
        if self.l3 != L3::Arp {
            write!(f, ", TTL {}", self.ttl)?;
        }
        match self.frag {
            Frag::Whole => {}
            Frag::First { id } => write!(f, ", first fragment of {id}")?,
            Frag::Later { id } => write!(f, ", later fragment of {id}")?,
        }
        if let Some(v) = self.vlan {
            write!(f, ", VLAN {v}")?;
        }
        Ok(())
    }
}

/// Parses `frame`. Every offset in the returned [`Meta`] lies inside `frame`, and the transport
/// fields the gateway rewrites (ports, checksums, ICMP ident) are inside the datagram.
pub fn parse(frame: &[u8]) -> Result<Meta, Drop> {
    let mut ethertype = be16(frame, 12)?;
    let mut l3_off = ETH_HLEN;
    let mut vlan = None;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        vlan = Some(be16(frame, 14)? & 0x0fff);
        ethertype = be16(frame, 16)?;
        l3_off += VLAN_HLEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            // Stacked tags (QinQ) are not part of the plan's interface model.
            return Err(Drop::UnsupportedProtocol);
        }
    }
    match ethertype {
        ETH_P_IPV4 => parse_v4(frame, l3_off, vlan),
        ETH_P_IPV6 => parse_v6(frame, l3_off, vlan),
        ETH_P_ARP => Ok(Meta {
            vlan,
            l3_off,
            l4_off: l3_off,
            end: frame.len(),
            l3: L3::Arp,
            proto: 0,
            ttl: 0,
            frag: Frag::Whole,
            l4: L4::Opaque,
        }),
        _ => Err(Drop::UnsupportedProtocol),
    }
}

fn parse_v4(frame: &[u8], l3: usize, vlan: Option<u16>) -> Result<Meta, Drop> {
    let h = frame.get(l3..l3 + 20).ok_or(Drop::Malformed)?;
    if h[0] >> 4 != 4 {
        return Err(Drop::Malformed);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if ihl < 20 || total < ihl || l3 + total > frame.len() {
        return Err(Drop::Malformed);
    }
    let id = u16::from_be_bytes([h[4], h[5]]) as u32;
    let flags_off = u16::from_be_bytes([h[6], h[7]]);
    let more = flags_off & hutong_common::wire::IP_MORE_FRAGMENTS != 0;
    let offset = flags_off & hutong_common::wire::IP_FRAG_OFFSET_MASK;
    let frag = match (offset, more) {
        (0, false) => Frag::Whole,
        (0, true) => Frag::First { id },
        _ => Frag::Later { id },
    };
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    let (ttl, proto) = (h[8], h[9]);
    let end = l3 + total;
    let l4_off = l3 + ihl;
    let l4 = parse_l4(frame, l4_off, end, proto, frag, IPPROTO_ICMP)?;
    Ok(Meta { vlan, l3_off: l3, l4_off, end, l3: L3::V4 { src, dst }, proto, ttl, frag, l4 })
}

fn parse_v6(frame: &[u8], l3: usize, vlan: Option<u16>) -> Result<Meta, Drop> {
    let h = frame.get(l3..l3 + 40).ok_or(Drop::Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(Drop::Malformed);
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    let end = l3 + 40 + payload;
    if end > frame.len() {
        return Err(Drop::Malformed);
    }
    let mut next = h[6];
    let ttl = h[7];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).expect("16 bytes"));
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&h[24..40]).expect("16 bytes"));
    let mut off = l3 + 40;
    let mut frag = Frag::Whole;
    let mut walked = 0;
    // Hop-by-hop (0), routing (43), fragment (44), destination options (60).
    while matches!(next, 0 | 43 | 44 | 60) {
        walked += 1;
        if walked > MAX_IPV6_EXT_HEADERS {
            return Err(Drop::Malformed);
        }
        let e = frame.get(off..off + 8).filter(|_| off + 8 <= end).ok_or(Drop::Malformed)?;
        let len = if next == 44 {
            let offset = u16::from_be_bytes([e[2], e[3]]) >> 3;
            let more = e[3] & 1 != 0;
            let id = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            frag = match (offset, more) {
                (0, false) => Frag::Whole, // an atomic fragment (RFC 6946) is a whole datagram
                (0, true) => Frag::First { id },
                _ => Frag::Later { id },
            };
            8
        } else {
            (e[1] as usize + 1) * 8
        };
        next = e[0];
        off += len;
        if off > end {
            return Err(Drop::Malformed);
        }
    }
    let l4 = parse_l4(frame, off, end, next, frag, IPPROTO_ICMPV6)?;
    Ok(Meta { vlan, l3_off: l3, l4_off: off, end, l3: L3::V6 { src, dst }, proto: next, ttl, frag, l4 })
}

/// Reads the transport header of a whole datagram or first fragment. A first fragment too short
/// to hold the header is malformed (RFC 1858's tiny-fragment attack).
fn parse_l4(frame: &[u8], off: usize, end: usize, proto: u8, frag: Frag, icmp: u8) -> Result<L4, Drop> {
    if matches!(frag, Frag::Later { .. }) {
        return Ok(L4::Opaque);
    }
    let need = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        p if p == icmp => 8,
        _ => return Ok(L4::Opaque),
    };
    if off + need > end {
        return Err(Drop::Malformed);
    }
    let b = &frame[off..off + need];
    Ok(match proto {
        IPPROTO_TCP => {
            let data_off = (b[12] >> 4) as usize * 4;
            if data_off < 20 || off + data_off > end {
                return Err(Drop::Malformed);
            }
            L4::Ports {
                src: u16::from_be_bytes([b[0], b[1]]),
                dst: u16::from_be_bytes([b[2], b[3]]),
                tcp_flags: b[13],
            }
        }
        IPPROTO_UDP => L4::Ports {
            src: u16::from_be_bytes([b[0], b[1]]),
            dst: u16::from_be_bytes([b[2], b[3]]),
            tcp_flags: 0,
        },
        _ => {
            let (kind, code) = (b[0], b[1]);
            // Echo request/reply carry an identifier: ICMP 8/0, ICMPv6 128/129.
            let echo = if icmp == IPPROTO_ICMP { kind == 8 || kind == 0 } else { kind == 128 || kind == 129 };
            L4::Icmp { kind, code, ident: if echo { u16::from_be_bytes([b[4], b[5]]) } else { 0 } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (no options) + UDP 1234 -> 53, 4 bytes of payload. Checksums are not
    /// examined by the parser.
    const UDP4: [u8; 46] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, // IPv4 ...
        10, 20, 0, 10, 198, 19, 0, 2, // src, dst
        0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, // UDP
        b'd', b'a', b't', b'a',
    ];

    #[test]
    fn ipv4_udp() {
        let m = parse(&UDP4).unwrap();
        assert_eq!(m.vlan, None);
        assert_eq!((m.l3_off, m.l4_off, m.end), (14, 34, 46));
        assert_eq!(m.l3, L3::V4 { src: Ipv4Addr::new(10, 20, 0, 10), dst: Ipv4Addr::new(198, 19, 0, 2) });
        assert_eq!((m.proto, m.ttl, m.frag), (IPPROTO_UDP, 64, Frag::Whole));
        assert_eq!(m.l4, L4::Ports { src: 1234, dst: 53, tcp_flags: 0 });
    }

    fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
        let mut v = frame[..12].to_vec();
        v.extend_from_slice(&[0x81, 0x00]);
        v.extend_from_slice(&vid.to_be_bytes());
        v.extend_from_slice(&frame[12..]);
        v
    }

    #[test]
    fn one_vlan_tag_is_read_and_two_are_refused() {
        let f = tagged(&UDP4, 0x0123 | 0x6000); // PCP bits are not part of the id
        let m = parse(&f).unwrap();
        assert_eq!((m.vlan, m.l3_off, m.l4_off), (Some(0x123), 18, 38));
        assert_eq!(parse(&tagged(&f, 7)), Err(Drop::UnsupportedProtocol));
    }

    #[test]
    fn padding_after_the_datagram_is_tolerated() {
        let mut f = UDP4.to_vec();
        f.extend_from_slice(&[0; 14]);
        assert_eq!(parse(&f).unwrap().end, 46);
    }

    #[test]
    fn inconsistent_ipv4_is_malformed() {
        let cases: [(&str, usize, u8); 4] = [
            ("version 5", 14, 0x55),
            ("IHL 4", 14, 0x44),
            ("total length beyond the frame", 17, 0x21),
            ("total length below the header", 17, 0x10),
        ];
        for (what, at, value) in cases {
            let mut f = UDP4;
            f[at] = value;
            assert_eq!(parse(&f), Err(Drop::Malformed), "{what}");
        }
        for cut in 0..UDP4.len() {
            assert!(parse(&UDP4[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn ipv4_options_move_the_transport_header() {
        let mut f = UDP4[..34].to_vec();
        f[14] = 0x46;
        f[17] = 0x24;
        f.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        f.extend_from_slice(&UDP4[34..]);
        let m = parse(&f).unwrap();
        assert_eq!(m.l4_off, 38);
        assert_eq!(m.l4, L4::Ports { src: 1234, dst: 53, tcp_flags: 0 });
    }

    #[test]
    fn ipv4_fragments() {
        let mut first = UDP4;
        first[20] = 0x20; // MF, offset 0
        assert_eq!(parse(&first).unwrap().frag, Frag::First { id: 0x1234 });
        let mut later = UDP4;
        later[20] = 0x00;
        later[21] = 0x10; // offset 16 * 8
        let m = parse(&later).unwrap();
        assert_eq!((m.frag, m.l4), (Frag::Later { id: 0x1234 }, L4::Opaque));
        // A first fragment too short for its UDP header: RFC 1858's tiny fragment.
        let mut tiny = UDP4[..38].to_vec();
        tiny[17] = 24;
        tiny[20] = 0x20;
        assert_eq!(parse(&tiny), Err(Drop::Malformed));
    }

    /// Ethernet + IPv6 + hop-by-hop (8 bytes) + fragment header + ICMPv6 echo request id 0x4242.
    fn v6_frame(frag_off_m: [u8; 2]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 24, 0, 64]); // payload 24, next HBH, hop limit 64
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // HBH: next = fragment, PadN
        f.extend_from_slice(&[58, 0, frag_off_m[0], frag_off_m[1], 0, 0, 0, 9]); // fragment id 9
        f.extend_from_slice(&[128, 0, 0, 0, 0x42, 0x42, 0, 1]); // echo request
        f
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let m = parse(&v6_frame([0, 0])).unwrap();
        assert_eq!((m.l3_off, m.l4_off, m.end), (14, 14 + 40 + 16, 14 + 40 + 24));
        assert_eq!((m.proto, m.ttl, m.frag), (IPPROTO_ICMPV6, 64, Frag::Whole));
        assert_eq!(m.l4, L4::Icmp { kind: 128, code: 0, ident: 0x4242 });
        assert_eq!(parse(&v6_frame([0, 1])).unwrap().frag, Frag::First { id: 9 });
        let later = parse(&v6_frame([0, 0x10])).unwrap();
        assert_eq!((later.frag, later.l4), (Frag::Later { id: 9 }, L4::Opaque));
    }

    #[test]
    fn long_ipv6_extension_chains_are_refused() {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd];
        let n = MAX_IPV6_EXT_HEADERS + 1;
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, (n * 8 + 8) as u8, 60, 64]);
        f.extend_from_slice(&[0; 32]);
        for i in 0..n {
            f.extend_from_slice(&[if i + 1 == n { 17 } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
        }
        f.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        assert_eq!(parse(&f), Err(Drop::Malformed));
    }

    #[test]
    fn arp_and_unknown_ethertypes() {
        let mut f = UDP4;
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&f).unwrap().l3, L3::Arp);
        f[12..14].copy_from_slice(&[0x88, 0xcc]); // LLDP
        assert_eq!(parse(&f), Err(Drop::UnsupportedProtocol));
    }
}
