//! The forwarding table: per-VRF longest-prefix match for IPv4 ([`lpm4`]) and IPv6 ([`lpm6`]),
//! resolving to ECMP groups of next hops, chosen per flow by hash.
//!
//! Built from a [`Config`] in one go: each port's own prefixes are connected (on-link) routes,
//! static routes for the same VRF and prefix form one ECMP group.

#![forbid(unsafe_code)]

pub mod lpm4;
pub mod lpm6;

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;

use crate::config::Config;
pub use lpm4::Lpm4;
pub use lpm6::Lpm6;

/// Where a route leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Index of the egress port in `Config::ports`.
    pub port: usize,
    /// Next-hop address; `None` means on-link (the destination itself).
    pub via: Option<IpAddr>,
}

#[derive(Clone, Debug, Default)]
pub struct Fib {
    v4: Vec<Lpm4>,
    v6: Vec<Lpm6>,
    groups: Vec<Vec<NextHop>>,
}

impl Fib {
    /// Builds the FIB. The config must be valid (ports referenced by routes exist).
    pub fn build(config: &Config) -> Fib {
        let mut groups: Vec<Vec<NextHop>> = Vec::new();
        let mut index: HashMap<(u32, IpNet), usize> = HashMap::new();
        let mut add = |vrf: u32, prefix: IpNet, hop: NextHop| {
            let g = *index.entry((vrf, prefix.trunc())).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            if !groups[g].contains(&hop) {
                groups[g].push(hop);
            }
        };
        for (i, p) in config.ports.iter().enumerate() {
            for a in &p.addresses {
                add(p.vrf, a.trunc(), NextHop { port: i, via: None });
            }
        }
        for r in &config.routes {
            if let Some(port) = config.ports.iter().position(|p| p.key() == r.port) {
                add(r.vrf, r.prefix, NextHop { port, via: r.via });
            }
        }
        let vrfs = config.vrfs.iter().map(|v| v.id as usize + 1).max().unwrap_or(1);
        let mut v4: Vec<Vec<_>> = vec![Vec::new(); vrfs];
        let mut v6: Vec<Vec<_>> = vec![Vec::new(); vrfs];
        let mut entries: Vec<(&(u32, IpNet), &usize)> = index.iter().collect();
        // Deterministic build order regardless of hash iteration.
        entries.sort_by_key(|(k, g)| (k.0, k.1, **g));
        for ((vrf, prefix), g) in entries {
            // Validation keeps routes inside declared VRFs; anything else has nowhere to go.
            let slot = *vrf as usize;
            if slot >= vrfs {
                continue;
            }
            match prefix {
                IpNet::V4(n) => v4[slot].push((*n, *g as u32)),
                IpNet::V6(n) => v6[slot].push((*n, *g as u32)),
            }
        }
        Fib {
            v4: v4.into_iter().map(Lpm4::build).collect(),
            v6: v6.into_iter().map(Lpm6::build).collect(),
            groups,
        }
    }

    /// The next hop for `dst` in `vrf`; among equal-cost ones, the one `flow_hash` picks.
    #[inline]
    pub fn lookup(&self, vrf: u32, dst: IpAddr, flow_hash: u32) -> Option<NextHop> {
        self.lookup_with(vrf, dst, || flow_hash)
    }

    /// As [`Fib::lookup`], computing the flow hash only when the route has several next hops.
    #[inline]
    pub fn lookup_with(&self, vrf: u32, dst: IpAddr, flow_hash: impl FnOnce() -> u32) -> Option<NextHop> {
        let g = match dst {
            IpAddr::V4(a) => self.v4.get(vrf as usize)?.lookup(u32::from(a))?,
            IpAddr::V6(a) => self.v6.get(vrf as usize)?.lookup(u128::from(a))?,
        };
        match self.groups.get(g as usize)?.as_slice() {
            [] => None,
            [one] => Some(*one),
            hops => Some(hops[flow_hash() as usize % hops.len()]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteConfig, examples::demo};

    #[test]
    fn connected_static_and_per_vrf() {
        let c = demo();
        let f = Fib::build(&c);
        let hop = |vrf, a: &str| f.lookup(vrf, a.parse().unwrap(), 0);
        assert_eq!(hop(1, "10.20.0.10"), Some(NextHop { port: 0, via: None }));
        assert_eq!(hop(0, "198.19.0.2"), Some(NextHop { port: 1, via: None }));
        assert_eq!(hop(0, "8.8.8.8"), Some(NextHop { port: 1, via: Some("198.19.0.2".parse().unwrap()) }));
        // VRF 1 has no default route: the extranet is reached only through a translation.
        assert_eq!(hop(1, "8.8.8.8"), None);
        assert_eq!(hop(9, "10.20.0.10"), None);
    }

    #[test]
    fn ecmp_spreads_flows_and_keeps_each_flow_on_one_path() {
        let mut c = demo();
        c.routes.push(RouteConfig {
            vrf: 0,
            prefix: "0.0.0.0/0".parse().unwrap(),
            port: "uplink0".into(),
            via: Some("198.19.0.3".parse().unwrap()),
        });
        let f = Fib::build(&c);
        let pick = |h| f.lookup(0, "8.8.8.8".parse().unwrap(), h).unwrap().via.unwrap().to_string();
        let used: std::collections::BTreeSet<String> = (0..16).map(pick).collect();
        assert_eq!(used.len(), 2, "{used:?}");
        assert_eq!(pick(12345), pick(12345));
    }
}
