//! Gateways: their interfaces (names, VLANs, roles, addresses that can work), their routes (a
//! next hop is a neighbour on a connected subnet), the limits of the data plane, and the rule
//! for a legacy network: exactly one gateway serves it.
//!
//! Why one: a gateway serving a network hands out that network's pool, netmap targets and
//! published addresses. Two gateways would both hand them out (two owners of every one of those
//! addresses), and NAPT state in one is unknown to the other. An HA pair will be declared as
//! one gateway with several members, splitting the pool deterministically among them; until
//! then a second gateway naming the network is refused at both interfaces.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use hutong_config::MAX_VRFS;
use ipnet::{IpNet, Ipv4Net};

use super::{Ctx, PrefixSet, fmt_list, fmt_names, host};
mod links;

use links::{Links, connected_subnets, isolated_address, isolated_hop, tunnel_remotes};

use crate::{
    diagnostics::{near_miss, quote},
    model::{Gateway, Interface, InterfaceRole, Node},
    special_use::Usage,
};

pub(super) fn check(cx: &Ctx) {
    let targets = Targets::new(cx);
    // Legacy network id → (gateway id, the first interface of it that serves the network).
    let mut served: HashMap<&str, (&str, String)> = HashMap::new();
    for i in 0..cx.tree.nodes.len() {
        let (path, node) = (cx.tree.nodes[i].path.clone(), cx.tree.nodes[i].node);
        let networks: BTreeMap<&str, usize> =
            node.legacy_networks.iter().enumerate().map(|(k, n)| (n.id.as_str(), k)).collect();
        for (k, g) in node.gateways.iter().enumerate() {
            let gp = format!("{path}.gateways[{k}]");
            gateway(cx, &gp, node, &networks, g, &targets);
            for (j, itf) in g.interfaces.iter().enumerate() {
                let (InterfaceRole::Legacy | InterfaceRole::Tunnel, Some(net)) = (itf.role, &itf.network)
                else {
                    continue;
                };
                let at = format!("{gp}.interfaces[{j}].network");
                match served.get(net.as_str()) {
                    None => {
                        served.insert(net, (&g.id, at));
                    }
                    Some((other, _)) if *other == g.id => {}
                    Some((other, first)) => {
                        let (first, other) = (first.clone(), *other);
                        let msg = |a: &str, b: &str| {
                            format!(
                                "legacy network {} is served by gateway {} and by gateway {}: its pool, netmap \
                                 targets and services would have two owners",
                                quote(net),
                                quote(a),
                                quote(b)
                            )
                        };
                        let hint =
                            "one gateway serves a legacy network (docs/plan.md, \"One owner per address\")";
                        let (here, there) = (cx.place(&at), cx.place(&first));
                        cx.err(&at, msg(other, &g.id), Some(format!("{hint}; the other is at {there}")));
                        cx.err(&first, msg(other, &g.id), Some(format!("{hint}; the other is at {here}")));
                    }
                }
            }
        }
    }
}

/// Every translated outside address of the plan (netmap targets, NAPT pools, published
/// addresses): routed to the gateway that translates them, so never on a link, never a
/// tunnel's far end.
struct Targets {
    nets: Vec<Ipv4Net>,
    /// What each is, for a message: (node index, legacy network index, what).
    what: Vec<(usize, usize, &'static str)>,
    set: PrefixSet,
    /// Every node's public and internet-access IPv4 blocks: the extranet's addresses.
    blocks: Vec<(Ipv4Net, usize, &'static str)>,
    block_set: PrefixSet,
}

impl Targets {
    fn new(cx: &Ctx) -> Targets {
        let (mut nets, mut what) = (Vec::new(), Vec::new());
        for (i, t) in cx.tree.nodes.iter().enumerate() {
            for (k, n) in t.node.legacy_networks.iter().enumerate() {
                let pools = n.napt.iter().flat_map(|p| p.pool.iter().copied());
                for (net, w) in
                    n.netmap.iter().map(|m| (m.to, "netmap target")).chain(pools.map(|p| (p, "NAPT pool")))
                {
                    nets.push(net);
                    what.push((i, k, w));
                }
                for sv in &n.services {
                    nets.push(Ipv4Net::from(*sv.outside.ip()));
                    what.push((i, k, "published address"));
                }
            }
        }
        let set = PrefixSet::new(&nets);
        let mut blocks = Vec::new();
        for (i, t) in cx.tree.nodes.iter().enumerate() {
            let a = &t.node.allocations;
            blocks.extend(a.public.iter().map(|b| (*b, i, "public block")));
            blocks.extend(a.internet.iter().map(|b| (*b, i, "internet-access block")));
        }
        let block_set = PrefixSet::new(&blocks.iter().map(|b| b.0).collect::<Vec<_>>());
        Targets { nets, what, set, blocks, block_set }
    }

    /// The extranet block overlapping `net`, named: `public block 198.18.40.0/22 of node 430102`.
    fn extranet_block(&self, cx: &Ctx, net: &Ipv4Net) -> Option<String> {
        let (block, i, what) = self.blocks[self.block_set.overlapping(net)?];
        Some(format!("{what} {block} of node {}", cx.tree.nodes[i].node.code))
    }

    /// The target overlapping `net`, named: `NAPT pool 198.18.1.0/28 of legacy network "lan" (node 430100)`.
    fn overlapping(&self, cx: &Ctx, net: &Ipv4Net) -> Option<String> {
        let j = self.set.overlapping(net)?;
        let (i, k, what) = self.what[j];
        let node = cx.tree.nodes[i].node;
        Some(format!(
            "{what} {} of legacy network {} (node {})",
            self.nets[j],
            quote(&node.legacy_networks[k].id),
            node.code
        ))
    }
}

/// The subnet an interface's address is on is at most this wide.
const WIDEST_SUBNET: u8 = 8;

/// The address is the network or the broadcast address of its subnet (which a /31 and a /32 do
/// not have, RFC 3021).
pub(super) fn network_or_broadcast(net: &Ipv4Net, addr: std::net::Ipv4Addr) -> Option<&'static str> {
    if net.prefix_len() >= 31 {
        None
    } else if addr == net.network() {
        Some("the network address")
    } else if addr == net.broadcast() {
        Some("the broadcast address")
    } else {
        None
    }
}

fn gateway(
    cx: &Ctx,
    gp: &str,
    node: &Node,
    networks: &BTreeMap<&str, usize>,
    g: &Gateway,
    targets: &Targets,
) {
    let mut names = BTreeSet::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    let mut vrfs: BTreeSet<&str> = BTreeSet::new();
    for (k, itf) in g.interfaces.iter().enumerate() {
        let ip = format!("{gp}.interfaces[{k}]");
        if itf.vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
            cx.err(&format!("{ip}.vlan"), "a VLAN id is 1-4094", None);
        }
        if !names.insert((itf.name.as_str(), itf.vlan)) {
            let msg = match itf.vlan {
                Some(v) => format!("interface {} VLAN {v} appears twice", quote(&itf.name)),
                None => format!("interface {} appears twice", quote(&itf.name)),
            };
            cx.err(&format!("{ip}.name"), msg, None);
        } else if let Some(first) = keys.insert(port_key(itf), k) {
            // `legacy0` on VLAN 100 and an interface named `legacy0.100` are one port to the data plane.
            cx.err(
                &format!("{ip}.name"),
                format!(
                    "interface {} is the same port as interface {} on VLAN {}",
                    quote(&port_key(itf)),
                    quote(&g.interfaces[first].name),
                    g.interfaces[first].vlan.or(itf.vlan).unwrap_or(0)
                ),
                Some("write a VLAN as vlan:, not in the name".into()),
            );
        }
        role(cx, &ip, &node.code, g, itf, networks, targets);
        address(cx, &ip, node, networks, g, itf, targets);
        if let Some(zone) = itf.zone() {
            if vrfs.insert(zone) && vrfs.len() + 1 > MAX_VRFS as usize {
                let at = if itf.network.is_some() { format!("{ip}.network") } else { ip.clone() };
                cx.err(
                    &at,
                    format!(
                        "gateway {} needs more than {MAX_VRFS} VRFs (the extranet, internet-access if it has                          that, and one per network): {} is the VRF that crosses the line",
                        quote(&g.id),
                        quote(zone)
                    ),
                    Some("split the networks among more gateways".into()),
                );
            }
        }
    }
    if !g.interfaces.iter().any(|i| i.role == InterfaceRole::Extranet) {
        cx.err(
            &format!("{gp}.interfaces"),
            format!("gateway {} has no extranet interface", quote(&g.id)),
            None,
        );
    }
    let links = Links::new(g);
    connected_subnets(cx, gp, g, &links);
    let mut ends: HashMap<(std::net::Ipv4Addr, std::net::Ipv4Addr), usize> = HashMap::new();
    for (k, t) in g.interfaces.iter().enumerate().filter_map(|(k, i)| Some((k, i.tunnel.as_ref()?))) {
        if let Some(first) = ends.insert((t.local, t.remote), k) {
            cx.err(
                &format!("{gp}.interfaces[{k}].tunnel.remote"),
                format!(
                    "tunnel {} has the same ends ({} to {}) as tunnel {}: the data plane finds a tunnel by its ends, not by its GRE key",
                    quote(&g.interfaces[k].name),
                    t.local,
                    t.remote,
                    quote(&g.interfaces[first].name)
                ),
                Some("one tunnel per pair of ends: give the second tunnel another local address (a second extranet address) or peer address".into()),
            );
        }
    }
    for (k, r) in g.routes.iter().enumerate() {
        let rp = format!("{gp}.routes[{k}]");
        cx.host_bits(|| format!("{rp}.prefix"), IpNet::V4(r.prefix));
        if let Some(b) = crate::special_use::problem(&IpNet::V4(r.prefix), Usage::Legacy) {
            if b.net.contains(&IpNet::V4(r.prefix)) {
                cx.err(
                    &format!("{rp}.prefix"),
                    format!(
                        "route to {}: {}",
                        r.prefix,
                        crate::special_use::describe(&IpNet::V4(r.prefix), b)
                    ),
                    Some("no packet is ever forwarded there".into()),
                );
            }
        }
        let zone = r.network.as_deref();
        if let Some(n) = zone {
            if !links.by_zone.contains_key(&zone) {
                let known: Vec<&str> = links.by_zone.keys().filter_map(|z| *z).collect();
                let hint = near_miss(n, known.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "this gateway's networks: {}; leave network: out for the extranet",
                        fmt_names(known.iter().copied())
                    )
                });
                cx.err(
                    &format!("{rp}.network"),
                    format!("gateway {} has no interface in {}", quote(&g.id), quote(n)),
                    Some(hint),
                );
                continue;
            }
        }
        // A route in a legacy VRF leads to the network's own parts; the compiler keeps traffic
        // to it inside the VRF, ahead of the conversions. Over the extranet's addresses it
        // would keep the network's extranet traffic from ever being translated.
        if let Some(&nk) = zone.and_then(|z| networks.get(z)) {
            let own = &node.legacy_networks[nk].prefixes;
            let plan =
                || targets.extranet_block(cx, &r.prefix).or_else(|| targets.overlapping(cx, &r.prefix));
            if !covered(own, &r.prefix) {
                if let Some(what) = plan() {
                    cx.err(
                        &format!("{rp}.prefix"),
                        format!(
                            "route {} in legacy network {}'s VRF overlaps {what}: traffic to the extranet \
                             is translated, never routed inside a legacy network",
                            r.prefix,
                            quote(&node.legacy_networks[nk].id)
                        ),
                        Some("route only the network's own destinations (a branch, a subnet behind a legacy router) in its VRF".into()),
                    );
                }
            }
        }
        match links.on_link(zone, r.via).map(|k| &g.interfaces[k]) {
            None => cx.err(
                &format!("{rp}.via"),
                format!(
                    "next hop {} is not on the subnet of any {} interface",
                    r.via,
                    zone.unwrap_or("extranet")
                ),
                Some("a next hop must be directly reachable from one of the gateway's interfaces".into()),
            ),
            // Subnets in one VRF do not overlap (connected_subnets), so the link is the only
            // interface there whose address could be the next hop.
            Some(itf) if itf.address.addr() == r.via => cx.err(
                &format!("{rp}.via"),
                format!("next hop {} is an address of gateway {} itself", r.via, quote(&g.id)),
                Some("the next hop is the neighbour's address on that subnet".into()),
            ),
            Some(itf) => {
                if let Some(what) = network_or_broadcast(&itf.address.trunc(), r.via) {
                    cx.err(
                        &format!("{rp}.via"),
                        format!("next hop {} is {what} of {}", r.via, itf.address.trunc()),
                        Some("the next hop is a neighbour's own address on that subnet".into()),
                    );
                }
                isolated_hop(cx, &rp, node, networks, zone, r.via);
            }
        }
    }
    tunnel_remotes(cx, gp, g, &links);
}

/// The data plane's name for the port: the interface, with `.VLAN` for a VLAN.
pub(super) fn port_key(itf: &Interface) -> String {
    match itf.vlan {
        Some(v) => format!("{}.{v}", itf.name),
        None => itf.name.clone(),
    }
}

fn role(
    cx: &Ctx,
    ip: &str,
    node_code: &str,
    g: &Gateway,
    itf: &Interface,
    networks: &BTreeMap<&str, usize>,
    targets: &Targets,
) {
    let undefined = |n: &str, extra: &str| {
        let hint = near_miss(n, networks.keys().copied())
            .unwrap_or_else(|| format!("defined here: {}{extra}", fmt_names(networks.keys().copied())));
        (format!("legacy network {} is not defined at node {node_code}", quote(n)), hint)
    };
    match (itf.role, &itf.network) {
        (InterfaceRole::Legacy, None) => cx.err(
            ip,
            "a legacy interface must name its legacy network",
            Some(format!("add network: one of {}", fmt_names(networks.keys().copied()))),
        ),
        (InterfaceRole::Legacy, Some(n)) if !networks.contains_key(n.as_str()) => {
            let (m, h) = undefined(n, "");
            cx.err(&format!("{ip}.network"), m, Some(h));
        }
        (InterfaceRole::Tunnel, Some(n)) if !networks.contains_key(n.as_str()) => {
            let (m, h) = undefined(n, "; or leave network: out to carry the extranet");
            cx.err(&format!("{ip}.network"), m, Some(h));
        }
        (InterfaceRole::Extranet | InterfaceRole::InternetAccess, Some(_)) => cx.err(
            &format!("{ip}.network"),
            "an extranet or internet-access interface belongs to no legacy network",
            Some("remove network:".into()),
        ),
        _ => {}
    }
    match (itf.role, &itf.tunnel) {
        (InterfaceRole::Tunnel, None) => cx.err(
            ip,
            "a tunnel interface needs its ends",
            Some("add tunnel: { local: <an extranet interface's address>, remote: <peer> }".into()),
        ),
        (InterfaceRole::Tunnel, Some(t)) => {
            let extranet = |i: &&Interface| i.role == InterfaceRole::Extranet;
            if !g.interfaces.iter().filter(extranet).any(|i| i.address.addr() == t.local) {
                let addrs: Vec<String> =
                    g.interfaces.iter().filter(extranet).map(|i| i.address.addr().to_string()).collect();
                cx.err(
                    &format!("{ip}.tunnel.local"),
                    format!(
                        "tunnel source {} is not the address of an extranet interface of gateway {}",
                        t.local,
                        quote(&g.id)
                    ),
                    Some(format!(
                        "the tunnel's packets leave by the extranet: use that interface's address ({})",
                        if addrs.is_empty() { "none yet".into() } else { addrs.join(", ") }
                    )),
                );
            }
            // The underlay is the extranet: an address of the gateway in a legacy VRF is
            // another host there.
            if g.interfaces.iter().any(|i| i.zone().is_none() && i.address.addr() == t.remote) {
                cx.err(
                    &format!("{ip}.tunnel.remote"),
                    format!("tunnel remote {} is an address of gateway {} itself", t.remote, quote(&g.id)),
                    Some("the remote is the peer's extranet address".into()),
                );
            }
            cx.special(
                || format!("{ip}.tunnel.remote"),
                || "tunnel remote".into(),
                host(t.remote.into()),
                Usage::Plan,
            );
            let remote_at = format!("{ip}.tunnel.remote");
            if let Some(target) = targets.overlapping(cx, &Ipv4Net::from(t.remote)) {
                cx.err(
                    &remote_at,
                    format!("tunnel remote {} is inside {target}", t.remote),
                    Some(
                        "a translated address is no gateway's own; the remote is the peer's extranet address"
                            .into(),
                    ),
                );
            }
            if itf.vlan.is_some() {
                cx.err(&format!("{ip}.vlan"), "a tunnel interface has no VLAN", None);
            }
        }
        (_, Some(_)) => cx.err(
            &format!("{ip}.tunnel"),
            "only an interface with role tunnel has tunnel ends",
            Some("set role: tunnel, or remove tunnel:".into()),
        ),
        (_, None) => {}
    }
}

/// The interface's own address: a host of its subnet, of the right kind for its role.
fn address(
    cx: &Ctx,
    ip: &str,
    node: &Node,
    networks: &BTreeMap<&str, usize>,
    g: &Gateway,
    itf: &Interface,
    targets: &Targets,
) {
    let at = format!("{ip}.address");
    let (addr, subnet) = (itf.address.addr(), itf.address.trunc());
    if itf.address.prefix_len() < WIDEST_SUBNET {
        cx.err(
            &at,
            format!("interface subnet {subnet} is wider than /{WIDEST_SUBNET}"),
            Some("give the interface its link's subnet".into()),
        );
    }
    if let Some(what) = network_or_broadcast(&subnet, addr) {
        cx.err(
            &at,
            format!("interface address {} is {what} of its subnet {subnet}", itf.address),
            Some("an interface needs a host address of its subnet".into()),
        );
    }
    // A tunnel carrying the extranet has an extranet address, like an uplink.
    let usage = match (itf.role, itf.zone()) {
        (InterfaceRole::Legacy, _) | (InterfaceRole::Tunnel, Some(_)) => Usage::Legacy,
        (InterfaceRole::Extranet | InterfaceRole::InternetAccess, _) | (InterfaceRole::Tunnel, None) => {
            Usage::Plan
        }
    };
    // A tunnel's inner point-to-point link may be numbered from link-local space (169.254/16,
    // as VPN tunnels often are): it is a link, not a host anyone routes to.
    let link_local_tunnel = itf.role == InterfaceRole::Tunnel
        && usage == Usage::Legacy
        && Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16).contains(&subnet);
    if !link_local_tunnel {
        cx.special(|| at.clone(), || "interface address".into(), host(addr.into()), usage);
    }
    if usage == Usage::Plan {
        // Translated addresses are routed to the gateway translating them: on a link, the
        // gateway would look for them as neighbours (or, its own, keep their replies).
        if let Some(target) = targets.overlapping(cx, &subnet) {
            cx.err(
                &at,
                format!("interface subnet {subnet} overlaps {target}"),
                Some("give the link a subnet outside every translation target".into()),
            );
        }
    }
    let Some(&net_k) = itf.network.as_ref().and_then(|n| networks.get(n.as_str())) else {
        if itf.role == InterfaceRole::InternetAccess {
            let internet = &node.allocations.internet;
            if !internet.iter().any(|b| b.contains(&subnet)) {
                cx.err(
                    &at,
                    format!(
                        "interface subnet {subnet} is outside node {}'s internet-access allocation",
                        node.code
                    ),
                    Some(if internet.is_empty() {
                        "give the node an allocations.internet block first".into()
                    } else {
                        format!("pick a subnet inside {}", fmt_list(internet))
                    }),
                );
            }
        }
        return;
    };
    let net = &node.legacy_networks[net_k];
    // A legacy interface is on a subnet of its network; a tunnel's inner link may be any
    // legacy space of its own (its VRF is still the network's).
    if itf.role == InterfaceRole::Legacy && !covered(&net.prefixes, &subnet) {
        cx.err(
            &at,
            format!(
                "legacy interface subnet {} is outside legacy network {}'s prefixes",
                itf.address,
                quote(&net.id)
            ),
            Some(format!("its prefixes are {}", fmt_list(&net.prefixes))),
        );
    }
    // The gateway on an isolated subnet would reach it without crossing any rule.
    let what = format!("gateway {}'s interface address {addr}", quote(&g.id));
    isolated_address(cx, ip, node, net_k, addr, &at, &what);
    let np = format!("{}.legacy_networks[{}]", node_path(ip), net_k);
    // A service published from the gateway's own address, or from the subnet's network or
    // broadcast address, is no host's.
    for (j, sv) in net.services.iter().enumerate() {
        let inside = *sv.inside.ip();
        let why = if inside == addr {
            Some(format!("gateway {}'s own address on {}", quote(&g.id), quote(&net.id)))
        } else if itf.address.contains(&inside) {
            network_or_broadcast(&subnet, inside).map(|w| format!("{w} of {subnet}"))
        } else {
            None
        };
        if let Some(why) = why {
            cx.err(
                &format!("{np}.services[{j}].inside"),
                format!("service {}'s inside address {inside} is {why}", quote(&sv.name)),
                Some("a service is published from a host behind the gateway".into()),
            );
        }
    }
}

/// `subnet` lies in the union of `prefixes` (which do not overlap each other): one holds it, or
/// those inside it add up to all of it (10.0.0.0/23 as 10.0.0.0/24 and 10.0.1.0/24).
fn covered(prefixes: &[Ipv4Net], subnet: &Ipv4Net) -> bool {
    let size = |n: &Ipv4Net| 1u64 << (32 - n.prefix_len());
    prefixes.iter().any(|p| p.contains(subnet))
        || prefixes.iter().filter(|p| subnet.contains(*p)).map(size).sum::<u64>() == size(subnet)
}

/// The node's path, from the path of something of one of its gateways.
pub(super) fn node_path(gateway_part: &str) -> &str {
    gateway_part.rsplit_once(".gateways[").map_or(gateway_part, |(node, _)| node)
}
