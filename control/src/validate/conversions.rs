//! Legacy networks and how each is converted: prefixes, netmap (a bijection), NAPT pools,
//! published services and isolated subnets (absolute: nothing reaches them, whatever else the
//! plan says, and a plan that says otherwise is refused at both places).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::{IpNet, Ipv4Net};

use super::{Ctx, PrefixSet, fmt_list, host, overlapping_pairs};
use crate::{
    diagnostics::quote,
    model::{LegacyNetwork, Node},
    special_use::Usage,
};

/// Ports of the range NAPT hands out in blocks (as the data plane's pools default to).
pub const NAPT_PORTS: u32 = 65535 - 1024 + 1;

pub(super) fn check(cx: &Ctx) {
    for i in 0..cx.tree.nodes.len() {
        let (path, node) = (cx.tree.nodes[i].path.clone(), cx.tree.nodes[i].node);
        for (k, n) in node.legacy_networks.iter().enumerate() {
            network(cx, &format!("{path}.legacy_networks[{k}]"), node, n);
        }
        // Services of different networks may share a plan address, never an address and port.
        let mut published = BTreeMap::new();
        for (k, n) in node.legacy_networks.iter().enumerate() {
            for (j, sv) in n.services.iter().enumerate() {
                if let Some((net, name)) = published.insert((sv.protocol, sv.outside), (&n.id, &sv.name)) {
                    cx.err(
                        &format!("{path}.legacy_networks[{k}].services[{j}].outside"),
                        format!(
                            "{} {} is already published by service {} of legacy network {}",
                            sv.protocol.name(),
                            sv.outside,
                            quote(name),
                            quote(net)
                        ),
                        Some("one address and port publishes one service".into()),
                    );
                }
            }
        }
    }
}

fn network(cx: &Ctx, np: &str, node: &Node, n: &LegacyNetwork) {
    if n.prefixes.is_empty() {
        cx.err(&format!("{np}.prefixes"), format!("legacy network {} has no prefixes", quote(&n.id)), None);
    }
    for (a, p) in n.prefixes.iter().enumerate() {
        let at = format!("{np}.prefixes[{a}]");
        cx.host_bits(|| at.clone(), IpNet::V4(*p));
        cx.special(|| at.clone(), || "legacy prefix".into(), IpNet::V4(*p), Usage::Legacy);
    }
    for (a, b) in overlapping_pairs(&n.prefixes) {
        for (here, there) in [(a, b), (b, a)] {
            cx.err(
                &format!("{np}.prefixes[{here}]"),
                format!("{} overlaps {} in the same legacy network", n.prefixes[here], n.prefixes[there]),
                Some("overlap is only allowed between different legacy networks (VRFs)".into()),
            );
        }
    }
    let inside = |net: &Ipv4Net| n.prefixes.iter().any(|p| p.contains(net));
    let in_allocation = |net: &Ipv4Net| node.allocations.public.iter().any(|p| p.contains(net));
    let alloc_hint = || {
        Some(if node.allocations.public.is_empty() {
            "give the node an allocations.public block first".to_string()
        } else {
            format!("pick addresses inside {}", fmt_list(&node.allocations.public))
        })
    };

    for (k, rule) in n.netmap.iter().enumerate() {
        let rp = format!("{np}.netmap[{k}]");
        if rule.from.prefix_len() != rule.to.prefix_len() {
            cx.err(
                &format!("{rp}.to"),
                format!(
                    "netmap maps /{} onto /{}: a 1:1 translation needs equal sizes",
                    rule.from.prefix_len(),
                    rule.to.prefix_len()
                ),
                Some(format!("use a /{} target", rule.from.prefix_len())),
            );
        }
        cx.host_bits(|| format!("{rp}.from"), IpNet::V4(rule.from));
        cx.host_bits(|| format!("{rp}.to"), IpNet::V4(rule.to));
        cx.special(|| format!("{rp}.to"), || "netmap target".into(), IpNet::V4(rule.to), Usage::Plan);
        if !inside(&rule.from) {
            cx.err(
                &format!("{rp}.from"),
                format!("{} is not inside legacy network {}'s prefixes", rule.from, quote(&n.id)),
                Some(format!("its prefixes are {}", fmt_list(&n.prefixes))),
            );
        }
        if !in_allocation(&rule.to) {
            cx.err(
                &format!("{rp}.to"),
                format!("netmap target {} is outside node {}'s public allocation", rule.to, node.code),
                alloc_hint(),
            );
        }
    }
    // A bijection: one inside address, one outside address. (Targets: plan-wide, in owners.)
    let sources: Vec<Ipv4Net> = n.netmap.iter().map(|r| r.from).collect();
    for (a, b) in overlapping_pairs(&sources) {
        for (here, there) in [(a, b), (b, a)] {
            let hint = format!("the other entry is at {}", cx.place(&format!("{np}.netmap[{there}].from")));
            cx.err(
                &format!("{np}.netmap[{here}].from"),
                format!(
                    "netmap source {} overlaps netmap source {} of the same network: an inside address \
                     would have two outside addresses",
                    sources[here], sources[there]
                ),
                Some(hint),
            );
        }
    }

    if let Some(napt) = &n.napt {
        if napt.pool.is_empty() {
            cx.err(&format!("{np}.napt.pool"), "a NAPT pool needs at least one plan prefix", None);
        }
        for (k, p) in napt.pool.iter().enumerate() {
            let pp = format!("{np}.napt.pool[{k}]");
            cx.host_bits(|| pp.clone(), IpNet::V4(*p));
            cx.special(|| pp.clone(), || "NAPT pool".into(), IpNet::V4(*p), Usage::Plan);
            if !in_allocation(p) {
                cx.err(
                    &pp,
                    format!("NAPT pool {p} is outside node {}'s public allocation", node.code),
                    alloc_hint(),
                );
            }
        }
        for (a, b) in overlapping_pairs(&napt.pool) {
            cx.err(
                &format!("{np}.napt.pool[{b}]"),
                format!("NAPT pool {} overlaps {}", napt.pool[b], napt.pool[a]),
                None,
            );
        }
        let addresses: u64 = napt.pool.iter().map(|p| 1u64 << (32 - p.prefix_len())).sum();
        let most = hutong_config::bounds::MAX_POOL_ADDRESSES;
        if addresses > most {
            cx.err(
                &format!("{np}.napt.pool"),
                format!("this NAPT pool has {addresses} addresses; a pool holds at most {most} (a /16)"),
                Some("a pool's port blocks are listed address by address; split the network".into()),
            );
        }
        if napt.block_size.is_some_and(|b| b == 0 || b as u32 > NAPT_PORTS) {
            cx.err(
                &format!("{np}.napt.block_size"),
                format!("a port block holds 1-{NAPT_PORTS} ports"),
                None,
            );
        }
        if napt.deterministic && n.prefixes.len() != 1 {
            cx.err(
                &format!("{np}.prefixes"),
                "deterministic NAPT maps exactly one inside prefix",
                Some("split the network, or use dynamic NAPT".into()),
            );
        } else if napt.deterministic {
            // Every inside host owns one block: the pool must hold as many blocks as hosts.
            let hosts = 1u64 << (32 - n.prefixes[0].prefix_len());
            let block = napt.block_size.unwrap_or(256).clamp(1, NAPT_PORTS as u16) as u64;
            let addresses: u64 = napt.pool.iter().map(|p| 1u64 << (32 - p.prefix_len())).sum();
            let blocks = addresses * (NAPT_PORTS as u64 / block);
            if blocks < hosts {
                cx.err(
                    &format!("{np}.napt.pool"),
                    format!(
                        "deterministic NAPT of {} ({hosts} hosts) needs {hosts} port blocks; this pool holds {blocks}",
                        n.prefixes[0]
                    ),
                    Some(format!(
                        "add addresses (about {} more) or use smaller blocks",
                        (hosts - blocks).div_ceil(NAPT_PORTS as u64 / block)
                    )),
                );
            }
        }
    }

    let mut names = BTreeSet::new();
    let mut endpoints = BTreeMap::new();
    for (k, sv) in n.services.iter().enumerate() {
        let sp = format!("{np}.services[{k}]");
        if !names.insert(sv.name.as_str()) {
            cx.err(&format!("{sp}.name"), format!("service {} appears twice", quote(&sv.name)), None);
        }
        // Whatever subnet holds a prefix's first or last address has it as its network or
        // broadcast address (no host has it), unless the network's prefixes continue across
        // that edge (10.0.0.255 between 10.0.0.0/24 and 10.0.1.0/24 may be a host of a /23).
        let ip = u32::from(*sv.inside.ip());
        let has =
            |a: Option<u32>| a.is_some_and(|a| n.prefixes.iter().any(|p| p.contains(&Ipv4Addr::from(a))));
        let edge = n.prefixes.iter().find(|p| {
            p.prefix_len() < 31
                && ((u32::from(p.network()) == ip && !has(ip.checked_sub(1)))
                    || (u32::from(p.broadcast()) == ip && !has(ip.checked_add(1))))
        });
        if let Some(p) = edge {
            let what = if p.network() == *sv.inside.ip() { "network" } else { "broadcast" };
            cx.err(
                &format!("{sp}.inside"),
                format!(
                    "service {}'s inside address {} is the {what} address of {p}",
                    quote(&sv.name),
                    sv.inside.ip()
                ),
                Some("a service is published from a host".into()),
            );
        }
        if !n.prefixes.iter().any(|p| p.contains(sv.inside.ip())) {
            cx.err(
                &format!("{sp}.inside"),
                format!("{} is not inside legacy network {}'s prefixes", sv.inside.ip(), quote(&n.id)),
                Some(format!("its prefixes are {}", fmt_list(&n.prefixes))),
            );
        }
        cx.special(
            || format!("{sp}.inside"),
            || "service address".into(),
            host((*sv.inside.ip()).into()),
            Usage::Legacy,
        );
        let outside = Ipv4Net::from(*sv.outside.ip());
        cx.special(
            || format!("{sp}.outside"),
            || "published address".into(),
            IpNet::V4(outside),
            Usage::Plan,
        );
        if !in_allocation(&outside) {
            cx.err(
                &format!("{sp}.outside"),
                format!("{} is outside node {}'s public allocation", sv.outside.ip(), node.code),
                alloc_hint(),
            );
        }
        if sv.inside.port() == 0 || sv.outside.port() == 0 {
            cx.err(&sp, "a published service needs non-zero ports", None);
        }
        // One inside endpoint, one published one: replies must leave from the address contacted.
        if let Some(first) = endpoints.insert((sv.protocol, sv.inside), k) {
            cx.err(
                &format!("{sp}.inside"),
                format!(
                    "{} {} is already published as service {}: replies could not tell which address to leave from",
                    sv.protocol.name(),
                    sv.inside,
                    quote(&n.services[first].name)
                ),
                None,
            );
        }
    }

    for (k, iso) in n.isolated.iter().enumerate() {
        let ip = format!("{np}.isolated[{k}]");
        cx.host_bits(|| ip.clone(), IpNet::V4(*iso));
        cx.special(|| ip.clone(), || "isolated subnet".into(), IpNet::V4(*iso), Usage::Legacy);
        if !inside(iso) {
            cx.err(
                &ip,
                format!("isolated {iso} is not inside legacy network {}'s prefixes", quote(&n.id)),
                None,
            );
        }
    }
    // Isolation is absolute: a netmap or a service reaching into it is a contradiction.
    let isolated = PrefixSet::new(&n.isolated);
    for (j, rule) in n.netmap.iter().enumerate() {
        if let Some(k) = isolated.overlapping(&rule.from) {
            let (ip, rp) = (format!("{np}.isolated[{k}]"), format!("{np}.netmap[{j}].from"));
            contradiction(cx, &ip, &n.isolated[k], &rp, &format!("netmap source {}", rule.from));
        }
    }
    for (j, sv) in n.services.iter().enumerate() {
        if let Some(k) = isolated.overlapping(&Ipv4Net::from(*sv.inside.ip())) {
            let (ip, sp) = (format!("{np}.isolated[{k}]"), format!("{np}.services[{j}].inside"));
            let what = format!("service {}'s inside address {}", quote(&sv.name), sv.inside.ip());
            contradiction(cx, &ip, &n.isolated[k], &sp, &what);
        }
    }
}

/// An isolated subnet and something that would reach into it: an error at both places.
pub(super) fn contradiction(cx: &Ctx, iso_at: &str, iso: &Ipv4Net, other_at: &str, other: &str) {
    let (iso_place, other_place) = (cx.place(iso_at), cx.place(other_at));
    cx.err(
        other_at,
        format!("{other} reaches into isolated subnet {iso}: nothing may cross to or from it"),
        Some(format!("the isolated subnet is declared at {iso_place}; narrow this, or drop the isolation")),
    );
    cx.err(
        iso_at,
        format!("isolated subnet {iso} is reached by {other}"),
        Some(format!("see {other_place}")),
    );
}
