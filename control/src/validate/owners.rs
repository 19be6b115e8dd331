//! One owner per address, plan-wide.
//!
//! Everything the plan hands out goes into one index per address space and family: every
//! node's allocation blocks, and every address a legacy network or a gateway uses (netmap
//! targets, NAPT pools, published addresses, extranet and internet-access interface addresses).
//! Sorted by start (wider first), the index is swept once with a stack of the blocks that
//! contain the current position: whatever contains an item is on the stack, and its top is the
//! innermost. So n items cost n log n, and every overlap is seen, across the whole tree.
//!
//! The rules, where an item lies inside the innermost item containing it:
//! - a block inside a block: the same zone, and the outer one's node is above the inner one's
//!   (a child's block inside its ancestor's). Anything else (two nodes in different subtrees,
//!   a public block inside an internet-access one, two blocks of one node) has two owners;
//! - a use inside a block: the block is its own node's (a use inside a child's block, or
//!   another subtree's, is someone else's address);
//! - anything inside a use: two owners, except services sharing one address that one gateway
//!   publishes (different ports, checked with the services);
//! - a partial overlap is two owners.
//!
//! Two owners are reported at both places, each naming the other.

use std::cmp::Reverse;

use ipnet::IpNet;

use super::{
    Ctx,
    allocations::{Zone, blocks},
};
use crate::{diagnostics::quote, model::InterfaceRole};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Block,
    /// Must lie in its node's own blocks; that is checked with its kind (so not again here).
    Use {
        shared: bool,
        checked_elsewhere: bool,
    },
}

struct Item {
    /// Address space: dedicated VPNs of one department, or the extranet and internet-access
    /// areas together (both are real plan addresses); and the family.
    space: (Option<String>, bool),
    start: u128,
    end: u128,
    kind: Kind,
    zone: Zone,
    node: usize,
    path: String,
    /// "netmap target 198.18.20.0/24 of legacy network \"city-hall\" (node 430100)".
    label: String,
    /// Who hands a shared address out: the gateway serving the service's network (or, when
    /// none does yet, the network itself). Services may share an address only within one owner.
    owner: String,
}

fn range(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (u32::from(n.network()) as u128, u32::from(n.broadcast()) as u128),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn item(zone: Zone, net: IpNet, kind: Kind, node: usize, path: String, label: String) -> Item {
    let space = (
        match &zone {
            Zone::Dedicated(d) => Some(d.clone()),
            Zone::Public | Zone::Internet => None,
        },
        matches!(net, IpNet::V6(_)),
    );
    let (start, end) = range(&net);
    Item { space, start, end, kind, zone, node, path, label, owner: String::new() }
}

/// The index: every block and every use of the plan.
fn collect(cx: &Ctx) -> Vec<Item> {
    // Legacy network → the gateway serving it (the first; a second is an error of its own).
    let mut served: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for t in &cx.tree.nodes {
        for g in &t.node.gateways {
            for itf in &g.interfaces {
                if let (InterfaceRole::Legacy | InterfaceRole::Tunnel, Some(n)) = (itf.role, &itf.network) {
                    served.entry(n.as_str()).or_insert(g.id.as_str());
                }
            }
        }
    }
    let mut items = Vec::new();
    let used = |shared| Kind::Use { shared, checked_elsewhere: true };
    for (i, t) in cx.tree.nodes.iter().enumerate() {
        let code = &t.node.code;
        for b in blocks(&t.node.allocations) {
            let label = format!("{} block {} of node {code}", b.zone.name(), b.net);
            items.push(item(b.zone, b.net, Kind::Block, i, format!("{}.{}", t.path, b.field), label));
        }
        for (k, n) in t.node.legacy_networks.iter().enumerate() {
            let np = format!("{}.legacy_networks[{k}]", t.path);
            let of = format!("of legacy network {} (node {code})", quote(&n.id));
            for (j, m) in n.netmap.iter().enumerate() {
                let label = format!("netmap target {} {of}", m.to);
                items.push(item(
                    Zone::Public,
                    IpNet::V4(m.to),
                    used(false),
                    i,
                    format!("{np}.netmap[{j}].to"),
                    label,
                ));
            }
            for (j, p) in n.napt.iter().flat_map(|n| n.pool.iter()).enumerate() {
                let label = format!("NAPT pool {p} {of}");
                items.push(item(
                    Zone::Public,
                    IpNet::V4(*p),
                    used(false),
                    i,
                    format!("{np}.napt.pool[{j}]"),
                    label,
                ));
            }
            for (j, s) in n.services.iter().enumerate() {
                let label =
                    format!("published address {} of service {} {of}", s.outside.ip(), quote(&s.name));
                let net = IpNet::from(std::net::IpAddr::V4(*s.outside.ip()));
                let mut it =
                    item(Zone::Public, net, used(true), i, format!("{np}.services[{j}].outside"), label);
                it.owner = match served.get(n.id.as_str()) {
                    Some(g) => format!("gateway {g}"),
                    None => format!("network {}", n.id),
                };
                items.push(it);
            }
        }
        for (k, g) in t.node.gateways.iter().enumerate() {
            for (j, itf) in g.interfaces.iter().enumerate() {
                let zone = match itf.role {
                    InterfaceRole::Extranet => Zone::Public,
                    InterfaceRole::InternetAccess => Zone::Internet,
                    InterfaceRole::Legacy | InterfaceRole::Tunnel => continue,
                };
                let label = format!(
                    "address {} of gateway {}'s interface {} (node {code})",
                    itf.address.addr(),
                    quote(&g.id),
                    quote(&itf.name)
                );
                let path = format!("{}.gateways[{k}].interfaces[{j}].address", t.path);
                // An extranet address may be the backbone's (outside every block); an
                // internet-access one must be in its node's block, checked with the gateway.
                let kind = Kind::Use { shared: false, checked_elsewhere: zone == Zone::Internet };
                items.push(item(
                    zone,
                    IpNet::from(std::net::IpAddr::V4(itf.address.addr())),
                    kind,
                    i,
                    path,
                    label,
                ));
            }
        }
    }
    items
}

/// How many reports one item gets at most: a block that overlaps a thousand others is one
/// mistake, not a thousand.
const REPORTS_PER_ITEM: usize = 3;

pub(super) fn check(cx: &Ctx) {
    let mut items = collect(cx);
    items.sort_by(|a, b| {
        (&a.space, a.start, Reverse(a.end), a.kind != Kind::Block, a.node).cmp(&(
            &b.space,
            b.start,
            Reverse(b.end),
            b.kind != Kind::Block,
            b.node,
        ))
    });
    let mut reported = vec![0usize; items.len()];
    let mut stack: Vec<usize> = Vec::new();
    for x in 0..items.len() {
        while let Some(&t) = stack.last() {
            if items[t].space != items[x].space || items[t].end < items[x].start {
                stack.pop();
            } else {
                break;
            }
        }
        let Some(&t) = stack.last() else {
            stack.push(x);
            continue;
        };
        let (outer, inner) = (&items[t], &items[x]);
        if inner.end > outer.end {
            two_owners(cx, &items, &mut reported, x, t);
            continue;
        }
        match (outer.kind, inner.kind) {
            (Kind::Block, Kind::Block) => {
                let nested = outer.zone == inner.zone && cx.tree.is_ancestor(outer.node, inner.node);
                if !nested {
                    two_owners(cx, &items, &mut reported, x, t);
                }
            }
            (Kind::Block, Kind::Use { checked_elsewhere, .. }) => {
                if outer.zone == inner.zone && outer.node == inner.node {
                    // Its own node's address.
                } else if outer.zone == inner.zone && cx.tree.is_ancestor(outer.node, inner.node) {
                    // In an ancestor's space but not in its own node's blocks.
                    if !checked_elsewhere {
                        let message = format!(
                            "{} lies in {}, not in a block of its own node",
                            inner.label, outer.label
                        );
                        let hint = format!(
                            "use an address of node {}'s own blocks, or one outside every plan block",
                            cx.tree.nodes[inner.node].node.code
                        );
                        let path = inner.path.clone();
                        cx.err(&path, message, Some(hint));
                    }
                } else {
                    two_owners(cx, &items, &mut reported, x, t);
                }
            }
            (Kind::Use { shared: true, .. }, Kind::Use { shared: true, .. })
                if (outer.start, outer.end, &outer.owner) == (inner.start, inner.end, &inner.owner) => {}
            (Kind::Use { .. }, _) => two_owners(cx, &items, &mut reported, x, t),
        }
        stack.push(x);
    }
}

/// Reports `a` and `b` at both places, each naming the other, within each item's budget.
fn two_owners(cx: &Ctx, items: &[Item], reported: &mut [usize], a: usize, b: usize) {
    for (here, there) in [(a, b), (b, a)] {
        if reported[here] >= REPORTS_PER_ITEM {
            continue;
        }
        reported[here] += 1;
        let (h, o) = (&items[here], &items[there]);
        let message = if reported[here] == REPORTS_PER_ITEM {
            format!("{} overlaps {} (and perhaps more): an address has one owner", h.label, o.label)
        } else {
            format!("{} overlaps {}: an address has one owner", h.label, o.label)
        };
        let hint = format!("the other is at {}", cx.place(&o.path));
        let path = h.path.clone();
        cx.err(&path, message, Some(hint));
    }
}
