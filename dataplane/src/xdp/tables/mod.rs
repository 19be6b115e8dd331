//! From a [`Config`] to the exact contents of the XDP program's maps.
//!
//! Kept free of any kernel access so the translation (prefix keys, masks, connected routes) is
//! unit-tested here, and the loader only copies entries into maps.

use std::{collections::BTreeSet, net::IpAddr};

use hutong_common::{
    NETMAP_SESSION_FREE, Neigh6Key, NeighKey, Netmap as NetmapEntry, Npt6, PORT_BARE, PORT_NAT_OUT,
    PORT_SLOW, PolicyRule, PolicyRule6, Port, RULE_COUNT, RULE_DENY, RULE_DPORTS, RULE_NETMAP,
    RULE_NO_TRANSLATION, RULE_NPT6, RULE_PERMIT, RULE_PROTO, RULE_ROUTE_VIA, RULE_SLOW, RULE_SPORTS,
    RULE_VIA_V4, Route, Route6, V4Key, V6Key, checksum, vlan_port_key,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::{Action, Config, PortConfig, Rule};

mod slow_scope;

pub use slow_scope::SlowScope;
use slow_scope::{port_entry, session_free};

/// What the host knows about an interface the config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortHandle {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// An LPM entry: the key's prefix length in bits (VRF bits included), the key, the value.
pub type Lpm<K, V> = (u32, K, V);

/// What the program's maps hold for one config, entry by entry (named apart from the userspace
/// engine's `engine::Compiled` and the program's own generation selector).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapContents {
    /// `PORTS`: the interfaces first, in slot order, then the VLAN ports (see [`MapContents::interfaces`]).
    pub ports: Vec<(u32, Port)>,
    pub local: Vec<V4Key>,
    pub nat_src: Vec<Lpm<V4Key, NetmapEntry>>,
    pub nat_dst: Vec<Lpm<V4Key, NetmapEntry>>,
    pub fib: Vec<Lpm<V4Key, Route>>,
    /// `NAT_OUT_V4`: pool and service addresses on their outside VRFs.
    pub nat_out: Vec<Lpm<V4Key, u8>>,
    /// The IPv6 counterparts: own addresses, NPTv6 both ways, routes, rules.
    pub local6: Vec<V6Key>,
    pub npt_src: Vec<Lpm<V6Key, Npt6>>,
    pub npt_dst: Vec<Lpm<V6Key, Npt6>>,
    pub fib6: Vec<Lpm<V6Key, Route6>>,
    pub rules6: Vec<PolicyRule6>,
    /// Policy rules, VRF after VRF, each VRF's in order (VRFs on the slow path left out).
    pub rules: Vec<PolicyRule>,
    /// Where each VRF's rules sit in `rules` (also written into its ports).
    pub vrf_rules: Vec<(u32, VrfRules)>,
    pub vrf_rules6: Vec<(u32, VrfRules)>,
    /// Configured next hops, resolved ahead of traffic so the first packet is not lost.
    pub nexthops: Vec<NeighKey>,
    pub nexthops6: Vec<Neigh6Key>,
    /// What the program leaves to the slow path.
    pub slow: SlowScope,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapContentsError {
    #[error("interface {0:?} named in the config does not exist on this host")]
    NoSuchInterface(String),
}

impl MapContents {
    /// The interfaces (ifindex and entry), in slot order: what has a devmap entry and slow-path
    /// sockets.
    pub fn interfaces(&self) -> impl Iterator<Item = &(u32, Port)> {
        self.ports.iter().filter(|(_, p)| p.vlan == 0)
    }

    /// The configured next hops of both families, as the neighbor resolver takes them.
    pub fn next_hops(&self) -> Vec<(u32, IpAddr)> {
        let v4 = self.nexthops.iter().map(|k| (k.ifindex, IpAddr::from(k.addr)));
        v4.chain(self.nexthops6.iter().map(|k| (k.ifindex, IpAddr::from(k.addr)))).collect()
    }

    /// Makes the program hand every port's traffic to the slow path (after ARP and the
    /// gateway's own addresses), with no flow looked up: the userspace engine behind AF_XDP
    /// forwards everything.
    pub fn all_to_userspace(&mut self, why: &str) {
        self.slow.all.get_or_insert_with(|| why.to_string());
        for (_, p) in &mut self.ports {
            // No flows; what is the host's (a bare interface's untagged frames, ARP for NAT
            // addresses) stays as it was.
            p.flags = PORT_SLOW | (p.flags & (PORT_NAT_OUT | PORT_BARE));
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

fn lpm_key6(vrf: u32, net: Ipv6Net) -> (u32, V6Key) {
    (V6Key::VRF_BITS + net.prefix_len() as u32, V6Key::new(vrf, net.network().octets()))
}

/// An IPv6 address's two halves as the program reads them from the packet.
fn halves(a: std::net::Ipv6Addr) -> [u64; 2] {
    let o = a.octets();
    [u64::from_ne_bytes(o[..8].try_into().expect("8")), u64::from_ne_bytes(o[8..].try_into().expect("8"))]
}

/// NPTv6 from `from` to `to`, as the program applies it.
fn npt_entry(from: Ipv6Net, to: Ipv6Net, vrf_out: u32) -> Npt6 {
    let high = |p: Ipv6Net| -> [u8; 8] { p.network().octets()[..8].try_into().expect("8") };
    Npt6 {
        to: halves(to.network())[0],
        mask: halves(to.netmask())[0],
        adjust: checksum::nptv6_adjust(&high(from), &high(to)),
        vrf_out,
    }
}

/// One rule as the program scans it for IPv6 packets (the caller ruled out IPv4-only rules,
/// and route-via rules the program cannot follow).
fn policy_rule6(index: u32, r: &Rule, handle: &impl Fn(&str) -> Option<u32>) -> PolicyRule6 {
    let prefix = |n: Option<IpNet>| match n {
        Some(IpNet::V6(n)) => (halves(n.network()), halves(n.netmask())),
        _ => ([0; 2], [0; 2]),
    };
    let (src, src_mask) = prefix(r.src);
    let (dst, dst_mask) = prefix(r.dst);
    // The same matching fields and action codes as IPv4, but for the translations.
    let v4 = policy_rule(index, r, handle);
    let mut p = PolicyRule6 {
        src,
        src_mask,
        dst,
        dst_mask,
        sport_lo: v4.sport_lo,
        sport_hi: v4.sport_hi,
        dport_lo: v4.dport_lo,
        dport_hi: v4.dport_hi,
        via_ifindex: v4.via_ifindex,
        index,
        proto: v4.proto,
        flags: v4.flags,
        action: v4.action,
        ..PolicyRule6::default()
    };
    match &r.action {
        Action::Nptv6 => p.action = RULE_NPT6,
        // Netmap and the NATs translate only IPv4: for IPv6 they decide "no translation", as
        // in userspace.
        Action::Netmap | Action::Napt { .. } | Action::Dnat => p.action = RULE_NO_TRANSLATION,
        Action::RouteVia { via: Some(IpAddr::V6(a)), .. } => p.via_nexthop = a.octets(),
        Action::RouteVia { via: Some(IpAddr::V4(a)), .. } => {
            p.via_nexthop[..4].copy_from_slice(&a.octets());
            p.flags |= RULE_VIA_V4;
        }
        _ => {}
    }
    p
}

/// One rule as the program scans it (the caller ruled out IPv6-only rules, and route-via to a
/// port the program cannot send on).
fn policy_rule(index: u32, r: &Rule, handle: &impl Fn(&str) -> Option<u32>) -> PolicyRule {
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
            p.via_ifindex = handle(port).unwrap_or(0);
            if let Some(IpAddr::V4(a)) = via {
                p.via_nexthop = a.octets();
            }
            RULE_ROUTE_VIA
        }
        // NPTv6 translates only IPv6: for IPv4 it decides "no translation", as in userspace.
        Action::Nptv6 => RULE_NO_TRANSLATION,
        // A new session: the slow path's (outside VRFs scan their rules; inside VRFs of pools
        // are on the slow path whole).
        Action::Napt { .. } | Action::Dnat => RULE_SLOW,
    };
    p
}

fn netmap_entry(to: Ipv4Net, vrf_out: u32) -> NetmapEntry {
    NetmapEntry {
        to: u32::from_ne_bytes(to.network().octets()),
        mask: u32::from_ne_bytes(to.netmask().octets()),
        vrf_out,
        flags: 0,
    }
}

/// Whether a rule can only match IPv6 (it is left out of the IPv4 rules).
fn v6_only(r: &Rule) -> bool {
    matches!(r.src, Some(IpNet::V6(_))) || matches!(r.dst, Some(IpNet::V6(_)))
}

/// Whether a rule can only match IPv4 (it is left out of the IPv6 rules).
fn v4_only(r: &Rule) -> bool {
    matches!(r.src, Some(IpNet::V4(_))) || matches!(r.dst, Some(IpNet::V4(_)))
}

/// Builds the map contents. `resolve` maps an interface name to its ifindex and MAC.
///
/// Policy: every netmap goes into `NAT_SRC_V4` (keyed by its inside VRF and prefix) and
/// `NAT_DST_V4` (outside VRF and prefix) whole, and each VRF's rules into `RULES`, in order, with
/// their counters' indexes: the program scans them as the userspace engine does, so the rules
/// decide who may use a netmap. Its ports carry where those are; a VRF without rules denies
/// everything. What the program cannot do is left to the slow path (see [`SlowScope`]).
pub fn build(
    config: &Config,
    resolve: impl Fn(&str) -> Option<PortHandle>,
) -> Result<MapContents, MapContentsError> {
    let slow = SlowScope::of(config);
    let mut t = MapContents::default();
    let mut handles = Vec::new();
    let physical: Vec<&PortConfig> = config.ports.iter().filter(|p| p.tunnel.is_none()).collect();
    // The interfaces first, one entry each and in slot order: its untagged port, or a bare
    // entry when it only carries VLANs.
    for p in &physical {
        let h = resolve(&p.name).ok_or_else(|| MapContentsError::NoSuchInterface(p.name.clone()))?;
        if t.ports.iter().any(|(i, _)| *i == h.ifindex) {
            continue;
        }
        let slot = t.ports.len() as u16;
        let bare = Port { mac: h.mac, flags: PORT_BARE, slot, parent: h.ifindex, ..Port::default() };
        let port = match physical.iter().find(|q| q.name == p.name && q.vlan.is_none()) {
            Some(q) => port_entry(config, &slow, q, bare),
            None => bare,
        };
        t.ports.push((h.ifindex, port));
    }
    // Then the VLAN ports, by `vlan_port_key`, sending through their interface's slot. Every
    // port's key is where routes, next hops and neighbors find it.
    for p in &physical {
        let h = resolve(&p.name).ok_or_else(|| MapContentsError::NoSuchInterface(p.name.clone()))?;
        let Some(vid) = p.vlan else {
            handles.push((p.key(), h.ifindex));
            continue;
        };
        let iface = t.ports.iter().find(|(i, _)| *i == h.ifindex).map(|(_, q)| *q).expect("added above");
        let key = vlan_port_key(iface.slot, vid);
        handles.push((p.key(), key));
        let base = Port { mac: h.mac, slot: iface.slot, parent: h.ifindex, vlan: vid, ..Port::default() };
        t.ports.push((key, port_entry(config, &slow, p, base)));
    }
    for p in &physical {
        let ifindex = handles.iter().find(|(k, _)| *k == p.key()).map(|(_, i)| *i).expect("resolved");
        for a in &p.addresses {
            // Connected routes: the prefix is on-link behind this port.
            match a {
                IpNet::V4(a) => {
                    t.local.push(V4Key::new(p.vrf, a.addr().octets()));
                    let (bits, key) = lpm_key(p.vrf, a.trunc());
                    t.fib.push((bits, key, Route { ifindex, nexthop: [0; 4] }));
                }
                IpNet::V6(a) => {
                    t.local6.push(V6Key::new(p.vrf, a.addr().octets()));
                    let (bits, key) = lpm_key6(p.vrf, a.trunc());
                    t.fib6.push((bits, key, Route6 { ifindex, nexthop: [0; 16] }));
                }
            }
        }
    }
    let handle = |key: &str| handles.iter().find(|(k, _)| k == key).map(|(_, i)| *i);
    // The netmaps whole: the rules decide who may use them, as in the userspace engine.
    for n in &config.netmaps {
        let (bits, key) = lpm_key(n.inside_vrf, n.inside);
        let mut entry = netmap_entry(n.outside, n.outside_vrf);
        if slow.napt_inside.contains(&n.inside_vrf) && session_free(config, n) {
            entry.flags |= NETMAP_SESSION_FREE;
        }
        t.nat_src.push((bits, key, entry));
        let (bits, key) = lpm_key(n.outside_vrf, n.outside);
        t.nat_dst.push((bits, key, netmap_entry(n.inside, n.inside_vrf)));
    }
    // The outside addresses of pools and services.
    for p in &config.nat_pools {
        for a in &p.addresses {
            let (bits, key) = lpm_key(p.outside_vrf, a.trunc());
            t.nat_out.push((bits, key, 1));
        }
    }
    for sv in &config.services {
        let (bits, key) = lpm_key(sv.outside_vrf, Ipv4Net::from(sv.outside));
        if !t.nat_out.iter().any(|(b, k, _)| (*b, *k) == (bits, key)) {
            t.nat_out.push((bits, key, 1));
        }
    }
    // NPTv6 likewise. Of two translations of the same prefix the first is the one that acts,
    // as in the userspace engine.
    for n in &config.nptv6 {
        let (bits, key) = lpm_key6(n.inside_vrf, n.inside);
        if !t.npt_src.iter().any(|(b, k, _)| (*b, *k) == (bits, key)) {
            t.npt_src.push((bits, key, npt_entry(n.inside, n.outside, n.outside_vrf)));
        }
        let (bits, key) = lpm_key6(n.outside_vrf, n.outside);
        if !t.npt_dst.iter().any(|(b, k, _)| (*b, *k) == (bits, key)) {
            t.npt_dst.push((bits, key, npt_entry(n.outside, n.inside, n.inside_vrf)));
        }
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
        let first = t.rules6.len() as u32;
        for (index, r) in config.policies.iter().enumerate().filter(|(_, r)| r.vrf == v && !v4_only(r)) {
            t.rules6.push(policy_rule6(index as u32, r, &handle));
        }
        t.vrf_rules6.push((v, VrfRules { first, count: t.rules6.len() as u32 - first }));
    }
    for (_, port) in &mut t.ports {
        // All fit: MAX_RULES (and MAX_RULES_V6, the same) is below 65536.
        if let Some((_, vr)) = t.vrf_rules.iter().find(|(v, _)| *v == port.vrf) {
            (port.rules_first, port.rules_count) = (vr.first as u16, vr.count as u16);
        }
        if let Some((_, vr)) = t.vrf_rules6.iter().find(|(v, _)| *v == port.vrf) {
            (port.rules6_first, port.rules6_count) = (vr.first as u16, vr.count as u16);
        }
    }
    for r in &config.routes {
        let Some(port) = handle(&r.port) else { continue };
        let prefix = match r.prefix {
            IpNet::V4(p) => p,
            IpNet::V6(p) => {
                let nexthop = match r.via {
                    Some(IpAddr::V6(a)) => a.octets(),
                    _ => [0; 16], // validation keeps next hops in the prefix's family
                };
                let (bits, key) = lpm_key6(r.vrf, p.trunc());
                if t.fib6.iter().any(|(b, k, _)| *b == bits && *k == key) {
                    continue; // ECMP: the whole gateway is on the slow path
                }
                t.fib6.push((bits, key, Route6 { ifindex: port, nexthop }));
                if nexthop != [0; 16] {
                    t.nexthops6.push(Neigh6Key { ifindex: port, addr: nexthop });
                }
                continue;
            }
        };
        let nexthop = match r.via {
            Some(IpAddr::V4(a)) => a.octets(),
            _ => [0; 4],
        };
        let (bits, key) = lpm_key(r.vrf, prefix.trunc());
        if t.fib.iter().any(|(b, k, _)| *b == bits && *k == key) {
            continue; // ECMP: the whole gateway is on the slow path
        }
        t.fib.push((bits, key, Route { ifindex: port, nexthop }));
        if nexthop != [0; 4] {
            t.nexthops.push(NeighKey { ifindex: port, addr: nexthop });
        }
    }
    t.slow = slow;
    Ok(t)
}

#[cfg(test)]
mod tests;
