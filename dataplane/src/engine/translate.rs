//! Stateless address translations as pure functions on addresses: netmap (IPv4 1:1 prefix) and
//! NPTv6 (RFC 6296, checksum-neutral). The pipeline decides which applies; these only compute.

use std::net::{Ipv4Addr, Ipv6Addr};

use hutong_common::checksum;
use ipnet::{Ipv4Net, Ipv6Net};

/// Netmap: keep the host bits, replace the prefix (`from` and `to` have equal lengths).
pub fn netmap(addr: Ipv4Addr, to: Ipv4Net) -> Ipv4Addr {
    let mask = u32::from(to.netmask());
    Ipv4Addr::from((u32::from(addr) & !mask) | u32::from(to.network()))
}

/// The first 64 bits of a prefix: all NPTv6 (at most /48) may change.
fn high(p: Ipv6Net) -> [u8; 8] {
    p.network().octets()[..8].try_into().expect("8 bytes")
}

/// NPTv6 (RFC 6296) from `from` to `to` (equal lengths, at most /48): the prefix is replaced and
/// the 16-bit word at bits 48-63 adjusted so the one's-complement sum of the address, and with it
/// every transport checksum over it, is unchanged. `None` for an address whose adjusted word
/// would be 0xFFFF (RFC 6296 section 3.5: it cannot be translated back unambiguously).
pub fn nptv6(addr: Ipv6Addr, from: Ipv6Net, to: Ipv6Net) -> Option<Ipv6Addr> {
    let mask = u128::from(to.netmask());
    let mut out = ((u128::from(addr) & !mask) | u128::from(to.network())).to_be_bytes();
    let word = u16::from_ne_bytes([out[6], out[7]]);
    let w = checksum::nptv6_word(word, checksum::nptv6_adjust(&high(from), &high(to)))?;
    out[6..8].copy_from_slice(&w.to_ne_bytes());
    Some(Ipv6Addr::from(out))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn netmap_replaces_the_prefix() {
        let to: Ipv4Net = "198.18.20.0/24".parse().unwrap();
        assert_eq!(netmap("10.20.0.77".parse().unwrap(), to), "198.18.20.77".parse::<Ipv4Addr>().unwrap());
    }

    proptest! {
        #[test]
        fn netmap_is_a_bijection(a in any::<u32>(), b in any::<u32>(), len in 0u8..=32, host in any::<u32>()) {
            let inside = Ipv4Net::new(Ipv4Addr::from(a), len).unwrap().trunc();
            let outside = Ipv4Net::new(Ipv4Addr::from(b), len).unwrap().trunc();
            let mask = u32::from(inside.netmask());
            let addr = Ipv4Addr::from(u32::from(inside.network()) | (host & !mask));
            let out = netmap(addr, outside);
            prop_assert!(outside.contains(&out));
            prop_assert_eq!(netmap(out, inside), addr);
        }

        #[test]
        fn nptv6_is_checksum_neutral_and_reversible(a in any::<u128>(), b in any::<u128>(), len in 1u8..=48, host in any::<u128>()) {
            let inside = Ipv6Net::new(Ipv6Addr::from(a), len).unwrap().trunc();
            let outside = Ipv6Net::new(Ipv6Addr::from(b), len).unwrap().trunc();
            let addr = Ipv6Addr::from(u128::from(inside.network()) | (host & !u128::from(inside.netmask())));
            if let Some(out) = nptv6(addr, inside, outside) {
                prop_assert!(outside.contains(&out));
                let sum = |x: Ipv6Addr| checksum::finish(checksum::sum(&x.octets(), 0));
                // Neutral: equal sums (0 and 0xffff are the same one's-complement value).
                let (s1, s2) = (sum(addr), sum(out));
                prop_assert!(s1 == s2 || (s1 | s2) == 0xffff && (s1 & s2) == 0, "{:#x} {:#x}", s1, s2);
                prop_assert_eq!(nptv6(out, outside, inside), Some(addr));
            }
        }
    }

    #[test]
    fn rfc6296_example() {
        // RFC 6296 section 3.5's example: fd01:0203:0405::/48 <-> 2001:0db8:0001::/48.
        let inside: Ipv6Net = "fd01:203:405::/48".parse().unwrap();
        let outside: Ipv6Net = "2001:db8:1::/48".parse().unwrap();
        let a: Ipv6Addr = "fd01:203:405:1::1234".parse().unwrap();
        assert_eq!(nptv6(a, inside, outside), Some("2001:db8:1:d550::1234".parse().unwrap()));
    }
}
