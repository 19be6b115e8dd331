//! In-place header rewrites on a parsed frame, each keeping every checksum right incrementally
//! (RFC 1624). The [`Meta`] passed in must come from [`super::parse`] of the same frame, which
//! guarantees the offsets used here are inside it; each function keeps the `Meta` in step.

use std::net::{Ipv4Addr, Ipv6Addr};

use hutong_common::{
    checksum::{replace2, replace4, replace16},
    wire,
};

use super::{End, Frag, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, L3, L4, Meta};

fn get16(f: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([f[at], f[at + 1]])
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

/// Absolute offset of the transport checksum that covers the IP pseudo-header, if the frame
/// carries one: TCP, UDP, and ICMPv6 (ICMPv4 has no pseudo-header) in a whole datagram or a first
/// fragment. A zero UDP-over-IPv4 checksum means "none" and is reported as absent.
fn pseudo_checksum(f: &[u8], m: &Meta) -> Option<usize> {
    if matches!(m.frag, Frag::Later { .. }) {
        return None;
    }
    let at = match m.proto {
        IPPROTO_TCP => m.l4_off + 16,
        IPPROTO_UDP => m.l4_off + 6,
        IPPROTO_ICMPV6 if matches!(m.l3, L3::V6 { .. }) => m.l4_off + 2,
        _ => return None,
    };
    if wire::checksum_absent(matches!(m.l3, L3::V6 { .. }), m.proto, get16(f, at)) {
        return None;
    }
    Some(at)
}

/// Applies a transport-checksum change, keeping UDP's "computed zero is sent as 0xffff" rule.
fn fix_l4(f: &mut [u8], m: &Meta, update: impl Fn(u16) -> u16) {
    if let Some(at) = pseudo_checksum(f, m) {
        put16(f, at, wire::checksum_to_send(m.proto, update(get16(f, at))));
    }
}

/// Replaces an IPv4 address (source or destination), fixing the header and transport checksums.
pub fn set_ipv4_addr(f: &mut [u8], m: &mut Meta, end: End, new: Ipv4Addr) {
    let L3::V4 { src: s, dst: d } = &mut m.l3 else { return };
    let (field, at) = if end == End::Src { (s, m.l3_off + 12) } else { (d, m.l3_off + 16) };
    let old = u32::from_ne_bytes(field.octets());
    let newv = u32::from_ne_bytes(new.octets());
    *field = new;
    f[at..at + 4].copy_from_slice(&new.octets());
    let hc = m.l3_off + 10;
    put16(f, hc, replace4(get16(f, hc), old, newv));
    fix_l4(f, m, |c| replace4(c, old, newv));
}

/// Replaces an IPv6 address, fixing the transport checksum (IPv6 has no header checksum).
pub fn set_ipv6_addr(f: &mut [u8], m: &mut Meta, end: End, new: Ipv6Addr) {
    let L3::V6 { src: s, dst: d } = &mut m.l3 else { return };
    let (field, at) = if end == End::Src { (s, m.l3_off + 8) } else { (d, m.l3_off + 24) };
    let old = field.octets();
    *field = new;
    f[at..at + 16].copy_from_slice(&new.octets());
    fix_l4(f, m, |c| replace16(c, &old, &new.octets()));
}

/// Replaces a TCP/UDP port (source or destination), fixing the transport checksum.
pub fn set_port(f: &mut [u8], m: &mut Meta, end: End, new: u16) {
    let L4::Ports { src: s, dst: d, .. } = &mut m.l4 else { return };
    let (field, at) = if end == End::Src { (s, m.l4_off) } else { (d, m.l4_off + 2) };
    let old = field.to_be();
    *field = new;
    put16(f, at, new.to_be());
    fix_l4(f, m, |c| replace2(c, old, new.to_be()));
}

/// Replaces an ICMP/ICMPv6 echo identifier, fixing the ICMP checksum (which covers it directly).
pub fn set_icmp_ident(f: &mut [u8], m: &mut Meta, new: u16) {
    let L4::Icmp { ident, .. } = &mut m.l4 else { return };
    let old = ident.to_be();
    *ident = new;
    put16(f, m.l4_off + 4, new.to_be());
    let at = m.l4_off + 2;
    put16(f, at, replace2(get16(f, at), old, new.to_be()));
}

/// Decrements TTL / hop limit by one (the caller has checked it is above 1).
pub fn decrement_ttl(f: &mut [u8], m: &mut Meta) {
    match m.l3 {
        L3::V4 { .. } => {
            let at = m.l3_off + 8;
            let old = get16(f, at);
            f[at] -= 1;
            let hc = m.l3_off + 10;
            put16(f, hc, replace2(get16(f, hc), old, get16(f, at)));
        }
        L3::V6 { .. } => f[m.l3_off + 7] -= 1,
        L3::Arp => return,
    }
    m.ttl -= 1;
}

/// Sets destination and source MAC addresses.
pub fn set_macs(f: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;
    use crate::packet::parse;

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, ttl: u8) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, ttl)
            .udp(sport, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"payload!").unwrap();
        v
    }

    #[test]
    fn ipv4_source_port_and_ttl_rewrite_matches_a_fresh_build() {
        let mut f = udp4([10, 0, 0, 1], [198, 19, 0, 2], 1111, 64);
        let mut m = parse(&f).unwrap();
        set_ipv4_addr(&mut f, &mut m, End::Src, Ipv4Addr::new(198, 18, 0, 7));
        set_port(&mut f, &mut m, End::Src, 40001);
        decrement_ttl(&mut f, &mut m);
        assert_eq!(f, udp4([198, 18, 0, 7], [198, 19, 0, 2], 40001, 63));
        assert_eq!(m, parse(&f).unwrap(), "Meta kept in step with the bytes");
    }

    #[test]
    fn tcp_and_icmpv6_over_ipv6_keep_their_checksums() {
        let a: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let b: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let c: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x33, 0x44];
        let tcp = |src, hop| {
            let p = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv6(src, b, hop).tcp(80, 1000, 1, 100).syn();
            let mut v = Vec::new();
            p.write(&mut v, b"x").unwrap();
            v
        };
        let mut f = tcp(a, 9);
        let mut m = parse(&f).unwrap();
        set_ipv6_addr(&mut f, &mut m, End::Src, Ipv6Addr::from(c));
        decrement_ttl(&mut f, &mut m);
        assert_eq!(f, tcp(c, 8));

        let echo = |src, id| {
            let p = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv6(src, b, 9).icmpv6_echo_request(id, 3);
            let mut v = Vec::new();
            p.write(&mut v, b"ping").unwrap();
            v
        };
        let mut f = echo(a, 7);
        let mut m = parse(&f).unwrap();
        set_ipv6_addr(&mut f, &mut m, End::Src, Ipv6Addr::from(c));
        set_icmp_ident(&mut f, &mut m, 0xbeef);
        assert_eq!(f, echo(c, 0xbeef));
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut f = udp4([10, 0, 0, 1], [198, 19, 0, 2], 1111, 64);
        f[40] = 0;
        f[41] = 0;
        let mut m = parse(&f).unwrap();
        set_ipv4_addr(&mut f, &mut m, End::Src, Ipv4Addr::new(198, 18, 0, 7));
        set_port(&mut f, &mut m, End::Src, 2);
        assert_eq!(&f[40..42], &[0, 0]);
    }
}
