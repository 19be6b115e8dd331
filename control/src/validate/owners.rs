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

use std::{cmp::Reverse, collections::HashMap};

use ipnet::IpNet;

use super::{Ctx, allocations::Zone};
use crate::{diagnostics::quote, model::InterfaceRole};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Block,
    /// `checked_elsewhere`: that it lies in its node's own blocks is checked with its kind.
    Use {
        shared: bool,
        checked_elsewhere: bool,
    },
}

/// What an item is, by index into its node: enough to name it and place it when (and only
/// when) it is part of a problem. A national plan has half a million items and no problems.
#[derive(Clone, Copy)]
enum Src {
    /// `list`: 0 public, 1 public_v6, 2 internet, 3 internet_v6; `dedicated[k]` ipv4 (4) or
    /// ipv6 (5).
    Block {
        list: u8,
        k: u32,
        i: u32,
    },
    Netmap {
        net: u32,
        k: u32,
    },
    Pool {
        net: u32,
        k: u32,
    },
    Service {
        net: u32,
        k: u32,
    },
    Interface {
        gw: u32,
        k: u32,
    },
}

struct Item {
    /// Address space (0: the extranet's, public and internet-access together, both being real
    /// plan addresses, with any VPN block outside private space; n: department n's private
    /// VPN blocks) and family.
    space: (u32, bool),
    start: u128,
    end: u128,
    kind: Kind,
    /// 0 public, 1 internet-access, n: department n.
    zone: u32,
    node: usize,
    src: Src,
    /// Who hands a shared address out: the gateway serving the service's network (or, when
    /// none does yet, the network itself). Services may share an address only within one owner.
    owner: u32,
}

fn range(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (u32::from(n.network()) as u128, u32::from(n.broadcast()) as u128),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Interns names as small numbers, in order of first use.
#[derive(Default)]
struct Names<'a>(HashMap<&'a str, u32>);

impl<'a> Names<'a> {
    fn id(&mut self, name: &'a str) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(name).or_insert(next)
    }
}

/// The index: every block and every use of the plan.
fn collect(cx: &Ctx) -> Vec<Item> {
    // Legacy network → the gateway serving it (the first; a second is an error of its own).
    let mut served: HashMap<&str, &str> = HashMap::new();
    for t in &cx.tree.nodes {
        for g in &t.node.gateways {
            for itf in &g.interfaces {
                if let (InterfaceRole::Legacy | InterfaceRole::Tunnel, Some(n)) = (itf.role, &itf.network) {
                    served.entry(n.as_str()).or_insert(g.id.as_str());
                }
            }
        }
    }
    let mut departments = Names::default();
    departments.id(""); // 0: the public and internet-access zones' space
    let mut owners = Names::default();
    let mut items = Vec::new();
    let mut push = |zone: u32, net: IpNet, kind: Kind, node: usize, src: Src, owner: u32| {
        // A department's private blocks are its own space; any other block it holds is plan
        // space like the public one (one owner across every zone).
        let own_space = zone >= 2 && crate::special_use::is_private(&net);
        let space = (if own_space { zone } else { 0 }, matches!(net, IpNet::V6(_)));
        let (start, end) = range(&net);
        items.push(Item { space, start, end, kind, zone, node, src, owner });
    };
    let used = |shared| Kind::Use { shared, checked_elsewhere: true };
    for (i, t) in cx.tree.nodes.iter().enumerate() {
        let a = &t.node.allocations;
        for (list, zone, nets) in [
            (0u8, 0, a.public.iter().map(|n| IpNet::V4(*n)).collect::<Vec<_>>()),
            (1, 0, a.public_v6.iter().map(|n| IpNet::V6(*n)).collect()),
            (2, 1, a.internet.iter().map(|n| IpNet::V4(*n)).collect()),
            (3, 1, a.internet_v6.iter().map(|n| IpNet::V6(*n)).collect()),
        ] {
            for (j, net) in nets.into_iter().enumerate() {
                push(zone, net, Kind::Block, i, Src::Block { list, k: 0, i: j as u32 }, 0);
            }
        }
        for (k, d) in a.dedicated.iter().enumerate() {
            let zone = departments.id(&d.department) + 1;
            for (j, n) in d.ipv4.iter().enumerate() {
                push(
                    zone,
                    IpNet::V4(*n),
                    Kind::Block,
                    i,
                    Src::Block { list: 4, k: k as u32, i: j as u32 },
                    0,
                );
            }
            for (j, n) in d.ipv6.iter().enumerate() {
                push(
                    zone,
                    IpNet::V6(*n),
                    Kind::Block,
                    i,
                    Src::Block { list: 5, k: k as u32, i: j as u32 },
                    0,
                );
            }
        }
        for (k, n) in t.node.legacy_networks.iter().enumerate() {
            let net = k as u32;
            for (j, m) in n.netmap.iter().enumerate() {
                push(0, IpNet::V4(m.to), used(false), i, Src::Netmap { net, k: j as u32 }, 0);
            }
            for (j, p) in n.napt.iter().flat_map(|n| n.pool.iter()).enumerate() {
                push(0, IpNet::V4(*p), used(false), i, Src::Pool { net, k: j as u32 }, 0);
            }
            let owner = owners.id(served.get(n.id.as_str()).copied().unwrap_or(n.id.as_str()));
            for (j, s) in n.services.iter().enumerate() {
                let at = IpNet::from(std::net::IpAddr::V4(*s.outside.ip()));
                push(0, at, used(true), i, Src::Service { net, k: j as u32 }, owner);
            }
        }
        for (k, g) in t.node.gateways.iter().enumerate() {
            for (j, itf) in g.interfaces.iter().enumerate() {
                // A tunnel carrying the extranet (no network:) has an extranet address.
                let zone = match (itf.role, itf.zone()) {
                    (InterfaceRole::Extranet, _) | (InterfaceRole::Tunnel, None) => 0,
                    (InterfaceRole::InternetAccess, _) => 1,
                    // A legacy interface without its network is an error of its own.
                    (InterfaceRole::Legacy, _) | (InterfaceRole::Tunnel, Some(_)) => continue,
                };
                // An extranet address may be the backbone's (outside every block); an
                // internet-access one must be in its node's block, checked with the gateway.
                let kind = Kind::Use { shared: false, checked_elsewhere: zone == 1 };
                let at = IpNet::from(std::net::IpAddr::V4(itf.address.addr()));
                push(zone, at, kind, i, Src::Interface { gw: k as u32, k: j as u32 }, 0);
            }
        }
    }
    items
}

/// Where an item is written, and how messages name it.
fn describe(cx: &Ctx, item: &Item) -> (String, String) {
    let t = &cx.tree.nodes[item.node];
    let (node, code) = (t.node, &t.node.code);
    let network = |net: u32| &node.legacy_networks[net as usize];
    let of = |net: u32| format!("of legacy network {} (node {code})", quote(&network(net).id));
    match item.src {
        Src::Block { list, k, i } => {
            let a = &node.allocations;
            let (field, net, zone) = match list {
                0 => (format!("public[{i}]"), IpNet::V4(a.public[i as usize]), Zone::Public),
                1 => (format!("public_v6[{i}]"), IpNet::V6(a.public_v6[i as usize]), Zone::Public),
                2 => (format!("internet[{i}]"), IpNet::V4(a.internet[i as usize]), Zone::Internet),
                3 => (format!("internet_v6[{i}]"), IpNet::V6(a.internet_v6[i as usize]), Zone::Internet),
                _ => {
                    let d = &a.dedicated[k as usize];
                    let zone = Zone::Dedicated(d.department.clone());
                    if list == 4 {
                        (format!("dedicated[{k}].ipv4[{i}]"), IpNet::V4(d.ipv4[i as usize]), zone)
                    } else {
                        (format!("dedicated[{k}].ipv6[{i}]"), IpNet::V6(d.ipv6[i as usize]), zone)
                    }
                }
            };
            (format!("{}.allocations.{field}", t.path), format!("{} block {net} of node {code}", zone.name()))
        }
        Src::Netmap { net, k } => (
            format!("{}.legacy_networks[{net}].netmap[{k}].to", t.path),
            format!("netmap target {} {}", network(net).netmap[k as usize].to, of(net)),
        ),
        Src::Pool { net, k } => {
            let pool = &network(net).napt.as_ref().expect("a pool item has its pool").pool[k as usize];
            (
                format!("{}.legacy_networks[{net}].napt.pool[{k}]", t.path),
                format!("NAPT pool {pool} {}", of(net)),
            )
        }
        Src::Service { net, k } => {
            let s = &network(net).services[k as usize];
            (
                format!("{}.legacy_networks[{net}].services[{k}].outside", t.path),
                format!("published address {} of service {} {}", s.outside.ip(), quote(&s.name), of(net)),
            )
        }
        Src::Interface { gw, k } => {
            let g = &node.gateways[gw as usize];
            let itf = &g.interfaces[k as usize];
            (
                format!("{}.gateways[{gw}].interfaces[{k}].address", t.path),
                format!(
                    "address {} of gateway {}'s interface {} (node {code})",
                    itf.address.addr(),
                    quote(&g.id),
                    quote(&itf.name)
                ),
            )
        }
    }
}

/// How many reports one item gets at most: a block that overlaps a thousand others is one
/// mistake, not a thousand.
const REPORTS_PER_ITEM: usize = 3;

pub(super) fn check(cx: &Ctx) {
    let mut items = collect(cx);
    items.sort_unstable_by(|a, b| {
        (a.space, a.start, Reverse(a.end), a.kind != Kind::Block, a.node, a.zone).cmp(&(
            b.space,
            b.start,
            Reverse(b.end),
            b.kind != Kind::Block,
            b.node,
            b.zone,
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
                        let ((path, label), (_, block)) = (describe(cx, inner), describe(cx, outer));
                        let hint = format!(
                            "use an address of node {}'s own blocks, or one outside every plan block",
                            cx.tree.nodes[inner.node].node.code
                        );
                        cx.err(
                            &path,
                            format!("{label} lies in {block}, not in a block of its own node"),
                            Some(hint),
                        );
                    }
                } else {
                    two_owners(cx, &items, &mut reported, x, t);
                }
            }
            (Kind::Use { shared: true, .. }, Kind::Use { shared: true, .. })
                if (outer.start, outer.end, outer.owner) == (inner.start, inner.end, inner.owner) => {}
            (Kind::Use { .. }, _) => two_owners(cx, &items, &mut reported, x, t),
        }
        stack.push(x);
    }
}

/// Reports `a` and `b` at both places, each naming the other, within each item's budget.
fn two_owners(cx: &Ctx, items: &[Item], reported: &mut [usize], a: usize, b: usize) {
    let (da, db) = (describe(cx, &items[a]), describe(cx, &items[b]));
    for (here, (h_path, h_label), (o_path, o_label)) in [(a, &da, &db), (b, &db, &da)] {
        if reported[here] >= REPORTS_PER_ITEM {
            continue;
        }
        reported[here] += 1;
        let more = if reported[here] == REPORTS_PER_ITEM { " (and perhaps more)" } else { "" };
        let message = format!("{h_label} overlaps {o_label}{more}: an address has one owner");
        cx.err(h_path, message, Some(format!("the other is at {}", cx.place(o_path))));
    }
}
