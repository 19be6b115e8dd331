//! The packet quoted inside an ICMPv4 error (RFC 792: its IP header and at least 8 bytes after),
//! and rewrites of it that keep the quoted checksums right (RFC 5508 REQ-3 and REQ-4: a NAT
//! translates the embedded packet too, as the reverse of the outer one).

use std::net::Ipv4Addr;

use hutong_common::{
    checksum::{self, replace2, replace4},
    wire,
};

use super::{End, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, L3, L4, Meta};

/// Where the quoted packet's fields are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedded {
    pub ip_off: usize,
    pub l4_off: usize,
    /// One past the quoted bytes (the end of the outer datagram).
    pub end: usize,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Source and destination ports (TCP/UDP), or the echo identifier twice (ICMP echo).
    pub ports: Option<(u16, u16)>,
}

/// ICMPv4 error types whose payload quotes a packet: destination unreachable, time exceeded,
/// parameter problem.
pub fn is_error(m: &Meta) -> bool {
    matches!(m.l3, L3::V4 { .. }) && matches!(m.l4, L4::Icmp { kind, .. } if wire::is_icmp_error(kind))
}

/// Finds the quoted packet of an ICMPv4 error; `None` if it is not one or the quote is too short
/// to translate (less than an IP header and 8 bytes).
pub fn parse(f: &[u8], m: &Meta) -> Option<Embedded> {
    if !is_error(m) {
        return None;
    }
    let ip_off = m.l4_off + 8;
    let h = f.get(ip_off..ip_off + 20).filter(|_| ip_off + 20 <= m.end)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    let l4_off = ip_off + ihl;
    if ihl < 20 || l4_off + 8 > m.end {
        return None;
    }
    let proto = h[9];
    let later_fragment = u16::from_be_bytes([h[6], h[7]]) & wire::IP_FRAG_OFFSET_MASK != 0;
    let l4 = &f[l4_off..l4_off + 8];
    let ports = match proto {
        _ if later_fragment => None,
        IPPROTO_TCP | IPPROTO_UDP => {
            Some((u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])))
        }
        IPPROTO_ICMP if matches!(l4[0], 0 | 8) => {
            let id = u16::from_be_bytes([l4[4], l4[5]]);
            Some((id, id))
        }
        _ => None,
    };
    Some(Embedded {
        ip_off,
        l4_off,
        end: m.end,
        proto,
        src: Ipv4Addr::new(h[12], h[13], h[14], h[15]),
        dst: Ipv4Addr::new(h[16], h[17], h[18], h[19]),
        ports,
    })
}

/// The addresses of the packet quoted in an ICMPv6 error (types 1-4), and where its header is.
pub fn parse_v6(f: &[u8], m: &Meta) -> Option<(usize, std::net::Ipv6Addr, std::net::Ipv6Addr)> {
    if !matches!(m.l3, L3::V6 { .. }) || !matches!(m.l4, L4::Icmp { kind: 1..=4, .. }) {
        return None;
    }
    let ip_off = m.l4_off + 8;
    let h = f.get(ip_off..ip_off + 40).filter(|_| ip_off + 40 <= m.end)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let src: [u8; 16] = h[8..24].try_into().ok()?;
    let dst: [u8; 16] = h[24..40].try_into().ok()?;
    Some((ip_off, src.into(), dst.into()))
}

/// Writes a quoted IPv6 address. Only NPTv6 changes IPv6 addresses, and its mapping keeps the
/// one's-complement sum of an address, so neither the quoted checksums nor the outer ICMPv6
/// checksum change (RFC 6296 section 3.3).
pub fn set_addr_v6(f: &mut [u8], ip_off: usize, end: End, new: std::net::Ipv6Addr) {
    let at = if end == End::Src { ip_off + 8 } else { ip_off + 24 };
    f[at..at + 16].copy_from_slice(&new.octets());
}

fn get16(f: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([f[at], f[at + 1]])
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

/// Offset of the quoted transport checksum, if the quote includes it.
fn l4_checksum(e: &Embedded) -> Option<usize> {
    let at = match e.proto {
        IPPROTO_UDP => e.l4_off + 6,
        IPPROTO_TCP => e.l4_off + 16,
        _ => return None,
    };
    (at + 2 <= e.end).then_some(at)
}

/// Replaces a quoted address, fixing the quoted IP header checksum and the quoted transport
/// checksum (UDP's zero "no checksum" stays zero).
pub fn set_addr(f: &mut [u8], e: &mut Embedded, end: End, new: Ipv4Addr) {
    let (field, at) = if end == End::Src { (&mut e.src, e.ip_off + 12) } else { (&mut e.dst, e.ip_off + 16) };
    let old = u32::from_ne_bytes(field.octets());
    let newv = u32::from_ne_bytes(new.octets());
    *field = new;
    f[at..at + 4].copy_from_slice(&new.octets());
    let hc = e.ip_off + 10;
    put16(f, hc, replace4(get16(f, hc), old, newv));
    if let Some(c) = l4_checksum(e) {
        if !(e.proto == IPPROTO_UDP && get16(f, c) == 0) {
            put16(f, c, replace4(get16(f, c), old, newv));
        }
    }
}

/// Replaces a quoted port (or the echo identifier, whichever `end` says), fixing the quoted
/// transport checksum.
pub fn set_port(f: &mut [u8], e: &mut Embedded, end: End, new: u16) {
    let Some((s, d)) = e.ports.as_mut() else { return };
    let at = match e.proto {
        IPPROTO_ICMP => e.l4_off + 4,
        _ if end == End::Src => e.l4_off,
        _ => e.l4_off + 2,
    };
    let old = get16(f, at);
    if e.proto == IPPROTO_ICMP {
        (*s, *d) = (new, new);
    } else if end == End::Src {
        *s = new;
    } else {
        *d = new;
    }
    put16(f, at, new.to_be());
    let c = match e.proto {
        IPPROTO_ICMP => Some(e.l4_off + 2),
        _ => l4_checksum(e),
    };
    if let Some(c) = c {
        if !(e.proto == IPPROTO_UDP && get16(f, c) == 0) {
            put16(f, c, replace2(get16(f, c), old, new.to_be()));
        }
    }
}

/// Recomputes the outer ICMP checksum after quoted bytes changed. Errors are rare, and a full
/// sum is simpler to trust than chaining every quoted change into it.
pub fn fix_icmp_checksum(f: &mut [u8], m: &Meta) {
    let c = m.l4_off + 2;
    f[c] = 0;
    f[c + 1] = 0;
    let sum = checksum::finish(checksum::sum(&f[m.l4_off..m.end], 0));
    put16(f, c, sum);
}

#[cfg(test)]
mod tests {
    use etherparse::{Icmpv4Type, PacketBuilder, icmpv4::DestUnreachableHeader};

    use super::*;
    use crate::packet::parse as parse_frame;

    /// An ICMP port unreachable from `router` to `to`, quoting a UDP packet `q_src` -> `q_dst`.
    fn error(router: [u8; 4], to: [u8; 4], q_src: [u8; 4], q_sport: u16, q_dst: [u8; 4]) -> Vec<u8> {
        let q = PacketBuilder::ipv4(q_src, q_dst, 60).udp(q_sport, 53);
        let mut quoted = Vec::new();
        q.write(&mut quoted, b"query").unwrap();
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(router, to, 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port));
        let mut v = Vec::new();
        b.write(&mut v, &quoted).unwrap();
        v
    }

    #[test]
    fn quoted_udp_is_translated_with_every_checksum() {
        let mut f = error([198, 51, 100, 1], [198, 18, 30, 1], [198, 18, 30, 1], 2000, [198, 51, 100, 53]);
        let mut m = parse_frame(&f).unwrap();
        let mut e = parse(&f, &m).unwrap();
        assert_eq!((e.src, e.ports), ("198.18.30.1".parse().unwrap(), Some((2000, 53))));
        crate::packet::rewrite::set_ipv4_addr(&mut f, &mut m, End::Dst, "10.0.0.7".parse().unwrap());
        set_addr(&mut f, &mut e, End::Src, "10.0.0.7".parse().unwrap());
        set_port(&mut f, &mut e, End::Src, 40000);
        fix_icmp_checksum(&mut f, &m);
        // The same error built from scratch for the inside host.
        let mut want = error([198, 51, 100, 1], [10, 0, 0, 7], [10, 0, 0, 7], 40000, [198, 51, 100, 53]);
        // etherparse derives the quoted UDP checksum from its own values; both must agree.
        want[14 + 20 + 8..].copy_from_slice(&f[14 + 20 + 8..]);
        assert_eq!(f, want, "outer headers");
        let q = &f[14 + 20 + 8..];
        let rebuilt = {
            let b = PacketBuilder::ipv4([10, 0, 0, 7], [198, 51, 100, 53], 60).udp(40000, 53);
            let mut v = Vec::new();
            b.write(&mut v, b"query").unwrap();
            v
        };
        assert_eq!(q, &rebuilt[..], "quoted packet with its IP and UDP checksums");
        let icmp_sum = checksum::finish(checksum::sum(&f[m.l4_off..m.end], 0));
        assert!(icmp_sum == 0 || icmp_sum == 0xffff, "ICMP checksum verifies");
    }

    #[test]
    fn short_or_foreign_quotes_are_not_parsed() {
        let f = error([198, 51, 100, 1], [198, 18, 30, 1], [198, 18, 30, 1], 2000, [198, 51, 100, 53]);
        let m = parse_frame(&f).unwrap();
        let mut cut = f[..14 + 20 + 8 + 20 + 4].to_vec();
        let ip_len = (cut.len() - 14) as u16;
        cut[16..18].copy_from_slice(&ip_len.to_be_bytes());
        let mc = parse_frame(&cut).unwrap();
        assert!(parse(&cut, &mc).is_none(), "quote shorter than header + 8");
        assert!(parse(&f, &m).is_some());
    }
}
