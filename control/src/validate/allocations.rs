//! The tree and what the plan gives each node: levels that descend, departments declared before
//! their VPNs are, and every block inside the blocks of the nearest node above it that has any
//! in the same zone and family. Overlaps between nodes are the plan-wide index's business
//! ([`super::owners`]).

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::Ctx;
use crate::{
    diagnostics::{near_miss, quote},
    model::Allocations,
    special_use::Usage,
};

/// An address space a block belongs to. Public and internet-access blocks are both real plan
/// addresses (one space, two zones); each department's VPNs are a space of their own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zone {
    Public,
    Internet,
    Dedicated(String),
}

impl Zone {
    pub fn name(&self) -> String {
        match self {
            Zone::Public => "public".into(),
            Zone::Internet => "internet-access".into(),
            Zone::Dedicated(d) => format!("dedicated (department {})", quote(d)),
        }
    }
}

/// One block of a node's allocations.
pub struct Block {
    pub zone: Zone,
    /// Under the node: `allocations.public[0]`.
    pub field: String,
    pub net: IpNet,
}

/// Every block of `a`, in document order.
pub fn blocks(a: &Allocations) -> Vec<Block> {
    let mut out = Vec::new();
    let mut add = |zone: Zone, field: String, nets: Vec<IpNet>| {
        for (i, net) in nets.into_iter().enumerate() {
            out.push(Block { zone: zone.clone(), field: format!("{field}[{i}]"), net });
        }
    };
    add(Zone::Public, "allocations.public".into(), a.public.iter().map(|n| IpNet::V4(*n)).collect());
    add(Zone::Public, "allocations.public_v6".into(), a.public_v6.iter().map(|n| IpNet::V6(*n)).collect());
    add(Zone::Internet, "allocations.internet".into(), a.internet.iter().map(|n| IpNet::V4(*n)).collect());
    add(
        Zone::Internet,
        "allocations.internet_v6".into(),
        a.internet_v6.iter().map(|n| IpNet::V6(*n)).collect(),
    );
    for (k, d) in a.dedicated.iter().enumerate() {
        let zone = Zone::Dedicated(d.department.clone());
        add(
            zone.clone(),
            format!("allocations.dedicated[{k}].ipv4"),
            d.ipv4.iter().map(|n| IpNet::V4(*n)).collect(),
        );
        add(zone, format!("allocations.dedicated[{k}].ipv6"), d.ipv6.iter().map(|n| IpNet::V6(*n)).collect());
    }
    out
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!((a, b), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)))
}

pub(super) fn check(cx: &Ctx) {
    let all: Vec<Vec<Block>> = cx.tree.nodes.iter().map(|t| blocks(&t.node.allocations)).collect();
    for i in 0..cx.tree.nodes.len() {
        let (path, node) = (cx.tree.nodes[i].path.clone(), cx.tree.nodes[i].node);
        if let Some(p) = cx.tree.nodes[i].parent {
            let parent = cx.tree.nodes[p].node;
            if node.level <= parent.level {
                cx.err(
                    &format!("{path}.level"),
                    format!(
                        "node {} ({}) is below node {} ({}) but not at a lower level",
                        node.code,
                        node.level.name(),
                        parent.code,
                        parent.level.name()
                    ),
                    Some("the tree runs central > province > prefecture > county".into()),
                );
            }
        }
        // Departments: declared once per node; a VPN names one declared here or above.
        let mut here = BTreeSet::new();
        for (k, d) in node.departments.iter().enumerate() {
            if !here.insert(d.id.as_str()) {
                cx.err(
                    &format!("{path}.departments[{k}].id"),
                    format!("department {} appears twice", quote(&d.id)),
                    None,
                );
            }
        }
        let declared: BTreeSet<&str> = std::iter::once(i)
            .chain(cx.tree.above(i))
            .flat_map(|a| cx.tree.nodes[a].node.departments.iter().map(|d| d.id.as_str()))
            .collect();
        let mut vpns = BTreeSet::new();
        for (k, v) in node.allocations.dedicated.iter().enumerate() {
            let at = format!("{path}.allocations.dedicated[{k}].department");
            if !declared.contains(v.department.as_str()) {
                let hint = near_miss(&v.department, declared.iter().copied())
                    .unwrap_or_else(|| "declare it under departments: here or above".into());
                cx.err(
                    &at,
                    format!(
                        "department {} is not declared at node {} or above",
                        quote(&v.department),
                        node.code
                    ),
                    Some(hint),
                );
            }
            if !vpns.insert(v.department.as_str()) {
                cx.err(
                    &at,
                    format!("department {} has two dedicated VPN entries here", quote(&v.department)),
                    None,
                );
            }
        }
        for b in &all[i] {
            let at = format!("{path}.{}", b.field);
            cx.host_bits(|| at.clone(), b.net);
            let usage = if matches!(b.zone, Zone::Dedicated(_)) { Usage::Dedicated } else { Usage::Plan };
            cx.special(|| at.clone(), || format!("{} block", b.zone.name()), b.net, usage);
            // Inside the nearest node above that has blocks of this zone and family.
            let outer = cx.tree.above(i).find_map(|a| {
                let theirs: Vec<&IpNet> = all[a]
                    .iter()
                    .filter(|o| o.zone == b.zone && same_family(&o.net, &b.net))
                    .map(|o| &o.net)
                    .collect();
                (!theirs.is_empty()).then_some((a, theirs))
            });
            if let Some((a, theirs)) = outer {
                if !theirs.iter().any(|o| o.contains(&b.net)) {
                    let whose = if Some(a) == cx.tree.nodes[i].parent {
                        format!("its parent {}'s", cx.tree.nodes[a].node.code)
                    } else {
                        format!(
                            "node {}'s (the nearest node above it with such blocks)",
                            cx.tree.nodes[a].node.code
                        )
                    };
                    let list: Vec<String> = theirs.iter().map(|o| o.to_string()).collect();
                    cx.err(
                        &at,
                        format!(
                            "{} of node {} is outside {whose} {} allocation",
                            b.net,
                            node.code,
                            b.zone.name()
                        ),
                        Some(format!("allocate from {}", list.join(", "))),
                    );
                }
            }
        }
    }
}
