//! Deterministic NAT (RFC 7422): an inside host's outside address and port block are a pure
//! function of its address, and the reverse is a pure function too, so "who used this outside
//! address and port" is answered from the config alone, without per-session logs.
//!
//! The function, for an inside prefix `P` (hosts numbered `i = addr - P.network`), outside
//! addresses `A` (all addresses of the pool's prefixes, in config order), ports `first..=last`
//! and block size `k`:
//!
//! ```text
//! blocks per address  b = (last - first + 1) / k
//! outside address     A[i / b]
//! port block          first + (i % b) * k  ..  first + (i % b) * k + k - 1
//! reverse             i = index(A, address) * b + (port - first) / k,  host = P.network + i
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The parameters of one deterministic pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Det44 {
    pub inside: Ipv4Net,
    pub outside: Vec<Ipv4Addr>,
    pub first: u16,
    pub last: u16,
    pub block: u16,
}

impl Det44 {
    fn per_address(&self) -> u32 {
        (self.last as u32 - self.first as u32 + 1) / self.block as u32
    }

    /// The outside address and first port of `host`'s block, if `host` is inside and the pool
    /// is large enough (validation guarantees it for the whole prefix).
    pub fn forward(&self, host: Ipv4Addr) -> Option<(Ipv4Addr, u16)> {
        if !self.inside.contains(&host) {
            return None;
        }
        let i = u32::from(host) - u32::from(self.inside.network());
        let b = self.per_address();
        let addr = *self.outside.get((i / b) as usize)?;
        Some((addr, self.first + ((i % b) * self.block as u32) as u16))
    }

    /// The inside host that owns outside `addr`:`port`, if any.
    pub fn reverse(&self, addr: Ipv4Addr, port: u16) -> Option<Ipv4Addr> {
        if port < self.first || port > self.last {
            return None;
        }
        let a = self.outside.iter().position(|x| *x == addr)? as u32;
        let slot = (port - self.first) as u32 / self.block as u32;
        let b = self.per_address();
        if slot >= b {
            return None; // the ragged end of the range belongs to no block
        }
        let i = a * b + slot;
        let host = Ipv4Addr::from(u32::from(self.inside.network()).checked_add(i)?);
        self.inside.contains(&host).then_some(host)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn det() -> Det44 {
        Det44 {
            inside: "10.0.0.0/22".parse().unwrap(),
            outside: vec![
                "198.18.30.1".parse().unwrap(),
                "198.18.30.2".parse().unwrap(),
                "198.18.30.3".parse().unwrap(),
            ],
            first: 1024,
            last: 65535,
            block: 128,
        }
    }

    #[test]
    fn documented_examples() {
        let d = det(); // 504 blocks per address
        assert_eq!(d.forward("10.0.0.0".parse().unwrap()), Some(("198.18.30.1".parse().unwrap(), 1024)));
        assert_eq!(d.forward("10.0.0.1".parse().unwrap()), Some(("198.18.30.1".parse().unwrap(), 1152)));
        assert_eq!(d.forward("10.0.1.248".parse().unwrap()), Some(("198.18.30.2".parse().unwrap(), 1024)));
        assert_eq!(d.reverse("198.18.30.2".parse().unwrap(), 1100), Some("10.0.1.248".parse().unwrap()));
        assert_eq!(d.forward("10.0.4.0".parse().unwrap()), None);
        assert_eq!(d.reverse("198.18.30.1".parse().unwrap(), 80), None);
        assert_eq!(d.reverse("198.18.30.9".parse().unwrap(), 2000), None);
    }

    proptest! {
        #[test]
        fn reverse_inverts_forward_for_every_port_of_the_block(host in 0u32..1024, off in 0u16..128) {
            let d = det();
            let h = Ipv4Addr::from(u32::from(d.inside.network()) + host);
            let (a, p) = d.forward(h).unwrap();
            prop_assert_eq!(d.reverse(a, p + off), Some(h));
        }
    }
}
