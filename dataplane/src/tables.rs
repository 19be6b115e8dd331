//! From a [`Config`] to the exact contents of the XDP program's maps.
//!
//! Kept free of any kernel access so the translation (prefix keys, masks, connected routes) is
//! unit-tested here, and the loader only copies entries into maps.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use hutong_common::{
    MAX_RULES, MAX_RULES_PER_VRF, NeighKey, Netmap as NetmapEntry, PORT_FLOWS, PORT_SLOW, PolicyRule, Port,
    ROLE_EXTRANET, ROLE_LEGACY, RULE_COUNT, RULE_DENY, RULE_DPORTS, RULE_NETMAP, RULE_NO_TRANSLATION,
    RULE_PERMIT, RULE_PROTO, RULE_ROUTE_VIA, RULE_SPORTS, Route, V4Key,
};
use ipnet::{IpNet, Ipv4Net};

use crate::config::{Action, Config, Role, Rule};

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
    /// Policy rules, VRF after VRF, each VRF's in order (VRFs on the slow path left out).
    pub rules: Vec<PolicyRule>,
    /// Where each VRF's rules sit in `rules` (also written into its ports).
    pub vrf_rules: Vec<(u32, VrfRules)>,
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

impl Tables {
    /// Makes the program hand every port's traffic to the slow path (after ARP and the
    /// gateway's own addresses), with no flow looked up: the userspace engine behind AF_XDP
    /// forwards everything.
    pub fn all_to_userspace(&mut self, why: &str) {
        self.slow.all.get_or_insert_with(|| why.to_string());
        for (_, p) in &mut self.ports {
            p.flags = PORT_SLOW;
        }
    }
}

/// A VRF's span of rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VrfRules {
    pub first: u32,
    pub count: u32,
}

fn lpm_key(vrf: u32, net: Ipv4Net) -> (u32, V4Key) {
    (V4Key::VRF_BITS + net.prefix_len() as u32, V4Key::new(vrf, net.network().octets()))
}

/// One rule as the program scans it (the caller ruled out IPv6-only rules, and route-via to a
/// port the program cannot send on).
fn policy_rule(index: u32, r: &Rule, handle: &impl Fn(&str) -> Option<PortHandle>) -> PolicyRule {
    let prefix = |n: Option<IpNet>| match n {
        Some(IpNet::V4(n)) => {
            (u32::from_ne_bytes(n.network().octets()), u32::from_ne_bytes(n.netmask().octets()))
        }
        _ => (0, 0),
    };
    let (src, src_mask) = prefix(r.src);
    let (dst, dst_mask) = prefix(r.dst);
    let mut p = PolicyRule { src, src_mask, dst, dst_mask, index, ..PolicyRule::default() };
    if let Some(proto) = r.proto {
        p.flags |= RULE_PROTO;
        p.proto = proto;
    }
    if let Some(sp) = r.src_ports {
        p.flags |= RULE_SPORTS;
        (p.sport_lo, p.sport_hi) = (sp.first, sp.last);
    }
    if let Some(dp) = r.dst_ports {
        p.flags |= RULE_DPORTS;
        (p.dport_lo, p.dport_hi) = (dp.first, dp.last);
    }
    p.action = match &r.action {
        Action::Permit => RULE_PERMIT,
        Action::Deny => RULE_DENY,
        Action::Count => RULE_COUNT,
        Action::Netmap => RULE_NETMAP,
        Action::RouteVia { port, via } => {
            p.via_ifindex = handle(port).map_or(0, |h| h.ifindex);
            if let Some(IpAddr::V4(a)) = via {
                p.via_nexthop = a.octets();
            }
            RULE_ROUTE_VIA
        }
        // NPTv6 translates only IPv6: for IPv4 it decides "no translation", as in userspace.
        Action::Nptv6 | Action::Napt { .. } | Action::Dnat => RULE_NO_TRANSLATION,
    };
    p
}

fn netmap_entry(to: Ipv4Net, vrf_out: u32) -> NetmapEntry {
    NetmapEntry {
        to: u32::from_ne_bytes(to.network().octets()),
        mask: u32::from_ne_bytes(to.netmask().octets()),
        vrf_out,
    }
}

/// Whether a rule can only match IPv6 (the program hands all IPv6 to the slow path).
fn v6_only(r: &Rule) -> bool {
    matches!(r.src, Some(IpNet::V6(_))) || matches!(r.dst, Some(IpNet::V6(_)))
}

/// What of a config the program leaves to the slow path (the userspace engine behind AF_XDP).
/// The program implements, on IPv4 untagged ports with one route per prefix, the policy rules
/// (permit, deny, count, netmap, route-via to an untagged port; at most
/// [`MAX_RULES_PER_VRF`] per VRF) and the flows of established NAT sessions; anything else is
/// marked here, and the affected ports send their traffic to the slow path after ARP, the
/// gateway's own addresses and those flows.
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
        let mut per_vrf: BTreeMap<u32, u32> = BTreeMap::new();
        for r in &config.policies {
            let why = format!("rule {:?} ({:?})", r.name, r.action);
            *per_vrf.entry(r.vrf).or_default() += 1;
            match &r.action {
                // New sessions are the userspace engine's.
                Action::Napt { .. } | Action::Dnat => vrf(&mut s, r.vrf, why),
                Action::RouteVia { port, via } => {
                    let plain = config
                        .ports
                        .iter()
                        .any(|p| p.key() == *port && p.vlan.is_none() && p.tunnel.is_none());
                    if !plain || matches!(via, Some(IpAddr::V6(_))) {
                        vrf(&mut s, r.vrf, why);
                    }
                }
                _ => {}
            }
        }
        for (v, n) in per_vrf {
            if n > MAX_RULES_PER_VRF {
                vrf(&mut s, v, format!("{n} rules, more than the {MAX_RULES_PER_VRF} the program scans"));
            }
        }
        if config.policies.len() > MAX_RULES as usize {
            s.all.get_or_insert(format!(
                "{} rules, more than the program holds ({MAX_RULES})",
                config.policies.len()
            ));
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
/// Policy: every netmap goes into `NAT_SRC_V4` (keyed by its inside VRF and prefix) and
/// `NAT_DST_V4` (outside VRF and prefix) whole, and each VRF's rules into `RULES`, in order, with
/// their counters' indexes: the program scans them as the userspace engine does, so the rules
/// decide who may use a netmap. Its ports carry where those are; a VRF without rules denies
/// everything. What the program cannot do is left to the slow path (see [`SlowScope`]).
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
        t.ports.push((
            h.ifindex,
            Port { vrf: q.vrf, mac: h.mac, role, flags, mtu: q.mtu, slot, ..Port::default() },
        ));
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
    // The netmaps whole: the rules decide who may use them, as in the userspace engine.
    for n in &config.netmaps {
        let (bits, key) = lpm_key(n.inside_vrf, n.inside);
        t.nat_src.push((bits, key, netmap_entry(n.outside, n.outside_vrf)));
        let (bits, key) = lpm_key(n.outside_vrf, n.outside);
        t.nat_dst.push((bits, key, netmap_entry(n.inside, n.inside_vrf)));
    }
    // Each VRF's rules, in order; a VRF without any denies everything (it has no entry).
    let vrfs: BTreeSet<u32> =
        config.policies.iter().map(|r| r.vrf).filter(|v| !slow.vrfs.contains_key(v)).collect();
    for v in vrfs {
        let first = t.rules.len() as u32;
        for (index, r) in config.policies.iter().enumerate().filter(|(_, r)| r.vrf == v && !v6_only(r)) {
            t.rules.push(policy_rule(index as u32, r, &handle));
        }
        t.vrf_rules.push((v, VrfRules { first, count: t.rules.len() as u32 - first }));
    }
    for (_, port) in &mut t.ports {
        if let Some((_, vr)) = t.vrf_rules.iter().find(|(v, _)| *v == port.vrf) {
            // Both fit: MAX_RULES is below 65536.
            (port.rules_first, port.rules_count) = (vr.first as u16, vr.count as u16);
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
            (
                4,
                Port {
                    vrf: 1,
                    mac: [2, 0, 0, 0, 0, 4],
                    role: ROLE_LEGACY,
                    flags: 0,
                    mtu: 1500,
                    slot: 0,
                    rules_first: 1,
                    rules_count: 1
                }
            )
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
    fn rules_are_scanned_in_order_per_vrf_with_their_counters() {
        let t = build(&demo(), resolve).unwrap();
        assert_eq!(
            t.vrf_rules,
            vec![(0, VrfRules { first: 0, count: 1 }), (1, VrfRules { first: 1, count: 1 })]
        );
        // VRF 0's rule is the config's second: its counter is index 1.
        assert_eq!((t.rules[0].index, t.rules[0].action), (1, RULE_NETMAP));
        assert_eq!(t.rules[0].dst_mask, u32::from_ne_bytes([255, 255, 255, 0]));
        let mut c = demo();
        c.policies.push(Rule {
            name: "web".into(),
            vrf: 1,
            src: None,
            dst: Some("2001:db8::/32".parse().unwrap()),
            proto: None,
            src_ports: None,
            dst_ports: None,
            action: Action::Deny,
        });
        c.policies.push(Rule {
            name: "dns-via".into(),
            vrf: 0,
            src: None,
            dst: None,
            proto: Some(17),
            src_ports: Some(crate::PortRange { first: 1024, last: 65535 }),
            dst_ports: Some(crate::PortRange { first: 53, last: 53 }),
            action: Action::RouteVia { port: "uplink0".into(), via: Some("198.19.0.9".parse().unwrap()) },
        });
        let t = build(&c, resolve).unwrap();
        assert_eq!(t.vrf_rules[1], (1, VrfRules { first: 2, count: 1 }), "the IPv6 rule is left out");
        let r = t.rules[1];
        assert_eq!(
            (r.flags, r.proto, r.sport_lo, r.sport_hi, r.dport_lo, r.dport_hi),
            (7, 17, 1024, 65535, 53, 53)
        );
        assert_eq!(
            (r.action, r.via_ifindex, r.via_nexthop, r.index),
            (RULE_ROUTE_VIA, 5, [198, 19, 0, 9], 3)
        );
    }

    #[test]
    fn what_the_program_cannot_do_goes_to_the_slow_path() {
        let slow_ports = |c: &Config| -> Vec<bool> {
            build(c, resolve).unwrap().ports.iter().map(|(_, p)| p.flags & PORT_SLOW != 0).collect()
        };
        assert_eq!(slow_ports(&demo()), [false, false], "the demo is all fast path");
        // A deny rule in the legacy VRF: that VRF scans its rules (in order, counters by
        // position), with its netmaps whole; it stays on the fast path.
        let mut c = demo();
        c.policies[0].action = Action::Deny;
        let t = build(&c, resolve).unwrap();
        assert_eq!(slow_ports(&c), [false, false]);
        assert_eq!(t.vrf_rules[1], (1, VrfRules { first: 1, count: 1 }));
        assert_eq!((t.rules[1].action, t.rules[1].index), (RULE_DENY, 0));
        assert_eq!(t.nat_src.len(), 1, "the whole netmap: the rules decide");
        // New sessions (NAPT) are the slow path's.
        let mut c = demo();
        c.policies[0].action = Action::Napt { pool: "p".into() };
        assert_eq!(slow_ports(&c), [true, false]);
        assert!(SlowScope::of(&c).vrfs[&1].contains("lan-out"));
        // More rules than the program scans per VRF.
        let mut c = demo();
        let rule = c.policies[0].clone();
        c.policies.extend((0..MAX_RULES_PER_VRF).map(|i| Rule { name: format!("r{i}"), ..rule.clone() }));
        assert_eq!(slow_ports(&c), [true, false]);
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
