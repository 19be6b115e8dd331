//! From a [`Config`] to the exact contents of the XDP program's maps.
//!
//! Kept free of any kernel access so the translation (prefix keys, masks, connected routes) is
//! unit-tested here, and the loader only copies entries into maps.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use hutong_common::{
    MAX_RULES, MAX_RULES_PER_VRF, NETMAP_SESSION_FREE, Neigh6Key, NeighKey, Netmap as NetmapEntry, Npt6,
    PORT_BARE, PORT_FLOWS, PORT_NAPT_INSIDE, PORT_NAT_OUT, PORT_SLOW, PolicyRule, PolicyRule6, Port,
    ROLE_EXTRANET, ROLE_LEGACY, RULE_COUNT, RULE_DENY, RULE_DPORTS, RULE_NETMAP, RULE_NO_TRANSLATION,
    RULE_NPT6, RULE_PERMIT, RULE_PROTO, RULE_ROUTE_VIA, RULE_SLOW, RULE_SPORTS, RULE_VIA_V4, Route, Route6,
    V4Key, V6Key, checksum, vlan_port_key,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::{Action, Config, PortConfig, Role, Rule};

/// What the host knows about an interface the config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortHandle {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// An LPM entry: the key's prefix length in bits (VRF bits included), the key, the value.
pub type Lpm<K, V> = (u32, K, V);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    /// `PORTS`: the interfaces first, in slot order, then the VLAN ports (see [`Tables::interfaces`]).
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
pub enum TablesError {
    #[error("interface {0:?} named in the config does not exist on this host")]
    NoSuchInterface(String),
}

impl Tables {
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

/// Whether no NAT session can have a source in netmap `n`'s inside prefix: in its VRF an
/// unconditional netmap rule covering the prefix comes before every NAPT rule whose source could
/// overlap it, so every packet from there is decided (netmap, or an earlier rule) before a NAPT
/// rule could make a session; and an apply drops sessions its rules would not make
/// (`Engine::adopt`). Then the program may forward such packets itself (`PORT_NAPT_INSIDE`).
fn session_free(config: &Config, n: &crate::config::Netmap) -> bool {
    let overlaps = |src: Option<IpNet>| match src {
        None => true,
        Some(IpNet::V4(p)) => p.contains(&n.inside.network()) || n.inside.contains(&p.network()),
        Some(IpNet::V6(_)) => false,
    };
    for r in config.policies.iter().filter(|r| r.vrf == n.inside_vrf) {
        match &r.action {
            Action::Napt { .. } if overlaps(r.src) => return false,
            Action::Netmap
                if r.dst.is_none()
                    && r.proto.is_none()
                    && r.src_ports.is_none()
                    && r.dst_ports.is_none()
                    && match r.src {
                        None => true,
                        Some(IpNet::V4(p)) => {
                            p.contains(&n.inside.network()) && p.prefix_len() <= n.inside.prefix_len()
                        }
                        Some(IpNet::V6(_)) => false,
                    } =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
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

/// What of a config the program leaves to the slow path (the userspace engine behind AF_XDP).
/// The program implements, on IPv4 and IPv6 ports (untagged or VLAN) with one route per
/// prefix, the policy rules (permit, deny, count, netmap, NPTv6, route-via; at most
/// [`MAX_RULES_PER_VRF`] per VRF) and the flows of established NAT sessions; anything else is
/// marked here, and the affected ports send their traffic to the slow path after ARP, the
/// gateway's own addresses and those flows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlowScope {
    /// The whole gateway, and why.
    pub all: Option<String>,
    /// VRFs whose ports go slow, with the first reason.
    pub vrfs: BTreeMap<u32, String>,
    /// NAPT pools' insides (not slow otherwise): sessions decide first there, so the program
    /// forwards only netmapped sources no session can have (`PORT_NAPT_INSIDE`).
    pub napt_inside: BTreeSet<u32>,
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
        }
        let mut per_vrf: BTreeMap<u32, u32> = BTreeMap::new();
        for r in &config.policies {
            let why = format!("rule {:?} ({:?})", r.name, r.action);
            *per_vrf.entry(r.vrf).or_default() += 1;
            match &r.action {
                // New sessions are the userspace engine's: a NAPT rule's VRF is a pool's inside,
                // where sessions decide first (see `napt_inside`). (A DNAT rule's VRF is an
                // outside: the program sends its hits, and packets to NAT addresses, to the slow
                // path and forwards the rest.)
                Action::Napt { .. } => {
                    s.napt_inside.insert(r.vrf);
                }
                Action::RouteVia { port, via } => {
                    let plain = config.ports.iter().any(|p| p.key() == *port && p.tunnel.is_none());
                    // An IPv6 next hop for IPv4 packets is beyond the program's IPv4 rules.
                    if !plain || matches!(via, Some(IpAddr::V6(_))) && !v6_only(r) {
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
        // Inside a pool or service, sessions decide before the rules do. Inside a service the
        // whole VRF is the slow path's (but for the flows of established sessions): a published
        // host's replies belong to its sessions whatever the rules say. Inside a pool, sessions
        // exist only for sources a NAPT rule decides, so netmapped sources that no NAPT rule can
        // reach stay in the program (see `session_free`).
        for p in &config.nat_pools {
            s.napt_inside.insert(p.inside_vrf);
        }
        for sv in &config.services {
            vrf(&mut s, sv.inside_vrf, format!("service {:?}", sv.name));
        }
        let slow = s.vrfs.clone();
        s.napt_inside.retain(|v| !slow.contains_key(v));
        s
    }

    /// Whether the program forwards nothing itself.
    pub fn is_everything(&self, config: &Config) -> bool {
        self.all.is_some() || config.ports.iter().all(|p| self.vrfs.contains_key(&p.vrf))
    }
}

/// A port's entry: `base` (MAC, slot, interface, VLAN) with its VRF, role, MTU and flags.
fn port_entry(config: &Config, slow: &SlowScope, p: &PortConfig, base: Port) -> Port {
    let role = match p.role {
        Role::Legacy | Role::InternetAccess => ROLE_LEGACY,
        Role::Extranet | Role::Tunnel => ROLE_EXTRANET,
    };
    let is_slow = slow.all.is_some() || slow.vrfs.contains_key(&p.vrf);
    let nat_vrf = config.nat_pools.iter().any(|n| n.inside_vrf == p.vrf || n.outside_vrf == p.vrf)
        || config.services.iter().any(|s| s.inside_vrf == p.vrf || s.outside_vrf == p.vrf);
    let nat_out = config.nat_pools.iter().any(|n| n.outside_vrf == p.vrf)
        || config.services.iter().any(|s| s.outside_vrf == p.vrf);
    let napt_inside = !is_slow && slow.napt_inside.contains(&p.vrf);
    let flags = if is_slow { PORT_SLOW } else { 0 }
        | if napt_inside { PORT_NAPT_INSIDE } else { 0 }
        | if nat_vrf { PORT_FLOWS } else { 0 }
        | if nat_out { PORT_NAT_OUT } else { 0 };
    Port { vrf: p.vrf, role, flags, mtu: p.mtu, ..base }
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
    let physical: Vec<&PortConfig> = config.ports.iter().filter(|p| p.tunnel.is_none()).collect();
    // The interfaces first, one entry each and in slot order: its untagged port, or a bare
    // entry when it only carries VLANs.
    for p in &physical {
        let h = resolve(&p.name).ok_or_else(|| TablesError::NoSuchInterface(p.name.clone()))?;
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
        let h = resolve(&p.name).ok_or_else(|| TablesError::NoSuchInterface(p.name.clone()))?;
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
mod tests {
    use super::*;
    use crate::config::examples::demo;

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
                    rules_count: 1,
                    // The demo's rules are all on IPv4 prefixes.
                    rules6_first: 0,
                    rules6_count: 0,
                    vlan: 0,
                    _pad: 0,
                    parent: 4,
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
                    flags: 0,
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
        // New sessions (NAPT) are the slow path's: a pool's inside sends what sessions may
        // decide there, which is everything but netmapped sources no session can have.
        let napt_ports = |c: &Config| -> Vec<bool> {
            build(c, resolve).unwrap().ports.iter().map(|(_, p)| p.flags & PORT_NAPT_INSIDE != 0).collect()
        };
        let free = |c: &Config| build(c, resolve).unwrap().nat_src[0].2.flags & NETMAP_SESSION_FREE != 0;
        let mut c = demo();
        c.policies[0].action = Action::Napt { pool: "p".into() };
        assert_eq!((slow_ports(&c), napt_ports(&c)), (vec![false, false], vec![true, false]));
        assert!(!free(&c), "no netmap rule: its prefix is NAPT's");
        // The shipped conversions: the netmap rule of a part of the network first, then NAPT
        // for all of it. The netmapped part has no sessions; the program forwards it.
        let mut c = demo();
        c.netmaps[0].inside = "10.20.0.0/26".parse().unwrap();
        c.netmaps[0].outside = "198.18.20.0/26".parse().unwrap();
        c.policies[0].src = Some("10.20.0.0/26".parse().unwrap());
        let napt = Rule {
            name: "lan-napt".into(),
            src: Some("10.20.0.0/24".parse().unwrap()),
            action: Action::Napt { pool: "p".into() },
            ..c.policies[0].clone()
        };
        c.policies.insert(1, napt.clone());
        assert_eq!((slow_ports(&c), napt_ports(&c)), (vec![false, false], vec![true, false]));
        assert!(free(&c));
        // NAPT first: the netmapped sources may have sessions.
        c.policies.swap(0, 1);
        assert!(!free(&c));
        // A netmap rule narrowed to a protocol leaves the rest of the prefix to NAPT.
        c.policies.swap(0, 1);
        c.policies[0].proto = Some(6);
        assert!(!free(&c));
        // Inside a service everything is the slow path's: replies belong to sessions.
        let mut c = demo();
        c.services.push(crate::config::Service {
            name: "s".into(),
            proto: 6,
            inside_vrf: 1,
            inside: "10.20.0.5".parse().unwrap(),
            inside_port: 80,
            outside_vrf: 0,
            outside: "198.18.30.1".parse().unwrap(),
            outside_port: 80,
        });
        assert_eq!((slow_ports(&c), napt_ports(&c)), (vec![true, false], vec![false, false]));
        // More rules than the program scans per VRF.
        let mut c = demo();
        let rule = c.policies[0].clone();
        c.policies.extend((0..MAX_RULES_PER_VRF).map(|i| Rule { name: format!("r{i}"), ..rule.clone() }));
        assert_eq!(slow_ports(&c), [true, false]);
        // ECMP anywhere: everything.
        let mut c = demo();
        let mut second = c.routes[0].clone();
        second.via = Some("198.19.0.3".parse().unwrap());
        c.routes.push(second);
        assert_eq!(slow_ports(&c), [true, true]);
        assert!(SlowScope::of(&c).is_everything(&c));
    }

    /// A demo with IPv6: addresses on both ports, NPTv6 between them, a default route, and
    /// rules for IPv6 (one of them for both families).
    fn demo6() -> Config {
        let mut c = demo();
        c.ports[0].addresses.push("fd20::1/64".parse().unwrap());
        c.ports[1].addresses.push("2001:db8:19::1/64".parse().unwrap());
        c.nptv6.push(crate::config::Nptv6 {
            inside_vrf: 1,
            inside: "fd20::/48".parse().unwrap(),
            outside_vrf: 0,
            outside: "2001:db8:20::/48".parse().unwrap(),
        });
        c.routes.push(crate::config::RouteConfig {
            vrf: 0,
            prefix: "::/0".parse().unwrap(),
            port: "uplink0".into(),
            via: Some("2001:db8:19::2".parse().unwrap()),
        });
        let rule = |name: &str, vrf: u32, dst: Option<&str>, action: Action| Rule {
            name: name.into(),
            vrf,
            src: None,
            dst: dst.map(|d| d.parse().unwrap()),
            proto: None,
            src_ports: None,
            dst_ports: None,
            action,
        };
        c.policies.push(rule("npt-out", 1, Some("2001:db8::/32"), Action::Nptv6));
        c.policies.push(rule("npt-in", 0, Some("2001:db8:20::/48"), Action::Nptv6));
        c.policies.push(rule("count-any", 0, None, Action::Count));
        c
    }

    #[test]
    fn ipv6_tables() {
        let t = build(&demo6(), resolve).unwrap();
        assert_eq!(
            t.local6,
            vec![
                V6Key::new(1, "fd20::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
                V6Key::new(0, "2001:db8:19::1".parse::<std::net::Ipv6Addr>().unwrap().octets())
            ]
        );
        // Connected /64s and the default route, keyed behind the 32 VRF bits.
        let bits: Vec<u32> = t.fib6.iter().map(|(b, _, _)| *b).collect();
        assert_eq!(bits, [96, 96, 32]);
        assert_eq!(t.fib6[2].2.ifindex, 5);
        assert_eq!(
            t.nexthops6,
            vec![Neigh6Key {
                ifindex: 5,
                addr: "2001:db8:19::2".parse::<std::net::Ipv6Addr>().unwrap().octets()
            }]
        );
        // NPTv6 both ways, checksum-neutral: the entry computes what `translate::nptv6` does.
        assert_eq!((t.npt_src.len(), t.npt_dst.len()), (1, 1));
        let (bits, key, e) = t.npt_src[0];
        assert_eq!((bits, key.addr[..6].to_vec(), e.vrf_out), (80, vec![0xfd, 0x20, 0, 0, 0, 0], 0));
        let inside: std::net::Ipv6Addr = "fd20:0:0:1234::77".parse().unwrap();
        let want = crate::engine::translate::nptv6(
            inside,
            "fd20::/48".parse().unwrap(),
            "2001:db8:20::/48".parse().unwrap(),
        )
        .unwrap();
        let o = inside.octets();
        let hi = (u64::from_ne_bytes(o[..8].try_into().unwrap()) & !e.mask) | e.to;
        let mut got = o;
        got[..8].copy_from_slice(&hi.to_ne_bytes());
        let w = checksum::nptv6_word(u16::from_ne_bytes([got[6], got[7]]), e.adjust).unwrap();
        got[6..8].copy_from_slice(&w.to_ne_bytes());
        assert_eq!(std::net::Ipv6Addr::from(got), want);
        // IPv6 rules: the IPv4-only demo rules are left out, the any-family count rule is in.
        assert_eq!(
            t.vrf_rules6,
            vec![(0, VrfRules { first: 0, count: 2 }), (1, VrfRules { first: 2, count: 1 })]
        );
        assert_eq!((t.rules6[0].action, t.rules6[0].index), (RULE_NPT6, 3));
        assert_eq!((t.rules6[1].action, t.rules6[1].index), (RULE_COUNT, 4));
        assert_eq!(t.vrf_rules[0].1.count, 2, "the count rule is an IPv4 rule too");
        let legacy = t.ports[0].1;
        assert_eq!((legacy.rules6_first, legacy.rules6_count), (2, 1));
        assert!(t.slow.vrfs.is_empty() && t.slow.all.is_none(), "{:?}", t.slow);
    }

    #[test]
    fn ipv6_route_via_an_ipv4_next_hop_is_flagged() {
        let mut c = demo6();
        c.policies.push(Rule {
            name: "via".into(),
            vrf: 1,
            src: None,
            dst: None,
            proto: None,
            src_ports: None,
            dst_ports: None,
            action: Action::RouteVia { port: "uplink0".into(), via: Some("198.19.0.9".parse().unwrap()) },
        });
        let t = build(&c, resolve).unwrap();
        let r = t.rules6.last().unwrap();
        assert_eq!(
            (r.action, r.flags & RULE_VIA_V4, &r.via_nexthop[..4]),
            (RULE_ROUTE_VIA, RULE_VIA_V4, &[198, 19, 0, 9][..])
        );
        // An IPv6 next hop for a rule IPv4 packets can match is the slow path's.
        c.policies.last_mut().unwrap().action =
            Action::RouteVia { port: "uplink0".into(), via: Some("2001:db8:19::9".parse().unwrap()) };
        assert!(SlowScope::of(&c).vrfs.contains_key(&1));
        c.policies.last_mut().unwrap().dst = Some("2001:db8::/32".parse().unwrap());
        assert!(!SlowScope::of(&c).vrfs.contains_key(&1), "an IPv6-only rule is the program's");
    }

    #[test]
    fn vlan_ports_have_keys_of_their_own_and_send_through_their_interface() {
        let mut c = demo();
        // legacy0 carries only VLAN 100 (VRF 1); uplink0 is untagged and carries VLAN 7 too.
        c.ports[0].vlan = Some(100);
        let mut tagged = c.ports[1].clone();
        tagged.vlan = Some(7);
        tagged.addresses = vec!["198.19.7.1/24".parse().unwrap()];
        c.ports.push(tagged);
        c.routes[0].port = "legacy0.100".into();
        c.routes[0].vrf = 1;
        c.routes[0].via = Some("10.20.0.254".parse().unwrap());
        c.validate().unwrap();
        let t = build(&c, resolve).unwrap();
        let (k100, k7) = (vlan_port_key(0, 100), vlan_port_key(1, 7));
        let keys: Vec<(u32, u16, u16, u32, bool)> =
            t.ports.iter().map(|(i, p)| (*i, p.slot, p.vlan, p.parent, p.flags & PORT_BARE != 0)).collect();
        assert_eq!(
            keys,
            [(4, 0, 0, 4, true), (5, 1, 0, 5, false), (k100, 0, 100, 4, false), (k7, 1, 7, 5, false)]
        );
        assert_eq!(t.interfaces().map(|(i, _)| *i).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(t.ports[2].1.vrf, 1);
        // Addresses and connected routes belong to the VLAN ports; so does a route's egress.
        assert!(t.local.contains(&V4Key::new(0, [198, 19, 7, 1])));
        assert!(t.fib.iter().any(|(_, k, r)| *k == V4Key::new(0, [198, 19, 7, 0]) && r.ifindex == k7));
        assert!(t.fib.iter().any(|(_, k, r)| *k == V4Key::new(1, [10, 20, 0, 0]) && r.ifindex == k100));
        assert_eq!(t.nexthops, [NeighKey { ifindex: k100, addr: [10, 20, 0, 254] }]);
        assert!(t.slow.vrfs.is_empty() && t.slow.all.is_none());
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
