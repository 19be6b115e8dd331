//! IPv4 longest-prefix match: a DIR-16-8-8 table (a 64 Ki-entry first level, then 256-entry
//! groups for prefixes longer than /16 and /24), built once from the full prefix list and never
//! mutated: a config change builds a new table and swaps it in whole.
//!
//! A lookup is at most three dependent loads, with no branches on the prefix structure beyond
//! "leaf or group", which is what makes it fast enough for the per-packet path. Building inserts
//! prefixes shortest first, so a longer prefix only ever overwrites slots it owns, and a slot is
//! split into a group (inheriting the shorter route) only when a longer prefix needs it.

use ipnet::Ipv4Net;

/// An entry with this bit set points to a group; otherwise it is `value + 1` (0 = no route).
const GROUP: u32 = 1 << 31;

#[derive(Clone, Debug)]
pub struct Lpm4 {
    tbl16: Box<[u32]>,
    tbl8: Vec<u32>,
    prefixes: usize,
}

impl Default for Lpm4 {
    fn default() -> Self {
        Lpm4 { tbl16: vec![0; 1 << 16].into_boxed_slice(), tbl8: Vec::new(), prefixes: 0 }
    }
}

impl Lpm4 {
    /// Largest value that can be stored (values are route-group indices).
    pub const MAX_VALUE: u32 = GROUP - 2;

    /// Builds the table. For duplicate prefixes the last value wins. Values above
    /// [`Lpm4::MAX_VALUE`] are rejected by the caller's validation, and clamped here.
    pub fn build(routes: impl IntoIterator<Item = (Ipv4Net, u32)>) -> Lpm4 {
        let mut routes: Vec<(Ipv4Net, u32)> = routes.into_iter().map(|(n, v)| (n.trunc(), v)).collect();
        // Stable: equal prefixes keep their input order, so the last one written wins.
        routes.sort_by_key(|(n, _)| n.prefix_len());
        let mut t = Lpm4 { prefixes: routes.len(), ..Lpm4::default() };
        for (net, value) in routes {
            t.insert(net, value.min(Self::MAX_VALUE) + 1);
        }
        t
    }

    /// Routes the table was built from (duplicates included).
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Bytes of table memory.
    pub fn memory(&self) -> usize {
        (self.tbl16.len() + self.tbl8.len()) * 4
    }

    /// Makes `entry` a group: an existing group is kept, a leaf becomes a new group whose 256
    /// slots inherit it. Returns the entry to store and the group's index.
    fn split(&mut self, entry: u32) -> (u32, u32) {
        if entry & GROUP != 0 {
            return (entry, entry & !GROUP);
        }
        let g = (self.tbl8.len() / 256) as u32;
        self.tbl8.extend(std::iter::repeat_n(entry, 256));
        (g | GROUP, g)
    }

    fn insert(&mut self, net: Ipv4Net, leaf: u32) {
        let a = u32::from(net.network());
        let len = net.prefix_len() as u32;
        if len <= 16 {
            let first = (a >> 16) as usize;
            let n = 1usize << (16 - len);
            self.tbl16[first..first + n].fill(leaf);
            return;
        }
        let i16 = (a >> 16) as usize;
        let (e, g1) = self.split(self.tbl16[i16]);
        self.tbl16[i16] = e;
        let base1 = g1 as usize * 256;
        if len <= 24 {
            let first = ((a >> 8) & 0xff) as usize;
            let n = 1usize << (24 - len);
            self.tbl8[base1 + first..base1 + first + n].fill(leaf);
            return;
        }
        let i8 = base1 + ((a >> 8) & 0xff) as usize;
        let (e, g2) = self.split(self.tbl8[i8]);
        self.tbl8[i8] = e;
        let base2 = g2 as usize * 256;
        let first = (a & 0xff) as usize;
        let n = 1usize << (32 - len);
        self.tbl8[base2 + first..base2 + first + n].fill(leaf);
    }

    /// The value of the longest prefix containing `addr` (host byte order), if any.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let mut e = self.tbl16[(addr >> 16) as usize];
        if e & GROUP != 0 {
            e = self.tbl8[((e & !GROUP) as usize) * 256 + ((addr >> 8) & 0xff) as usize];
            if e & GROUP != 0 {
                e = self.tbl8[((e & !GROUP) as usize) * 256 + (addr & 0xff) as usize];
            }
        }
        e.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn look(t: &Lpm4, a: &str) -> Option<u32> {
        t.lookup(u32::from(a.parse::<Ipv4Addr>().unwrap()))
    }

    #[test]
    fn longest_prefix_wins_at_every_level() {
        let t = Lpm4::build([
            (net("0.0.0.0/0"), 0),
            (net("10.0.0.0/8"), 1),
            (net("10.20.0.0/16"), 2),
            (net("10.20.0.0/24"), 3),
            (net("10.20.0.128/25"), 4),
            (net("10.20.0.77/32"), 5),
        ]);
        assert_eq!(look(&t, "192.0.2.1"), Some(0));
        assert_eq!(look(&t, "10.1.2.3"), Some(1));
        assert_eq!(look(&t, "10.20.9.9"), Some(2));
        assert_eq!(look(&t, "10.20.0.1"), Some(3));
        assert_eq!(look(&t, "10.20.0.200"), Some(4));
        assert_eq!(look(&t, "10.20.0.77"), Some(5));
        assert_eq!(look(&t, "10.20.0.76"), Some(3));
    }

    #[test]
    fn no_default_means_no_route() {
        let t = Lpm4::build([(net("10.0.0.0/8"), 7)]);
        assert_eq!(look(&t, "11.0.0.1"), None);
        assert!(Lpm4::build([]).is_empty());
    }

    /// The obvious implementation, as the oracle.
    fn naive(routes: &[(Ipv4Net, u32)], a: u32) -> Option<u32> {
        let addr = Ipv4Addr::from(a);
        routes
            .iter()
            .rev()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(_, v)| *v)
    }

    proptest! {
        #[test]
        fn matches_a_linear_scan(
            routes in prop::collection::vec((any::<u32>(), 0u8..=32, 0u32..1000), 0..200),
            probes in prop::collection::vec(any::<u32>(), 50),
        ) {
            let routes: Vec<(Ipv4Net, u32)> = routes.into_iter()
                .map(|(a, l, v)| (Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc(), v)).collect();
            // Make duplicates unambiguous for the oracle: keep the last value of each prefix.
            let mut dedup: Vec<(Ipv4Net, u32)> = Vec::new();
            for r in &routes {
                dedup.retain(|(n, _)| *n != r.0);
                dedup.push(*r);
            }
            let t = Lpm4::build(routes.clone());
            for p in probes.iter().copied().chain(routes.iter().map(|(n, _)| u32::from(n.network()))) {
                prop_assert_eq!(t.lookup(p), naive(&dedup, p), "address {}", Ipv4Addr::from(p));
            }
        }
    }
}
