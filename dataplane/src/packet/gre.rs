//! GRE (RFC 2784, with the RFC 2890 key and sequence number) over IPv4: reading a received
//! tunnel packet's header, and building the outer headers of one to send.

use std::net::Ipv4Addr;

use hutong_common::{Drop, checksum};

use super::{ETH_P_IPV4, ETH_P_IPV6, Meta};

pub use hutong_common::wire::IPPROTO_GRE;
const GRE_CHECKSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQ: u16 = 0x1000;
const GRE_VERSION: u16 = 0x0007;

/// Bytes a tunnel adds in front of the inner packet.
pub fn overhead(key: Option<u32>) -> usize {
    20 + 4 + if key.is_some() { 4 } else { 0 }
}

/// Where the inner packet starts, its EtherType, and the key, for a GRE packet parsed as `m`.
pub fn parse(f: &[u8], m: &Meta) -> Result<(usize, u16, Option<u32>), Drop> {
    let at = m.l4_off;
    let h = f.get(at..at + 4).filter(|_| at + 4 <= m.end).ok_or(Drop::Malformed)?;
    let flags = u16::from_be_bytes([h[0], h[1]]);
    let proto = u16::from_be_bytes([h[2], h[3]]);
    if flags & (GRE_ROUTING | GRE_VERSION) != 0 {
        return Err(Drop::UnsupportedProtocol);
    }
    let mut off = at + 4;
    if flags & GRE_CHECKSUM != 0 {
        off += 4; // checksum and reserved; the inner packet's own checksums protect it
    }
    let key = if flags & GRE_KEY != 0 {
        let k = f.get(off..off + 4).ok_or(Drop::Malformed)?;
        off += 4;
        Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    } else {
        None
    };
    if flags & GRE_SEQ != 0 {
        off += 4;
    }
    if off > m.end {
        return Err(Drop::Malformed);
    }
    match proto {
        ETH_P_IPV4 | ETH_P_IPV6 => Ok((off, proto, key)),
        _ => Err(Drop::UnsupportedProtocol),
    }
}

/// The outer IPv4 and GRE headers for an inner packet of `inner_len` bytes.
pub fn outer(
    local: Ipv4Addr,
    remote: Ipv4Addr,
    inner_len: usize,
    inner_ethertype: u16,
    key: Option<u32>,
) -> Vec<u8> {
    let total = (overhead(key) + inner_len) as u16;
    let mut h = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, IPPROTO_GRE, 0, 0];
    h.extend_from_slice(&local.octets());
    h.extend_from_slice(&remote.octets());
    let c = checksum::finish(checksum::sum(&h, 0));
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    let flags = if key.is_some() { GRE_KEY } else { 0 };
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&inner_ethertype.to_be_bytes());
    if let Some(k) = key {
        h.extend_from_slice(&k.to_be_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_header_is_a_valid_ipv4_gre_header() {
        let h =
            outer("198.19.0.1".parse().unwrap(), "198.51.100.9".parse().unwrap(), 100, ETH_P_IPV4, Some(42));
        assert_eq!(h.len(), 28);
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&h[..20]).unwrap();
        assert_eq!(ip.total_len(), 128);
        assert_eq!(ip.protocol(), etherparse::IpNumber(47));
        assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
        assert_eq!(&h[20..28], &[0x20, 0, 0x08, 0, 0, 0, 0, 42]);
    }
}
