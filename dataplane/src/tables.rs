//! From a [`Config`] to the exact contents of the XDP program's maps.
//!
//! Kept free of any kernel access so the translation (prefix keys, masks, connected routes) is
//! unit-tested here, and the loader only copies entries into maps.

use std::net::Ipv4Addr;

use hutong_common::{NeighKey, Netmap as NetmapEntry, Port, ROLE_EXTRANET, ROLE_LEGACY, Route, V4Key};
use ipnet::Ipv4Net;

use crate::config::{Config, Role};

/// What the host knows about an interface the config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortHandle {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// An LPM entry: the key's prefix length in bits (VRF bits included), the key, the value.
pub type Lpm<V> = (u32, V4Key, V);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub ports: Vec<(u32, Port)>,
    pub local: Vec<V4Key>,
    pub nat_src: Vec<Lpm<NetmapEntry>>,
    pub nat_dst: Vec<Lpm<NetmapEntry>>,
    pub fib: Vec<Lpm<Route>>,
    /// Configured next hops, resolved ahead of traffic so the first packet is not lost.
    pub nexthops: Vec<NeighKey>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TablesError {
    #[error("interface {0:?} named in the config does not exist on this host")]
    NoSuchInterface(String),
}

fn lpm_key(vrf: u32, net: Ipv4Net) -> (u32, V4Key) {
    (V4Key::VRF_BITS + net.prefix_len() as u32, V4Key::new(vrf, net.network().octets()))
}

fn netmap_entry(to: Ipv4Net, vrf_out: u32) -> NetmapEntry {
    NetmapEntry {
        to: u32::from_ne_bytes(to.network().octets()),
        mask: u32::from_ne_bytes(to.netmask().octets()),
        vrf_out,
    }
}

/// Builds the map contents. `resolve` maps an interface name to its ifindex and MAC.
pub fn build(config: &Config, resolve: impl Fn(&str) -> Option<PortHandle>) -> Result<Tables, TablesError> {
    let mut t = Tables::default();
    let mut handles = Vec::new();
    for p in &config.ports {
        let h = resolve(&p.name).ok_or_else(|| TablesError::NoSuchInterface(p.name.clone()))?;
        handles.push((p.name.as_str(), h));
        let role = match p.role {
            Role::Legacy => ROLE_LEGACY,
            Role::Extranet => ROLE_EXTRANET,
        };
        t.ports.push((h.ifindex, Port { vrf: p.vrf, mac: h.mac, role, _pad: 0 }));
        for a in &p.addresses {
            t.local.push(V4Key::new(p.vrf, a.addr().octets()));
            // Connected route: the prefix is on-link behind this port.
            let (bits, key) = lpm_key(p.vrf, a.trunc());
            t.fib.push((bits, key, Route { ifindex: h.ifindex, nexthop: [0; 4] }));
        }
    }
    let handle = |name: &str| handles.iter().find(|(n, _)| *n == name).map(|(_, h)| *h);
    for n in &config.netmaps {
        let (bits, key) = lpm_key(n.inside_vrf, n.inside);
        t.nat_src.push((bits, key, netmap_entry(n.outside, n.outside_vrf)));
        let (bits, key) = lpm_key(n.outside_vrf, n.outside);
        t.nat_dst.push((bits, key, netmap_entry(n.inside, n.inside_vrf)));
    }
    for r in &config.routes {
        let h = handle(&r.port).ok_or_else(|| TablesError::NoSuchInterface(r.port.clone()))?;
        let nexthop = r.via.unwrap_or(Ipv4Addr::UNSPECIFIED).octets();
        let (bits, key) = lpm_key(r.vrf, r.prefix.trunc());
        t.fib.push((bits, key, Route { ifindex: h.ifindex, nexthop }));
        if let Some(via) = r.via {
            t.nexthops.push(NeighKey { ifindex: h.ifindex, addr: via.octets() });
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::demo;

    fn resolve(name: &str) -> Option<PortHandle> {
        match name {
            "legacy0" => Some(PortHandle { ifindex: 4, mac: [2, 0, 0, 0, 0, 4] }),
            "uplink0" => Some(PortHandle { ifindex: 5, mac: [2, 0, 0, 0, 0, 5] }),
            _ => None,
        }
    }

    #[test]
    fn demo_tables() {
        let t = build(&demo(), resolve).unwrap();
        assert_eq!(t.ports.len(), 2);
        assert_eq!(t.ports[0], (4, Port { vrf: 1, mac: [2, 0, 0, 0, 0, 4], role: ROLE_LEGACY, _pad: 0 }));
        assert_eq!(t.local, vec![V4Key::new(1, [10, 20, 0, 1]), V4Key::new(0, [198, 19, 0, 1])]);
        // legacy 10.20.0.0/24 in VRF 1 -> 198.18.20.0/24 in VRF 0, and back.
        assert_eq!(
            t.nat_src,
            vec![(
                56,
                V4Key::new(1, [10, 20, 0, 0]),
                NetmapEntry {
                    to: u32::from_ne_bytes([198, 18, 20, 0]),
                    mask: u32::from_ne_bytes([255, 255, 255, 0]),
                    vrf_out: 0,
                }
            )]
        );
        assert_eq!(t.nat_dst[0].1, V4Key::new(0, [198, 18, 20, 0]));
        assert_eq!(t.nat_dst[0].2.to, u32::from_ne_bytes([10, 20, 0, 0]));
        assert_eq!(t.nat_dst[0].2.vrf_out, 1);
        // Two connected routes, then the default route via the extranet next hop.
        assert_eq!(t.fib.len(), 3);
        assert_eq!(t.fib[0], (56, V4Key::new(1, [10, 20, 0, 0]), Route { ifindex: 4, nexthop: [0; 4] }));
        assert_eq!(
            t.fib[2],
            (32, V4Key::new(0, [0, 0, 0, 0]), Route { ifindex: 5, nexthop: [198, 19, 0, 2] })
        );
        assert_eq!(t.nexthops, vec![NeighKey { ifindex: 5, addr: [198, 19, 0, 2] }]);
    }

    #[test]
    fn missing_interface_is_named() {
        let err = build(&demo(), |n| if n == "uplink0" { None } else { resolve(n) }).unwrap_err();
        assert_eq!(err, TablesError::NoSuchInterface("uplink0".into()));
    }
}
