//! What a gateway's links must allow: next hops and tunnel remotes reachable on a connected
//! subnet of the right VRF, never through a tunnel into itself, and isolated subnets kept off
//! the way.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;

use super::{
    super::{Ctx, PrefixSet, conversions::contradiction, overlapping_pairs},
    network_or_broadcast, node_path, port_key,
};
use crate::{
    diagnostics::quote,
    model::{Gateway, InterfaceRole, Node},
};

/// A gateway's interfaces by VRF (zone), with their subnets indexed.
pub(super) struct Links<'a> {
    pub(super) by_zone: HashMap<Option<&'a str>, (Vec<usize>, PrefixSet)>,
}

impl<'a> Links<'a> {
    pub(super) fn new(g: &'a Gateway) -> Links<'a> {
        let mut ks: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
        for (k, itf) in g.interfaces.iter().enumerate() {
            ks.entry(itf.zone()).or_default().push(k);
        }
        let by_zone = ks
            .into_iter()
            .map(|(zone, ks)| {
                let subnets: Vec<Ipv4Net> = ks.iter().map(|&k| g.interfaces[k].address.trunc()).collect();
                (zone, (ks, PrefixSet::new(&subnets)))
            })
            .collect();
        Links { by_zone }
    }

    /// The index of the interface of `zone` whose subnet holds `addr` (one at most, once the
    /// subnets of a zone are known not to overlap).
    pub(super) fn on_link(&self, zone: Option<&str>, addr: Ipv4Addr) -> Option<usize> {
        let (ks, set) = self.by_zone.get(&zone)?;
        set.overlapping(&Ipv4Net::from(addr)).map(|i| ks[i])
    }
}

/// A tunnel's packets travel the extranet to its remote, a peer's address: not the network or
/// broadcast address of a subnet the gateway is on; and if the gateway's best way to the
/// remote is a tunnel (its subnet, or a route whose next hop is on it), the packets would be
/// sent into a tunnel again, never out. Longest prefix first, as the data plane routes.
pub(super) fn tunnel_remotes(cx: &Ctx, gp: &str, g: &Gateway, links: &Links) {
    let tunnels: Vec<usize> = (0..g.interfaces.len()).filter(|&k| g.interfaces[k].tunnel.is_some()).collect();
    if tunnels.is_empty() {
        return;
    }
    // Extranet routes by prefix (the first of equal ones), each with the interface its next
    // hop is on.
    let mut routes: HashMap<Ipv4Net, usize> = HashMap::new();
    for r in g.routes.iter().filter(|r| r.network.is_none()) {
        if let Some(k) = links.on_link(None, r.via) {
            routes.entry(r.prefix.trunc()).or_insert(k);
        }
    }
    for k in tunnels {
        let Some(t) = &g.interfaces[k].tunnel else { continue };
        let at = format!("{gp}.interfaces[{k}].tunnel.remote");
        let connected = links.on_link(None, t.remote).map(|i| (g.interfaces[i].address.prefix_len(), i));
        if let Some((_, i)) = connected {
            let subnet = g.interfaces[i].address.trunc();
            if let Some(what) = network_or_broadcast(&subnet, t.remote) {
                cx.err(
                    &at,
                    format!("tunnel remote {} is {what} of {subnet}", t.remote),
                    Some("the remote is the peer's extranet address".into()),
                );
            }
        }
        let routed = (0..=32u8).rev().find_map(|len| {
            let p = Ipv4Net::new(t.remote, len).ok()?.trunc();
            routes.get(&p).map(|&i| (len, i))
        });
        let best = match (connected, routed) {
            (Some(c), Some(r)) => Some(if r.0 > c.0 { r } else { c }),
            (c, r) => c.or(r),
        };
        if let Some((len, via)) = best.filter(|(_, i)| g.interfaces[*i].role == InterfaceRole::Tunnel) {
            cx.err(
                &at,
                format!(
                    "tunnel remote {} is reached through tunnel {} (its best route is a /{len}): the tunnel's packets would never leave by the extranet",
                    t.remote,
                    quote(&g.interfaces[via].name)
                ),
                Some("route the remote by an extranet interface".into()),
            );
        }
    }
}

/// A next hop inside an isolated subnet would have the gateway hand packets to an isolated
/// host: a contradiction, at both places.
pub(super) fn isolated_hop(
    cx: &Ctx,
    rp: &str,
    node: &Node,
    networks: &BTreeMap<&str, usize>,
    zone: Option<&str>,
    via: Ipv4Addr,
) {
    if let Some(&k) = zone.and_then(|z| networks.get(z)) {
        isolated_address(cx, rp, node, k, via, &format!("{rp}.via"), &format!("next hop {via}"));
    }
}

/// `addr`, written at `at` by something of a gateway (`gateway_part`), inside an isolated
/// subnet of the node's network `k`: a contradiction, at both places.
pub(super) fn isolated_address(
    cx: &Ctx,
    gateway_part: &str,
    node: &Node,
    k: usize,
    addr: Ipv4Addr,
    at: &str,
    what: &str,
) {
    let net = &node.legacy_networks[k];
    if let Some((j, iso)) = net.isolated.iter().enumerate().find(|(_, i)| i.contains(&addr)) {
        let iso_at = format!("{}.legacy_networks[{k}].isolated[{j}]", node_path(gateway_part));
        contradiction(cx, &iso_at, iso, at, what);
    }
}

/// The subnets an interface is connected to, per VRF (the extranet's, each legacy network's,
/// the internet-access one): two that overlap would leave the gateway two ways to one
/// neighbour, and two interfaces with one address.
pub(super) fn connected_subnets(cx: &Ctx, gp: &str, g: &Gateway, links: &Links) {
    let mut zones: Vec<_> = links.by_zone.iter().map(|(zone, (ks, _))| (*zone, ks)).collect();
    zones.sort();
    for (zone, ks) in zones {
        let subnets: Vec<Ipv4Net> = ks.iter().map(|&k| g.interfaces[k].address.trunc()).collect();
        for (a, b) in overlapping_pairs(&subnets) {
            let (first, second) = (&g.interfaces[ks[a]], &g.interfaces[ks[b]]);
            cx.err(
                &format!("{gp}.interfaces[{}].address", ks[b]),
                format!(
                    "interface {} ({}) overlaps interface {} ({}) in the {} VRF",
                    quote(&port_key(second)),
                    second.address,
                    quote(&port_key(first)),
                    first.address,
                    zone.map(quote).unwrap_or_else(|| "extranet".into())
                ),
                Some("a gateway's connected subnets in one VRF do not overlap".into()),
            );
        }
    }
}
