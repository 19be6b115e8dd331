//! IPv6 longest-prefix match: one hash table per prefix length in use, probed longest first.
//! Plans use a handful of lengths (/32, /48, /56, /64, /128), so a lookup is a few hash probes.
//! Like [`super::lpm4::Lpm4`] it is built once and replaced whole.

use std::collections::HashMap;

use ipnet::Ipv6Net;

#[derive(Clone, Debug, Default)]
pub struct Lpm6 {
    /// (prefix length, network bits → value), longest first.
    by_len: Vec<(u8, HashMap<u128, u32>)>,
}

fn mask(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - len as u32) }
}

impl Lpm6 {
    /// Builds the table; for duplicate prefixes the last value wins.
    pub fn build(routes: impl IntoIterator<Item = (Ipv6Net, u32)>) -> Lpm6 {
        let mut by_len: Vec<(u8, HashMap<u128, u32>)> = Vec::new();
        for (net, value) in routes {
            let len = net.prefix_len();
            let key = u128::from(net.network()) & mask(len);
            match by_len.iter_mut().find(|(l, _)| *l == len) {
                Some((_, m)) => {
                    m.insert(key, value);
                }
                None => by_len.push((len, HashMap::from([(key, value)]))),
            }
        }
        by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        Lpm6 { by_len }
    }

    pub fn len(&self) -> usize {
        self.by_len.iter().map(|(_, m)| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }

    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<u32> {
        self.by_len.iter().find_map(|(len, m)| m.get(&(addr & mask(*len))).copied())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let t = Lpm6::build([
            ("::/0".parse().unwrap(), 0),
            ("2001:db8::/32".parse().unwrap(), 1),
            ("2001:db8:1::/48".parse().unwrap(), 2),
            ("2001:db8:1::7/128".parse().unwrap(), 3),
        ]);
        let look = |a: &str| t.lookup(u128::from(a.parse::<Ipv6Addr>().unwrap()));
        assert_eq!(look("2400::1"), Some(0));
        assert_eq!(look("2001:db8:9::1"), Some(1));
        assert_eq!(look("2001:db8:1::1"), Some(2));
        assert_eq!(look("2001:db8:1::7"), Some(3));
        assert_eq!(t.len(), 4);
        assert_eq!(Lpm6::build([("2001:db8::/32".parse().unwrap(), 1)]).lookup(1), None);
    }
}
