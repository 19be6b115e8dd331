//! From a [`Config`] to the exact contents of the XDP program's maps.
//!
//! Kept free of any kernel access so the translation (prefix keys, masks, connected routes) is
//! unit-tested here, and the loader only copies entries into maps.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use hutong_common::{
    NeighKey, Netmap as NetmapEntry, PORT_FLOWS, PORT_SLOW, Port, ROLE_EXTRANET, ROLE_LEGACY, Route, V4Key,
};
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
    /// What the program leaves to the slow path.
    pub slow: SlowScope,
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

/// The narrower of two prefixes if one contains the other (`None` = everything).
fn narrower(rule: Option<Ipv4Net>, table: Ipv4Net) -> Option<Ipv4Net> {
    match rule {
        None => Some(table),
        Some(r) if r.contains(&table) => Some(table),
        Some(r) if table.contains(&r) => Some(r),
        Some(_) => None,
    }
}

/// What of a config the program leaves to the slow path (the userspace engine behind AF_XDP).
/// The program implements netmap rules (source or destination prefix only) on IPv4 untagged
/// ports with one route per prefix; anything else is marked here, and the affected ports send
/// their traffic to the slow path after ARP and the gateway's own addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlowScope {
    /// The whole gateway, and why.
    pub all: Option<String>,
    /// VRFs whose ports go slow, with the first reason.
    pub vrfs: BTreeMap<u32, String>,
    /// Interfaces carrying VLAN ports.
    pub ifaces: BTreeMap<String, String>,
}

impl SlowScope {
    pub fn of(config: &Config) -> SlowScope {
        let mut s = SlowScope::default();
        let vrf = |s: &mut SlowScope, v: u32, why: String| {
            s.vrfs.entry(v).or_insert(why);
        };
        let mut prefixes = BTreeSet::new();
        for r in &config.routes {
            if !prefixes.insert((r.vrf, r.prefix.trunc())) {
                s.all.get_or_insert(format!("ECMP routes for {} in VRF {}", r.prefix, r.vrf));
            }
        }
        for p in &config.ports {
            if p.tunnel.is_some() {
                s.all.get_or_insert(format!("tunnel port {}", p.key()));
            }
            if p.vlan.is_some() {
                s.ifaces.entry(p.name.clone()).or_insert(format!("VLAN port {}", p.key()));
            }
        }
        for r in &config.policies {
            let why = format!("rule {:?} ({:?})", r.name, r.action);
            let v6_only = |n: &Option<ipnet::IpNet>| matches!(n, Some(ipnet::IpNet::V6(_)));
            match r.action {
                // IPv6 goes to the slow path anyway; a rule that can only match IPv6 is harmless.
                Action::Nptv6 if v6_only(&r.src) || v6_only(&r.dst) => {}
                Action::Netmap
                    if r.proto.is_none()
                        && r.src_ports.is_none()
                        && r.dst_ports.is_none()
                        && (r.src.is_none() || r.dst.is_none())
                        && !v6_only(&r.src)
                        && !v6_only(&r.dst) => {}
                _ => vrf(&mut s, r.vrf, why),
            }
        }
        for p in &config.nat_pools {
            vrf(&mut s, p.inside_vrf, format!("NAPT pool {:?}", p.name));
            vrf(&mut s, p.outside_vrf, format!("NAPT pool {:?}", p.name));
        }
        for sv in &config.services {
            vrf(&mut s, sv.inside_vrf, format!("service {:?}", sv.name));
            vrf(&mut s, sv.outside_vrf, format!("service {:?}", sv.name));
        }
        s
    }

    /// Whether the program forwards nothing itself.
    pub fn is_everything(&self, config: &Config) -> bool {
        self.all.is_some()
            || config
                .ports
                .iter()
                .all(|p| self.vrfs.contains_key(&p.vrf) || self.ifaces.contains_key(&p.name))
    }
}

/// Builds the map contents. `resolve` maps an interface name to its ifindex and MAC.
///
/// Policy: the program implements rules whose action is `netmap` and which match on source or
/// destination prefix only. Each such rule, intersected with each netmap of its VRF, becomes an
/// entry of `NAT_SRC_V4` (the rule's VRF is the netmap's inside) or `NAT_DST_V4` (its outside);
/// anything no rule publishes is absent and therefore dropped, as the userspace engine does.
/// Everything else is left to the slow path (see [`SlowScope`]).
pub fn build(config: &Config, resolve: impl Fn(&str) -> Option<PortHandle>) -> Result<Tables, TablesError> {
    let slow = SlowScope::of(config);
    let mut t = Tables::default();
    let mut handles = Vec::new();
    for p in config.ports.iter().filter(|p| p.tunnel.is_none()) {
        let h = resolve(&p.name).ok_or_else(|| TablesError::NoSuchInterface(p.name.clone()))?;
        handles.push((p.key(), h));
        // One PORTS entry per interface: its untagged port, or its first VLAN port standing in.
        if t.ports.iter().any(|(i, _)| *i == h.ifindex) {
            continue;
        }
        let untagged =
            config.ports.iter().find(|q| q.name == p.name && q.vlan.is_none() && q.tunnel.is_none());
        let q = untagged.unwrap_or(p);
        let role = match q.role {
            Role::Legacy | Role::InternetAccess => ROLE_LEGACY,
            Role::Extranet | Role::Tunnel => ROLE_EXTRANET,
        };
        let is_slow =
            slow.all.is_some() || slow.vrfs.contains_key(&q.vrf) || slow.ifaces.contains_key(&q.name);
        let nat_vrf = config.nat_pools.iter().any(|n| n.inside_vrf == q.vrf || n.outside_vrf == q.vrf)
            || config.services.iter().any(|s| s.inside_vrf == q.vrf || s.outside_vrf == q.vrf);
        let flags = if is_slow { PORT_SLOW } else { 0 } | if nat_vrf { PORT_FLOWS } else { 0 };
        let slot = t.ports.len() as u16;
        t.ports.push((h.ifindex, Port { vrf: q.vrf, mac: h.mac, role, flags, mtu: q.mtu, slot }));
        if q.vlan.is_some() {
            continue; // a VLAN port's addresses are reached tagged: slow path
        }
        for a in &q.addresses {
            let IpNet::V4(a) = a else { continue }; // IPv6 is the slow path's
            t.local.push(V4Key::new(q.vrf, a.addr().octets()));
            // Connected route: the prefix is on-link behind this port.
            let (bits, key) = lpm_key(q.vrf, a.trunc());
            t.fib.push((bits, key, Route { ifindex: h.ifindex, nexthop: [0; 4] }));
        }
    }
    let handle = |key: &str| handles.iter().find(|(k, _)| k == key).map(|(_, h)| *h);
    for r in &config.policies {
        let plain =
            r.action == Action::Netmap && r.proto.is_none() && r.src_ports.is_none() && r.dst_ports.is_none();
        let (src, dst) = match (r.src, r.dst) {
            (Some(IpNet::V6(_)), _) | (_, Some(IpNet::V6(_))) => continue,
            (Some(IpNet::V4(s)), d) => {
                (Some(s), d.and_then(|d| if let IpNet::V4(d) = d { Some(d) } else { None }))
            }
            (None, Some(IpNet::V4(d))) => (None, Some(d)),
            (None, None) => (None, None),
        };
        if !plain || slow.vrfs.contains_key(&r.vrf) {
            continue; // its VRF goes to the slow path
        }
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
            }
        }
    }
    for r in &config.routes {
        let (IpNet::V4(prefix), Some(h)) = (r.prefix, handle(&r.port)) else { continue };
        let nexthop = match r.via {
            None => [0; 4],
            Some(IpAddr::V4(a)) => a.octets(),
            Some(IpAddr::V6(_)) => continue,
        };
        let (bits, key) = lpm_key(r.vrf, prefix.trunc());
        if t.fib.iter().any(|(b, k, _)| *b == bits && *k == key) {
            continue; // ECMP: the whole gateway is on the slow path
        }
        t.fib.push((bits, key, Route { ifindex: h.ifindex, nexthop }));
        if nexthop != [0; 4] {
            t.nexthops.push(NeighKey { ifindex: h.ifindex, addr: nexthop });
        }
    }
    t.slow = slow;
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
            (4, Port { vrf: 1, mac: [2, 0, 0, 0, 0, 4], role: ROLE_LEGACY, flags: 0, mtu: 1500, slot: 0 })
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
    fn what_the_program_cannot_do_goes_to_the_slow_path() {
        let slow_ports = |c: &Config| -> Vec<bool> {
            build(c, resolve).unwrap().ports.iter().map(|(_, p)| p.flags & PORT_SLOW != 0).collect()
        };
        assert_eq!(slow_ports(&demo()), [false, false], "the demo is all fast path");
        // A deny rule in the legacy VRF: that VRF's port goes slow, its netmap entries are not
        // installed, and the extranet side stays fast.
        let mut c = demo();
        c.policies[0].action = Action::Deny;
        assert_eq!(slow_ports(&c), [true, false]);
        assert!(build(&c, resolve).unwrap().nat_src.is_empty());
        assert!(SlowScope::of(&c).vrfs[&1].contains("lan-out"));
        // A VLAN port slows its whole interface; IPv6 addresses are simply not the program's.
        let mut c = demo();
        c.ports[0].vlan = Some(100);
        c.ports[0].addresses.push("2001:db8::1/64".parse().unwrap());
        assert_eq!(slow_ports(&c), [true, false]);
        // ECMP anywhere: everything.
        let mut c = demo();
        let mut second = c.routes[0].clone();
        second.via = Some("198.19.0.3".parse().unwrap());
        c.routes.push(second);
        assert_eq!(slow_ports(&c), [true, true]);
        assert!(SlowScope::of(&c).is_everything(&c));
    }

    #[test]
    fn only_nat_vrfs_look_up_flows() {
        let flows = |c: &Config| -> Vec<bool> {
            build(c, resolve).unwrap().ports.iter().map(|(_, p)| p.flags & PORT_FLOWS != 0).collect()
        };
        assert_eq!(flows(&demo()), [false, false], "netmap alone makes no sessions");
        let mut c = demo();
        c.nat_pools.push(crate::config::NatPool::defaults(
            "p".into(),
            1,
            0,
            vec!["198.18.30.0/31".parse().unwrap()],
        ));
        assert_eq!(flows(&c), [true, true]);
    }

    #[test]
    fn missing_interface_is_named() {
        let err = build(&demo(), |n| if n == "uplink0" { None } else { resolve(n) }).unwrap_err();
        assert_eq!(err, TablesError::NoSuchInterface("uplink0".into()));
    }
}
