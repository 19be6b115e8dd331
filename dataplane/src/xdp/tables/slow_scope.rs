//! What of a config the program leaves to the slow path, and the port entries that say so:
//! the whole gateway, some VRFs, or a NAPT pool's inside where only session-free netmapped
//! sources stay in the program (`PORT_NAPT_INSIDE`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use hutong_common::{
    MAX_RULES, MAX_RULES_PER_VRF, PORT_FLOWS, PORT_NAPT_INSIDE, PORT_NAT_OUT, PORT_SLOW, Port, ROLE_EXTRANET,
    ROLE_LEGACY,
};
use ipnet::IpNet;

use super::v6_only;
use crate::config::{Action, Config, PortConfig, Role};

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

/// Whether no NAT session can have a source in netmap `n`'s inside prefix: in its VRF an
/// unconditional netmap rule covering the prefix comes before every NAPT rule whose source could
/// overlap it, so every packet from there is decided (netmap, or an earlier rule) before a NAPT
/// rule could make a session; and an apply drops sessions its rules would not make
/// (`Engine::adopt`). Then the program may forward such packets itself (`PORT_NAPT_INSIDE`).
pub(super) fn session_free(config: &Config, n: &crate::config::Netmap) -> bool {
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

/// A port's entry: `base` (MAC, slot, interface, VLAN) with its VRF, role, MTU and flags.
pub(super) fn port_entry(config: &Config, slow: &SlowScope, p: &PortConfig, base: Port) -> Port {
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
