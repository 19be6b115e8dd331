//! Operators' policy rules: unique names at their node, networks of the node's subtree, fields
//! that parse, and no `permit` written for an isolated subnet (isolation wins whatever an
//! operator writes; a rule that says otherwise is refused at both places).

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;

use super::{Ctx, PrefixSet, conversions::contradiction};
use crate::{
    diagnostics::{near_miss, quote},
    model::{LegacyNetwork, PolicyAction},
};

pub(super) fn check(cx: &Ctx) {
    // Legacy network id → (node index, path, network); the first of a repeated id.
    let mut networks: HashMap<&str, (usize, String, &LegacyNetwork)> = HashMap::new();
    for (i, t) in cx.tree.nodes.iter().enumerate() {
        for (k, n) in t.node.legacy_networks.iter().enumerate() {
            networks.entry(n.id.as_str()).or_insert((i, format!("{}.legacy_networks[{k}]", t.path), n));
        }
    }
    let isolated: HashMap<&str, PrefixSet> =
        networks.iter().map(|(id, (_, _, n))| (*id, PrefixSet::new(&n.isolated))).collect();
    for i in 0..cx.tree.nodes.len() {
        let (path, node) = (cx.tree.nodes[i].path.clone(), cx.tree.nodes[i].node);
        let mut names = BTreeSet::new();
        // The networks at this node and below, for hints: gathered once, and only if needed.
        let mut below: Option<Vec<&str>> = None;
        for (k, r) in node.policies.iter().enumerate() {
            let rp = format!("{path}.policies[{k}]");
            if !names.insert(r.name.as_str()) {
                cx.err(
                    &format!("{rp}.name"),
                    format!("policy name {} is used twice at node {}", quote(&r.name), node.code),
                    None,
                );
            }
            if let Some(n) = &r.network {
                match networks.get(n.as_str()) {
                    Some((at, _, _)) if cx.tree.covers(i, *at) => {}
                    _ => {
                        let below = below.get_or_insert_with(|| {
                            (i..cx.tree.nodes[i].end)
                                .flat_map(|j| {
                                    cx.tree.nodes[j].node.legacy_networks.iter().map(|l| l.id.as_str())
                                })
                                .collect()
                        });
                        let hint = near_miss(n, below.iter().copied()).unwrap_or_else(|| {
                            format!("networks here: {}", super::fmt_names(below.iter().copied()))
                        });
                        cx.err(
                            &format!("{rp}.network"),
                            format!("legacy network {} is not at node {} or below", quote(n), node.code),
                            Some(hint),
                        );
                    }
                }
            }
            for (field, net) in [("from", &r.from), ("to", &r.to)] {
                if let Some(p) = net {
                    cx.host_bits(|| format!("{rp}.{field}"), IpNet::V4(*p));
                }
            }
            let proto = match r.protocol.as_deref().map(crate::policy::protocol) {
                Some(Err(e)) => {
                    cx.err(&format!("{rp}.protocol"), e, None);
                    None
                }
                Some(Ok(p)) => Some(p),
                None => None,
            };
            for (field, spec) in [("ports", &r.ports), ("source_ports", &r.source_ports)] {
                let Some(spec) = spec else { continue };
                if let Err(e) = crate::policy::ports(spec) {
                    cx.err(&format!("{rp}.{field}"), e, None);
                }
                if !matches!(proto, Some(6) | Some(17)) {
                    cx.err(
                        &format!("{rp}.{field}"),
                        "ports need protocol tcp or udp",
                        Some("add protocol: tcp or protocol: udp".into()),
                    );
                }
            }
            // A permit in a legacy network's VRF forwards inside it (to its other interfaces,
            // its tunnels): never to or from an isolated subnet. A wider prefix (or none) is
            // carved out by the isolation rules, compiled ahead of every operator's rule; one
            // wholly inside isolated space could only ever mean the opposite of the isolation.
            if let (PolicyAction::Permit, Some(n)) = (r.action, &r.network) {
                let (Some(set), Some((_, np, net))) = (isolated.get(n.as_str()), networks.get(n.as_str()))
                else {
                    continue;
                };
                for (field, m) in [("from", r.from), ("to", r.to)] {
                    let Some(m) = m else { continue };
                    if let Some(j) = set.overlapping(&m).filter(|&j| net.isolated[j].contains(&m)) {
                        let what = format!("permit rule {} ({field} {m})", quote(&r.name));
                        contradiction(
                            cx,
                            &format!("{np}.isolated[{j}]"),
                            &net.isolated[j],
                            &format!("{rp}.{field}"),
                            &what,
                        );
                    }
                }
            }
        }
    }
}
