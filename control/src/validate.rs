//! Plan validation: every rule is checked and every violation reported, each at its place.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{IpNet, Ipv4Net};

use crate::{
    diagnostics::{Diagnostic, Diagnostics},
    load::LoadedPlan,
    model::{InterfaceRole, Node},
};

/// Checks the whole plan. `Ok` means it can be compiled for any of its gateways.
pub fn validate(lp: &LoadedPlan) -> Result<(), Diagnostics> {
    let mut out = Vec::new();
    let nodes = lp.plan.nodes();
    let mut codes = BTreeMap::new();
    let mut network_ids = BTreeMap::new();
    let mut gateway_ids = BTreeMap::new();
    for (path, node) in &nodes {
        if node.code.len() != 6 || !node.code.bytes().all(|b| b.is_ascii_digit()) {
            out.push(lp.error(
                &format!("{path}.code"),
                format!("node code {:?} is not a GB/T 2260 division code", node.code),
                Some("use the six-digit code, quoted: code: \"430100\"".into()),
            ));
        }
        if let Some(first) = codes.insert(node.code.clone(), path.clone()) {
            out.push(lp.error(
                &format!("{path}.code"),
                format!("node code {} is used twice", node.code),
                Some(format!("first used at {first}")),
            ));
        }
        for (i, n) in node.legacy_networks.iter().enumerate() {
            if n.id == crate::model::INTERNET_ACCESS {
                out.push(lp.error(
                    &format!("{path}.legacy_networks[{i}].id"),
                    format!("{:?} names the internet-access area's VRF", n.id),
                    Some("choose another id".into()),
                ));
            }
            if network_ids.insert(n.id.clone(), ()).is_some() {
                out.push(lp.error(
                    &format!("{path}.legacy_networks[{i}].id"),
                    format!("legacy network id {:?} is used twice", n.id),
                    None,
                ));
            }
        }
        for (i, g) in node.gateways.iter().enumerate() {
            if gateway_ids.insert(g.id.clone(), ()).is_some() {
                out.push(lp.error(
                    &format!("{path}.gateways[{i}].id"),
                    format!("gateway id {:?} is used twice", g.id),
                    None,
                ));
            }
        }
        let above: BTreeSet<String> = crate::policy::ancestry(&lp.plan.nodes, &node.code)
            .iter()
            .filter(|n| n.code != node.code)
            .flat_map(|n| n.departments.iter().map(|d| d.id.clone()))
            .collect();
        check_allocations(lp, path, node, &above, &mut out);
        check_legacy_networks(lp, path, node, &mut out);
        check_gateways(lp, path, node, &mut out);
        check_policies(lp, path, node, &mut out);
    }
    let mut operators = BTreeSet::new();
    for (i, o) in lp.plan.operators.iter().enumerate() {
        let op = format!("operators[{i}]");
        if o.id.is_empty() || !operators.insert(o.id.as_str()) {
            out.push(lp.error(
                &format!("{op}.id"),
                format!("operator {:?} must be non-empty and unique", o.id),
                None,
            ));
        }
        if !codes.contains_key(&o.scope) {
            out.push(lp.error(
                &format!("{op}.scope"),
                format!("scope {:?} is not a node of the plan", o.scope),
                Some("use a node code, quoted".into()),
            ));
        }
    }
    if out.is_empty() { Ok(()) } else { Err(Diagnostics(out)) }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn overlaps_ip(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Allocations per zone: host bits, children inside the parent (per zone and family), siblings
/// disjoint per zone, public and internet-access areas apart, departments declared, and levels
/// descending down the tree.
fn check_allocations(
    lp: &LoadedPlan,
    path: &str,
    node: &Node,
    ancestors_departments: &BTreeSet<String>,
    out: &mut Vec<Diagnostic>,
) {
    let mine = node.allocations.blocks();
    for (_, field, block) in &mine {
        host_bits(lp, &format!("{path}.{field}"), *block, out);
    }
    // The public and internet-access areas are both real plan addresses: never the same ones.
    for (zone, field, block) in &mine {
        if zone != "internet" {
            continue;
        }
        if let Some((_, _, p)) = mine.iter().find(|(z, _, p)| z == "public" && overlaps_ip(p, block)) {
            out.push(lp.error(
                &format!("{path}.{field}"),
                format!("internet-access {block} overlaps public {p}"),
                None,
            ));
        }
    }
    let mut departments: BTreeSet<String> = ancestors_departments.clone();
    let mut here = BTreeSet::new();
    for (k, d) in node.departments.iter().enumerate() {
        if !here.insert(d.id.as_str()) {
            out.push(lp.error(
                &format!("{path}.departments[{k}].id"),
                format!("department {:?} appears twice", d.id),
                None,
            ));
        }
        departments.insert(d.id.clone());
    }
    let mut vpns = BTreeSet::new();
    for (k, v) in node.allocations.dedicated.iter().enumerate() {
        let vp = format!("{path}.allocations.dedicated[{k}].department");
        if !departments.contains(&v.department) {
            out.push(lp.error(
                &vp,
                format!("department {:?} is not declared at node {} or above", v.department, node.code),
                Some("add it under departments:".into()),
            ));
        }
        if !vpns.insert(v.department.as_str()) {
            out.push(lp.error(
                &vp,
                format!("department {:?} has two dedicated VPN entries here", v.department),
                None,
            ));
        }
    }
    let mut seen: Vec<(String, IpNet, &str)> = Vec::new();
    for (i, c) in node.children.iter().enumerate() {
        if c.level <= node.level {
            out.push(lp.error(
                &format!("{path}.children[{i}].level"),
                format!(
                    "node {} ({:?}) is below node {} ({:?}) but not at a lower level",
                    c.code, c.level, node.code, node.level
                ),
                Some("the tree runs central > province > prefecture > county".into()),
            ));
        }
        for (zone, field, block) in c.allocations.blocks() {
            let at = format!("{path}.children[{i}].{field}");
            let parent: Vec<&IpNet> = mine
                .iter()
                .filter(|(z, _, p)| *z == zone && same_family(p, &block))
                .map(|(_, _, p)| p)
                .collect();
            if !parent.is_empty() && !parent.iter().any(|p| p.contains(&block)) {
                let list: Vec<String> = parent.iter().map(|p| p.to_string()).collect();
                out.push(lp.error(
                    &at,
                    format!(
                        "{block} of node {} is outside its parent {}'s {zone} allocation",
                        c.code, node.code
                    ),
                    Some(format!("allocate from {}", list.join(", "))),
                ));
            }
            if let Some((_, other, code)) = seen.iter().find(|(z, o, _)| *z == zone && overlaps_ip(o, &block))
            {
                out.push(lp.error(
                    &at,
                    format!("{block} of node {} overlaps {other} of node {code}", c.code),
                    None,
                ));
            }
            seen.push((zone, block, &c.code));
        }
    }
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!((a, b), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)))
}

fn check_legacy_networks(lp: &LoadedPlan, path: &str, node: &Node, out: &mut Vec<Diagnostic>) {
    let mut targets: Vec<(Ipv4Net, String)> = Vec::new();
    for (i, n) in node.legacy_networks.iter().enumerate() {
        let np = format!("{path}.legacy_networks[{i}]");
        for (a, pa) in n.prefixes.iter().enumerate() {
            for pb in &n.prefixes[a + 1..] {
                if overlaps(pa, pb) {
                    out.push(lp.error(
                        &format!("{np}.prefixes[{a}]"),
                        format!("{pa} overlaps {pb} in the same legacy network"),
                        Some("overlap is only allowed between different legacy networks (VRFs)".into()),
                    ));
                }
            }
        }
        for (k, rule) in n.netmap.iter().enumerate() {
            let rp = format!("{np}.netmap[{k}]");
            if rule.from.prefix_len() != rule.to.prefix_len() {
                out.push(lp.error(
                    &format!("{rp}.to"),
                    format!(
                        "netmap maps /{} onto /{}: a 1:1 translation needs equal sizes",
                        rule.from.prefix_len(),
                        rule.to.prefix_len()
                    ),
                    Some(format!("use a /{} target", rule.from.prefix_len())),
                ));
            }
            for (field, net) in [("from", rule.from), ("to", rule.to)] {
                host_bits(lp, &format!("{rp}.{field}"), IpNet::V4(net), out);
            }
            if !n.prefixes.iter().any(|p| p.contains(&rule.from)) {
                out.push(lp.error(
                    &format!("{rp}.from"),
                    format!("{} is not inside legacy network {}'s prefixes", rule.from, n.id),
                    Some(format!("its prefixes are {}", fmt_list(&n.prefixes))),
                ));
            }
            if !node.allocations.public.iter().any(|p| p.contains(&rule.to)) {
                out.push(lp.error(
                    &format!("{rp}.to"),
                    format!("netmap target {} is outside node {}'s public allocation", rule.to, node.code),
                    Some(if node.allocations.public.is_empty() {
                        "give the node an allocations.public block first".into()
                    } else {
                        format!("pick a block inside {}", fmt_list(&node.allocations.public))
                    }),
                ));
            }
            if let Some((_, owner)) = targets.iter().find(|(t, _)| overlaps(t, &rule.to)) {
                out.push(lp.error(
                    &format!("{rp}.to"),
                    format!("netmap target {} is already used by {owner}", rule.to),
                    None,
                ));
            }
            targets.push((rule.to, n.id.clone()));
        }
        check_conversions(lp, &np, node, n, &mut targets, out);
    }
    // Services of different networks may share a plan address, never an address and port.
    let mut published = BTreeMap::new();
    for (i, n) in node.legacy_networks.iter().enumerate() {
        for (k, sv) in n.services.iter().enumerate() {
            if let Some((net, name)) = published.insert((sv.protocol, sv.outside), (&n.id, &sv.name)) {
                out.push(lp.error(
                    &format!("{path}.legacy_networks[{i}].services[{k}].outside"),
                    format!(
                        "{} {} is already published by service {name} of {net}",
                        sv.protocol.name(),
                        sv.outside
                    ),
                    Some("one address and port publishes one service".into()),
                ));
            }
        }
    }
}

/// NAPT pools, published services and isolated subnets of one legacy network.
fn check_conversions(
    lp: &LoadedPlan,
    np: &str,
    node: &Node,
    n: &crate::model::LegacyNetwork,
    targets: &mut Vec<(Ipv4Net, String)>,
    out: &mut Vec<Diagnostic>,
) {
    let in_allocation = |net: &Ipv4Net| node.allocations.public.iter().any(|p| p.contains(net));
    let alloc_hint = || {
        Some(if node.allocations.public.is_empty() {
            "give the node an allocations.public block first".to_string()
        } else {
            format!("pick addresses inside {}", fmt_list(&node.allocations.public))
        })
    };
    if let Some(napt) = &n.napt {
        if napt.pool.is_empty() {
            out.push(lp.error(
                &format!("{np}.napt.pool"),
                "a NAPT pool needs at least one plan prefix",
                None,
            ));
        }
        for (k, p) in napt.pool.iter().enumerate() {
            let pp = format!("{np}.napt.pool[{k}]");
            host_bits(lp, &pp, IpNet::V4(*p), out);
            if !in_allocation(p) {
                out.push(lp.error(
                    &pp,
                    format!("NAPT pool {p} is outside node {}'s public allocation", node.code),
                    alloc_hint(),
                ));
            }
            if let Some((_, owner)) = targets.iter().find(|(t, _)| overlaps(t, p)) {
                out.push(lp.error(
                    &pp,
                    format!("NAPT pool {p} overlaps plan addresses already used by {owner}"),
                    None,
                ));
            }
            targets.push((*p, n.id.clone()));
        }
        if napt.block_size.is_some_and(|b| b == 0 || b > 64512) {
            out.push(lp.error(&format!("{np}.napt.block_size"), "a port block holds 1-64512 ports", None));
        }
        if napt.deterministic && n.prefixes.len() != 1 {
            out.push(lp.error(
                &format!("{np}.prefixes"),
                "deterministic NAPT maps exactly one inside prefix",
                Some("split the network, or use dynamic NAPT".into()),
            ));
        } else if napt.deterministic {
            // Every inside host owns one block: the pool must hold as many blocks as hosts.
            let hosts = 1u64 << (32 - n.prefixes[0].prefix_len());
            let block = napt.block_size.unwrap_or(256).max(1) as u64;
            let addresses: u64 = napt.pool.iter().map(|p| 1u64 << (32 - p.prefix_len())).sum();
            let blocks = addresses * ((65535 - 1024 + 1) / block);
            if blocks < hosts {
                out.push(lp.error(
                    &format!("{np}.napt.pool"),
                    format!("deterministic NAPT of {} ({hosts} hosts) needs {hosts} port blocks; this pool holds {blocks}", n.prefixes[0]),
                    Some(format!("add addresses (about {} more) or use smaller blocks", (hosts - blocks).div_ceil(64512 / block))),
                ));
            }
        }
    }
    let mut names = BTreeSet::new();
    for (k, sv) in n.services.iter().enumerate() {
        let sp = format!("{np}.services[{k}]");
        if !names.insert(sv.name.as_str()) {
            out.push(lp.error(&format!("{sp}.name"), format!("service {:?} appears twice", sv.name), None));
        }
        if !n.prefixes.iter().any(|p| p.contains(sv.inside.ip())) {
            out.push(lp.error(
                &format!("{sp}.inside"),
                format!("{} is not inside legacy network {}'s prefixes", sv.inside.ip(), n.id),
                Some(format!("its prefixes are {}", fmt_list(&n.prefixes))),
            ));
        }
        let outside = Ipv4Net::from(*sv.outside.ip());
        if !in_allocation(&outside) {
            out.push(lp.error(
                &format!("{sp}.outside"),
                format!("{} is outside node {}'s public allocation", sv.outside.ip(), node.code),
                alloc_hint(),
            ));
        }
        if let Some((_, owner)) =
            targets.iter().find(|(t, o)| overlaps(t, &outside) && !o.starts_with("service "))
        {
            out.push(lp.error(
                &format!("{sp}.outside"),
                format!("{} is already used by {owner}", sv.outside.ip()),
                None,
            ));
        }
        if sv.inside.port() == 0 || sv.outside.port() == 0 {
            out.push(lp.error(&sp, "a published service needs non-zero ports", None));
        }
        targets.push((outside, format!("service {}", sv.name)));
    }
    for (k, iso) in n.isolated.iter().enumerate() {
        let ip = format!("{np}.isolated[{k}]");
        host_bits(lp, &ip, IpNet::V4(*iso), out);
        if !n.prefixes.iter().any(|p| p.contains(iso)) {
            out.push(lp.error(
                &ip,
                format!("isolated {iso} is not inside legacy network {}'s prefixes", n.id),
                None,
            ));
        }
    }
}

fn check_gateways(lp: &LoadedPlan, path: &str, node: &Node, out: &mut Vec<Diagnostic>) {
    let networks: BTreeSet<&str> = node.legacy_networks.iter().map(|n| n.id.as_str()).collect();
    for (i, g) in node.gateways.iter().enumerate() {
        let gp = format!("{path}.gateways[{i}]");
        let mut names = BTreeSet::new();
        for (k, itf) in g.interfaces.iter().enumerate() {
            let ip = format!("{gp}.interfaces[{k}]");
            if itf.vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
                out.push(lp.error(&format!("{ip}.vlan"), "a VLAN id is 1-4094", None));
            }
            if !names.insert((itf.name.as_str(), itf.vlan)) {
                out.push(lp.error(
                    &format!("{ip}.name"),
                    match itf.vlan {
                        Some(v) => format!("interface {:?} VLAN {v} appears twice", itf.name),
                        None => format!("interface {:?} appears twice", itf.name),
                    },
                    None,
                ));
            }
            if itf.name.is_empty() || itf.name.len() > 15 || itf.name.contains(['/', ' ']) {
                out.push(lp.error(
                    &format!("{ip}.name"),
                    format!("{:?} is not a valid Linux interface name", itf.name),
                    Some("1-15 bytes, no '/' or spaces".into()),
                ));
            }
            match (itf.role, &itf.network) {
                (InterfaceRole::Legacy, None) => out.push(lp.error(
                    &ip,
                    "a legacy interface must name its legacy network",
                    Some(format!("add network: one of {}", fmt_names(&networks))),
                )),
                (InterfaceRole::Legacy, Some(n)) if !networks.contains(n.as_str()) => out.push(lp.error(
                    &format!("{ip}.network"),
                    format!("legacy network {n:?} is not defined at node {}", node.code),
                    Some(format!("defined here: {}", fmt_names(&networks))),
                )),
                (InterfaceRole::Tunnel, Some(n)) if !networks.contains(n.as_str()) => out.push(lp.error(
                    &format!("{ip}.network"),
                    format!("legacy network {n:?} is not defined at node {}", node.code),
                    Some(format!(
                        "defined here: {}; or leave network: out to carry the extranet",
                        fmt_names(&networks)
                    )),
                )),
                (InterfaceRole::Extranet | InterfaceRole::InternetAccess, Some(_)) => out.push(lp.error(
                    &format!("{ip}.network"),
                    "an extranet or internet-access interface belongs to no legacy network",
                    Some("remove network:".into()),
                )),
                _ => {}
            }
            match (itf.role, &itf.tunnel) {
                (InterfaceRole::Tunnel, None) => out.push(lp.error(
                    &ip,
                    "a tunnel interface needs its ends",
                    Some("add tunnel: { local: <an extranet interface's address>, remote: <peer> }".into()),
                )),
                (InterfaceRole::Tunnel, Some(t)) => {
                    let extranet = |i: &&crate::model::Interface| i.role == InterfaceRole::Extranet;
                    if !g.interfaces.iter().filter(extranet).any(|i| i.address.addr() == t.local) {
                        out.push(lp.error(
                            &format!("{ip}.tunnel.local"),
                            format!("tunnel source {} is not the address of an extranet interface of {}", t.local, g.id),
                            Some("the tunnel's packets leave by the extranet: use that interface's address".into()),
                        ));
                    }
                    if itf.vlan.is_some() {
                        out.push(lp.error(&format!("{ip}.vlan"), "a tunnel interface has no VLAN", None));
                    }
                }
                (_, Some(_)) => out.push(lp.error(
                    &format!("{ip}.tunnel"),
                    "only an interface with role tunnel has tunnel ends",
                    Some("set role: tunnel, or remove tunnel:".into()),
                )),
                (_, None) => {}
            }
            let internet = &node.allocations.internet;
            if itf.role == InterfaceRole::InternetAccess
                && !internet.iter().any(|b| b.contains(&itf.address.addr()))
            {
                out.push(lp.error(
                    &format!("{ip}.address"),
                    format!("{} is outside node {}'s internet-access allocation", itf.address, node.code),
                    Some(if internet.is_empty() {
                        "give the node an allocations.internet block first".into()
                    } else {
                        format!("pick an address inside {}", fmt_list(internet))
                    }),
                ));
            }
        }
        if !g.interfaces.iter().any(|i| i.role == InterfaceRole::Extranet) {
            out.push(lp.error(
                &format!("{gp}.interfaces"),
                format!("gateway {} has no extranet interface", g.id),
                None,
            ));
        }
        for (k, r) in g.routes.iter().enumerate() {
            host_bits(lp, &format!("{gp}.routes[{k}].prefix"), IpNet::V4(r.prefix), out);
            let on_link =
                g.interfaces.iter().any(|i| i.zone() == r.network.as_deref() && i.address.contains(&r.via));
            if !on_link {
                out.push(lp.error(
                    &format!("{gp}.routes[{k}].via"),
                    format!(
                        "next hop {} is not on the subnet of any {} interface",
                        r.via,
                        r.network.as_deref().unwrap_or("extranet")
                    ),
                    Some("a next hop must be directly reachable from one of the gateway's interfaces".into()),
                ));
            }
        }
    }
}

/// Operator policy rules at a node: unique names, networks of its subtree, parsable fields.
fn check_policies(lp: &LoadedPlan, path: &str, node: &Node, out: &mut Vec<Diagnostic>) {
    let mut subtree = Vec::new();
    node.walk(String::new(), &mut subtree);
    let networks: BTreeSet<&str> = node
        .legacy_networks
        .iter()
        .chain(subtree.iter().flat_map(|(_, n)| n.legacy_networks.iter()))
        .map(|n| n.id.as_str())
        .collect();
    let mut names = BTreeSet::new();
    for (i, r) in node.policies.iter().enumerate() {
        let rp = format!("{path}.policies[{i}]");
        if r.name.is_empty() || r.name.contains(':') || !names.insert(r.name.as_str()) {
            out.push(lp.error(
                &format!("{rp}.name"),
                format!("policy name {:?} must be non-empty, without ':', and unique at its node", r.name),
                None,
            ));
        }
        if let Some(n) = &r.network {
            if !networks.contains(n.as_str()) {
                out.push(lp.error(
                    &format!("{rp}.network"),
                    format!("legacy network {n:?} is not at node {} or below", node.code),
                    Some(format!("networks here: {}", fmt_names(&networks))),
                ));
            }
        }
        for (field, net) in [("from", &r.from), ("to", &r.to)] {
            if let Some(p) = net {
                host_bits(lp, &format!("{rp}.{field}"), IpNet::V4(*p), out);
            }
        }
        let proto = match r.protocol.as_deref().map(crate::policy::protocol) {
            Some(Err(e)) => {
                out.push(lp.error(&format!("{rp}.protocol"), e, None));
                None
            }
            Some(Ok(p)) => Some(p),
            None => None,
        };
        for (field, spec) in [("ports", &r.ports), ("source_ports", &r.source_ports)] {
            let Some(spec) = spec else { continue };
            if let Err(e) = crate::policy::ports(spec) {
                out.push(lp.error(&format!("{rp}.{field}"), e, None));
            }
            if !matches!(proto, Some(6) | Some(17)) {
                out.push(lp.error(&format!("{rp}.{field}"), "ports need protocol tcp or udp", None));
            }
        }
    }
}

/// A prefix written with host bits set (10.0.0.1/24) is almost always a typo for an address or
/// for the network; either way it is not what the plan means.
fn host_bits(lp: &LoadedPlan, at: &str, net: IpNet, out: &mut Vec<Diagnostic>) {
    if net != net.trunc() {
        out.push(lp.error(
            at,
            format!("{net} has host bits set"),
            Some(format!("did you mean {}?", net.trunc())),
        ));
    }
}

fn fmt_list(nets: &[Ipv4Net]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

fn fmt_names(names: &BTreeSet<&str>) -> String {
    if names.is_empty() { "(none)".into() } else { names.iter().copied().collect::<Vec<_>>().join(", ") }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::load::load_str;

    pub(crate) const GOOD: &str = include_str!("../../configs/demo/plan.yaml");

    fn errors(text: &str) -> Vec<String> {
        let lp = load_str(text, Path::new("t.yaml")).unwrap();
        match validate(&lp) {
            Ok(()) => vec![],
            Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn the_demo_plan_is_valid() {
        assert_eq!(errors(GOOD), Vec::<String>::new());
    }

    #[test]
    fn all_errors_are_reported_with_lines() {
        let bad = GOOD
            .replace("to: 198.18.20.0/24", "to: 198.18.20.0/25")
            .replace("via: 198.19.0.2", "via: 192.0.2.1")
            .replace("network: city-hall", "network: city-hal");
        let errs = errors(&bad);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
        assert!(errs[0].starts_with(&format!("t.yaml:{}:", line_of("198.18.20.0/25"))), "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("equal sizes")));
        assert!(errs.iter().any(|e| e.contains("\"city-hal\" is not defined")
            && e.starts_with(&format!("t.yaml:{}:", line_of("network: city-hal")))));
        assert!(errs.iter().any(|e| e.contains("next hop 192.0.2.1")
            && e.starts_with(&format!("t.yaml:{}:", line_of("192.0.2.1")))));
    }

    const CONVERSIONS: &str = include_str!("../../configs/examples/conversions.yaml");

    #[test]
    fn the_conversions_example_is_valid() {
        assert_eq!(errors(CONVERSIONS), Vec::<String>::new());
    }

    #[test]
    fn conversion_mistakes_are_each_named_at_their_place() {
        let cases = [
            (
                "pool: [198.18.40.0/28]",
                "pool: [203.0.113.0/28]",
                "NAPT pool 203.0.113.0/28 is outside node 430102's public allocation",
            ),
            (
                "pool: [198.18.40.0/28]",
                "pool: [198.18.41.0/28]",
                "overlaps plan addresses already used by tax-office",
            ),
            ("pool: [198.18.40.0/28]", "pool: [198.18.40.1/28]", "has host bits set"),
            ("block_size: 512", "block_size: 0", "a port block holds 1-64512 ports"),
            (
                "inside: \"10.0.5.8:8080\"",
                "inside: \"10.9.5.8:8080\"",
                "10.9.5.8 is not inside legacy network tax-office's prefixes",
            ),
            (
                "outside: \"198.18.40.80:80\"",
                "outside: \"198.18.50.80:80\"",
                "198.18.50.80 is outside node 430102's public allocation",
            ),
            (
                "outside: \"198.18.40.80:80\"",
                "outside: \"198.18.40.5:80\"",
                "198.18.40.5 is already used by tax-office",
            ),
            (
                "isolated: [10.0.200.0/24]",
                "isolated: [10.1.200.0/24]",
                "isolated 10.1.200.0/24 is not inside legacy network tax-office's prefixes",
            ),
            (
                "pool: [198.18.40.32/28]",
                "pool: [198.18.40.32/31]",
                "deterministic NAPT of 10.0.0.0/20 (4096 hosts) needs 4096 port blocks; this pool holds 2016",
            ),
            (
                "prefixes: [10.0.0.0/20]",
                "prefixes: [10.0.0.0/21, 10.0.8.0/21]",
                "deterministic NAPT maps exactly one inside prefix",
            ),
            ("vlan: 200", "vlan: 5000", "a VLAN id is 1-4094"),
            ("vlan: 200", "vlan: 100", "appears twice"),
            ("ports: 23, action: deny", "ports: \"23-x\", action: deny", "is not a port or a range"),
            ("ports: \"80-443\"", "ports: \"443-80\"", "port range 443-80 is empty"),
            ("protocol: tcp, ports: 23", "protocol: gre, ports: 23", "\"gre\" is not tcp, udp, icmp"),
            (
                "network: tax-office, protocol: tcp, ports: 23",
                "network: tax-offic, protocol: tcp, ports: 23",
                "legacy network \"tax-offic\" is not at node 430102 or below",
            ),
            ("name: count-web", "name: no-telnet", "must be non-empty, without ':', and unique"),
            (
                "scope: \"430102\", role: operator",
                "scope: \"439999\", role: operator",
                "scope \"439999\" is not a node of the plan",
            ),
            ("id: wang.fang", "id: li.na", "operator \"li.na\" must be non-empty and unique"),
            (
                "local: 198.19.4.1,",
                "local: 198.19.4.9,",
                "tunnel source 198.19.4.9 is not the address of an extranet interface of gw-furong",
            ),
            (
                "address: 203.0.113.2/29",
                "address: 203.0.114.2/29",
                "203.0.114.2/29 is outside node 430102's internet-access allocation",
            ),
            (
                "via: 203.0.113.1, network: internet-access",
                "via: 203.0.113.1, network: internet",
                "next hop 203.0.113.1 is not on the subnet of any internet interface",
            ),
            (
                "- id: clinic",
                "- id: internet-access",
                "\"internet-access\" names the internet-access area's VRF",
            ),
            // Found by control/tests/mutated_plans.rs: these used to pass check and fail compile.
            ("prefix: 0.0.0.0/0", "prefix: 7.0.0.0/0", "7.0.0.0/0 has host bits set"),
            (
                "outside: \"198.18.40.80:80\" }\n",
                "outside: \"198.18.40.80:80\" }\n          - { name: web, protocol: tcp, inside: \"10.0.5.9:80\", outside: \"198.18.40.80:80\" }\n",
                "tcp 198.18.40.80:80 is already published by service portal of tax-office",
            ),
        ];
        for (from, to, want) in cases {
            assert!(CONVERSIONS.contains(from), "fixture lacks {from:?}");
            let bad = CONVERSIONS.replacen(from, to, 1);
            let errs = errors(&bad);
            // The last line with the new text: a duplicate is reported where it repeats.
            let needle = to.lines().last().unwrap();
            let line = bad.lines().collect::<Vec<_>>().iter().rposition(|l| l.contains(needle)).unwrap() + 1;
            assert!(
                errs.iter().any(|e| e.contains(want) && e.starts_with(&format!("t.yaml:{line}:"))),
                "{to:?}: expected {want:?} at line {line}, got {errs:#?}"
            );
        }
        // A malformed socket address is a parse error with its place.
        let bad = CONVERSIONS.replacen("inside: \"10.0.5.8:8080\"", "inside: \"10.0.5.8\"", 1);
        let err = load_str(&bad, Path::new("t.yaml")).unwrap_err();
        assert!(err.0[0].line > 0, "{err}");
    }

    const TREE: &str = include_str!("../../configs/examples/province-tree.yaml");

    #[test]
    fn the_province_tree_example_is_valid() {
        assert_eq!(errors(TREE), Vec::<String>::new());
    }

    #[test]
    fn tree_and_zone_mistakes_are_each_named_at_their_place() {
        let cases = [
            (
                "public: [198.18.44.0/22]",
                "public: [198.20.44.0/22]",
                "198.20.44.0/22 of node 430103 is outside its parent 430100's public allocation",
            ),
            (
                "public: [198.18.44.0/22]",
                "public: [198.18.42.0/23]",
                "198.18.42.0/23 of node 430103 overlaps 198.18.40.0/22 of node 430102",
            ),
            (
                "public_v6: [\"2001:db8:4301:100::/56\"]",
                "public_v6: [\"2001:db8:4302::/56\"]",
                "2001:db8:4302::/56 of node 430102 is outside its parent 430100's public allocation",
            ),
            (
                "public_v6: [\"2001:db8:4301::/48\"]",
                "public_v6: [\"2001:db8:4301::1/48\"]",
                "has host bits set",
            ),
            (
                "internet: [203.0.113.0/24]",
                "internet: [198.18.0.0/24]",
                "internet-access 198.18.0.0/24 overlaps public 198.18.0.0/15",
            ),
            (
                "- { department: tax, ipv4: [10.201.0.0/16] }",
                "- { department: taxes, ipv4: [10.201.0.0/16] }",
                "department \"taxes\" is not declared at node 430200 or above",
            ),
            (
                "- { department: tax, ipv4: [10.201.0.0/16] }",
                "- { department: tax, ipv4: [10.210.0.0/16] }",
                "10.210.0.0/16 of node 430200 is outside its parent 430000's dedicated:tax allocation",
            ),
            (
                "- { id: health, name: Health Commission }",
                "- { id: tax, name: Health Commission }",
                "department \"tax\" appears twice",
            ),
        ];
        for (from, to, want) in cases {
            assert!(TREE.contains(from), "fixture lacks {from:?}");
            let bad = TREE.replacen(from, to, 1);
            let errs = errors(&bad);
            let anchor = to.lines().next().unwrap();
            let line = bad.lines().collect::<Vec<_>>().iter().rposition(|l| l.contains(anchor)).unwrap() + 1;
            assert!(
                errs.iter().any(|e| e.contains(want) && e.starts_with(&format!("t.yaml:{line}:"))),
                "{to:?}: expected {want:?} at line {line}, got {errs:#?}"
            );
        }
        // A county whose child is no lower than itself: the child's level line.
        let bad = TREE.replacen(
            "name: Tianxin District\n            level: county",
            "name: Tianxin District\n            level: prefecture",
            1,
        );
        let line = bad.lines().position(|l| l.contains("Tianxin")).unwrap() + 2;
        let errs = errors(&bad);
        assert!(
            errs.iter().any(|e| e.contains(
                "node 430103 (Prefecture) is below node 430100 (Prefecture) but not at a lower level"
            ) && e.starts_with(&format!("t.yaml:{line}:"))),
            "{errs:#?}"
        );
    }

    #[test]
    fn netmap_target_outside_allocation_is_rejected() {
        let errs = errors(&GOOD.replace("to: 198.18.20.0/24", "to: 203.0.113.0/24"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("outside node 430100's public allocation"), "{errs:#?}");
        let line = GOOD.lines().position(|l| l.contains("to: 198.18.20.0/24")).unwrap() + 1;
        assert!(errs[0].starts_with(&format!("t.yaml:{line}:")), "{errs:#?}");
    }
}
