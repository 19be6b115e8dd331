//! From a [`Config`] to the exact contents of the XDP program's maps.
//!
//! Kept free of any kernel access so the translation (prefix keys, masks, connected routes) is
//! unit-tested here, and the loader only copies entries into maps.

use std::net::IpAddr;

use hutong_common::{NeighKey, Netmap as NetmapEntry, Port, ROLE_EXTRANET, ROLE_LEGACY, Route, V4Key};
use ipnet::{IpNet, Ipv4Net};

use crate::config::{Action, Config, Role};

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
    /// The config uses something the XDP program does not implement yet. Refusing it is the only
    /// safe answer: forwarding it differently from the userspace engine would be worse.
    #[error("the XDP engine does not support {0} yet")]
    Unsupported(String),
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

fn v4(net: &IpNet, what: &str) -> Result<Ipv4Net, TablesError> {
    match net {
        IpNet::V4(n) => Ok(*n),
        IpNet::V6(_) => Err(TablesError::Unsupported(format!("IPv6 ({what} {net})"))),
    }
}

/// The narrower of two prefixes if one contains the other (`None` = everything).
fn narrower(rule: Option<Ipv4Net>, table: Ipv4Net) -> Option<Ipv4Net> {
    match rule {
        None => Some(table),
        Some(r) if r.contains(&table) => Some(table),
        Some(r) if table.contains(&r) => Some(r),
        Some(_) => None,
    }
}

/// Builds the map contents. `resolve` maps an interface name to its ifindex and MAC.
///
/// Policy: the program implements rules whose action is `netmap` and which match on source or
/// destination prefix only. Each such rule, intersected with each netmap of its VRF, becomes an
/// entry of `NAT_SRC_V4` (the rule's VRF is the netmap's inside) or `NAT_DST_V4` (its outside);
/// anything no rule publishes is absent and therefore dropped, as the userspace engine does.
pub fn build(config: &Config, resolve: impl Fn(&str) -> Option<PortHandle>) -> Result<Tables, TablesError> {
    let mut t = Tables::default();
    let mut handles = Vec::new();
    if !config.nptv6.is_empty() {
        return Err(TablesError::Unsupported("NPTv6".into()));
    }
    for p in &config.ports {
        if p.vlan.is_some() {
            return Err(TablesError::Unsupported(format!("VLAN ports ({})", p.key())));
        }
        if p.tunnel.is_some() {
            return Err(TablesError::Unsupported(format!("tunnel ports ({})", p.key())));
        }
        let h = resolve(&p.name).ok_or_else(|| TablesError::NoSuchInterface(p.name.clone()))?;
        handles.push((p.key(), h));
        let role = match p.role {
            Role::Legacy => ROLE_LEGACY,
            Role::Extranet | Role::Tunnel => ROLE_EXTRANET,
        };
        let slot = t.ports.len() as u16;
        t.ports.push((h.ifindex, Port { vrf: p.vrf, mac: h.mac, role, _pad: 0, mtu: p.mtu, slot }));
        for a in &p.addresses {
            let a = v4(a, "address")?;
            t.local.push(V4Key::new(p.vrf, a.addr().octets()));
            // Connected route: the prefix is on-link behind this port.
            let (bits, key) = lpm_key(p.vrf, a.trunc());
            t.fib.push((bits, key, Route { ifindex: h.ifindex, nexthop: [0; 4] }));
        }
    }
    let handle = |key: &str| handles.iter().find(|(k, _)| k == key).map(|(_, h)| *h);
    for r in &config.policies {
        let unsupported = || TablesError::Unsupported(format!("policy rule {:?} ({:?})", r.name, r.action));
        if r.action != Action::Netmap || r.proto.is_some() || r.src_ports.is_some() || r.dst_ports.is_some() {
            return Err(unsupported());
        }
        let src = r.src.as_ref().map(|n| v4(n, "rule source")).transpose()?;
        let dst = r.dst.as_ref().map(|n| v4(n, "rule destination")).transpose()?;
        for n in &config.netmaps {
            if n.inside_vrf == r.vrf && dst.is_none() {
                if let Some(key_net) = narrower(src, n.inside) {
                    let (bits, key) = lpm_key(n.inside_vrf, key_net);
                    t.nat_src.push((bits, key, netmap_entry(n.outside, n.outside_vrf)));
                }
            } else if n.outside_vrf == r.vrf && src.is_none() {
                if let Some(key_net) = narrower(dst, n.outside) {
                    let (bits, key) = lpm_key(n.outside_vrf, key_net);
                    t.nat_dst.push((bits, key, netmap_entry(n.inside, n.inside_vrf)));
                }
            } else if n.inside_vrf == r.vrf || n.outside_vrf == r.vrf {
                return Err(unsupported());
            }
        }
    }
    for r in &config.routes {
        let h = handle(&r.port).ok_or_else(|| TablesError::NoSuchInterface(r.port.clone()))?;
        let prefix = v4(&r.prefix, "route")?;
        let nexthop = match r.via {
            None => [0; 4],
            Some(IpAddr::V4(a)) => a.octets(),
            Some(IpAddr::V6(a)) => return Err(TablesError::Unsupported(format!("IPv6 next hop {a}"))),
        };
        let (bits, key) = lpm_key(r.vrf, prefix.trunc());
        if t.fib.iter().any(|(b, k, _)| *b == bits && *k == key) {
            return Err(TablesError::Unsupported(format!("ECMP (several routes for {})", r.prefix)));
        }
        t.fib.push((bits, key, Route { ifindex: h.ifindex, nexthop }));
        if nexthop != [0; 4] {
            t.nexthops.push(NeighKey { ifindex: h.ifindex, addr: nexthop });
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
        assert_eq!(
            t.ports[0],
            (4, Port { vrf: 1, mac: [2, 0, 0, 0, 0, 4], role: ROLE_LEGACY, _pad: 0, mtu: 1500, slot: 0 })
        );
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
    fn a_narrower_rule_publishes_only_its_part() {
        let mut c = demo();
        c.policies[0].src = Some("10.20.0.0/25".parse().unwrap());
        let t = build(&c, resolve).unwrap();
        assert_eq!(t.nat_src, vec![(57, V4Key::new(1, [10, 20, 0, 0]), t.nat_src[0].2)]);
        // Without its inbound rule the outside block is not published at all.
        c.policies.truncate(1);
        assert!(build(&c, resolve).unwrap().nat_dst.is_empty());
    }

    #[test]
    fn what_the_program_cannot_do_is_refused() {
        let mut c = demo();
        c.policies[0].action = Action::Deny;
        assert!(matches!(build(&c, resolve), Err(TablesError::Unsupported(m)) if m.contains("lan-out")));
        let mut c = demo();
        c.ports[0].vlan = Some(100);
        assert!(matches!(build(&c, resolve), Err(TablesError::Unsupported(m)) if m.contains("VLAN")));
        let mut c = demo();
        c.ports[0].addresses.push("2001:db8::1/64".parse().unwrap());
        assert!(matches!(build(&c, resolve), Err(TablesError::Unsupported(m)) if m.contains("IPv6")));
    }

    #[test]
    fn missing_interface_is_named() {
        let err = build(&demo(), |n| if n == "uplink0" { None } else { resolve(n) }).unwrap_err();
        assert_eq!(err, TablesError::NoSuchInterface("uplink0".into()));
    }
}
