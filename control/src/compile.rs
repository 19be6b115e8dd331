//! The compiler: one gateway's slice of a valid plan → its [`hutong_config::Config`].
//!
//! Deterministic: VRF ids follow the order of the gateway's interfaces, everything else the
//! plan's order, so the same plan always gives byte-identical output.
//!
//! Generated names are collision-free by construction: they join ids (which never contain
//! `:`, see `validate::names`) and fixed words with `:`, and every kind has its own shape:
//! operators' rules `<node code>:<name>` (two parts); the conversions' rules
//! `<network>:<kind><k>:<direction>` or `<network>:service:<name>` (three); pools
//! `<network>:napt`; services `<network>:<name>`.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use hutong_config::{
    Action, Config, DEFAULT_MTU, EXTRANET_VRF, Filtering, GreTunnel, NatPool, PoolMode, PortConfig,
    PortRange, Role, RouteConfig, Rule, Service, Vrf,
};
use ipnet::{IpNet, Ipv4Net};

use crate::{
    diagnostics::{Diagnostics, quote},
    load::LoadedPlan,
    model::{FilteringName, Gateway, InterfaceRole, LegacyNetwork, Node, Protocol},
    tree::Tree,
};

/// Compiles the gateway `id`. The plan must have passed [`crate::validate()`].
pub fn compile(lp: &LoadedPlan, id: &str) -> Result<Config, Diagnostics> {
    let tree = Tree::new(&lp.plan);
    let found = tree
        .nodes
        .iter()
        .enumerate()
        .find_map(|(i, t)| t.node.gateways.iter().find(|g| g.id == id).map(|g| (i, g)));
    let Some((node, gw)) = found else {
        let known: Vec<&str> =
            tree.nodes.iter().flat_map(|t| t.node.gateways.iter().map(|g| g.id.as_str())).collect();
        let hint = crate::diagnostics::near_miss(id, known.iter().copied())
            .unwrap_or_else(|| format!("gateways in this plan: {}", known.join(", ")));
        return Err(Diagnostics(vec![lp.error(
            "",
            format!("no gateway {} in the plan", quote(id)),
            Some(hint),
        )]));
    };
    let index: Vec<NodeIndex> = tree.nodes.iter().map(|t| NodeIndex::new(t.node)).collect();
    compile_gateway(lp, &tree, &index, node, gw)
}

/// What compiling a gateway looks up at its node and above, by name: built once per node, so
/// that a node with many networks, gateways and rules costs what it holds, not its square.
struct NodeIndex<'a> {
    networks: HashMap<&'a str, &'a LegacyNetwork>,
    /// Indices of the node's policy rules for the extranet (no `network:`), in order.
    extranet_rules: Vec<usize>,
    /// Indices of its rules for each network, in order.
    network_rules: HashMap<&'a str, Vec<usize>>,
}

impl<'a> NodeIndex<'a> {
    fn new(node: &'a Node) -> NodeIndex<'a> {
        let networks = node.legacy_networks.iter().map(|n| (n.id.as_str(), n)).collect();
        let (mut extranet_rules, mut network_rules) = (Vec::new(), HashMap::<&str, Vec<usize>>::new());
        for (i, r) in node.policies.iter().enumerate() {
            match &r.network {
                None => extranet_rules.push(i),
                Some(n) => network_rules.entry(n.as_str()).or_default().push(i),
            }
        }
        NodeIndex { networks, extranet_rules, network_rules }
    }
}

/// Compiles every gateway of the plan, keyed by id, walking the tree once (a national plan has
/// thousands of gateways; looking each one up would be quadratic).
pub fn compile_all(lp: &LoadedPlan) -> Result<BTreeMap<String, Config>, Diagnostics> {
    let tree = Tree::new(&lp.plan);
    let index: Vec<NodeIndex> = tree.nodes.iter().map(|t| NodeIndex::new(t.node)).collect();
    let mut out = BTreeMap::new();
    for (i, t) in tree.nodes.iter().enumerate() {
        for gw in &t.node.gateways {
            out.insert(gw.id.clone(), compile_gateway(lp, &tree, &index, i, gw)?);
        }
    }
    Ok(out)
}

fn compile_gateway(
    lp: &LoadedPlan,
    tree: &Tree,
    index: &[NodeIndex],
    at: usize,
    gw: &Gateway,
) -> Result<Config, Diagnostics> {
    let mut vrfs = vec![Vrf { id: EXTRANET_VRF, name: "extranet".into() }];
    let mut vrf_ids: HashMap<String, u32> = HashMap::new();
    let mut vrf_of = |vrfs: &mut Vec<Vrf>, network: &str| -> u32 {
        *vrf_ids.entry(network.to_string()).or_insert_with(|| {
            let id = vrfs.len() as u32;
            vrfs.push(Vrf { id, name: network.to_string() });
            id
        })
    };

    let mut ports = Vec::new();
    for itf in &gw.interfaces {
        let vrf = match itf.zone() {
            Some(zone) => vrf_of(&mut vrfs, zone),
            None => EXTRANET_VRF,
        };
        let role = match itf.role {
            InterfaceRole::Legacy => Role::Legacy,
            InterfaceRole::Extranet => Role::Extranet,
            InterfaceRole::InternetAccess => Role::InternetAccess,
            InterfaceRole::Tunnel => Role::Tunnel,
        };
        let tunnel = itf.tunnel.as_ref().map(|t| GreTunnel {
            local: t.local,
            remote: t.remote,
            underlay_vrf: EXTRANET_VRF,
            key: t.key,
        });
        ports.push(PortConfig {
            name: itf.name.clone(),
            vlan: itf.vlan,
            role,
            vrf,
            addresses: vec![IpNet::V4(itf.address)],
            // GRE over IPv4 costs 24 bytes (28 with a key) of the extranet's 1500.
            mtu: match &tunnel {
                Some(t) => DEFAULT_MTU - if t.key.is_some() { 28 } else { 24 },
                None => DEFAULT_MTU,
            },
            tunnel,
        });
    }

    // The policy, in order: isolated subnets denied first, in both directions, ahead of
    // everything (isolation is absolute, whatever an operator writes); then operators' rules;
    // then per legacy network, in its VRF, what stays inside it, each netmap out and NAPT; in
    // the extranet VRF, each netmap in and each published service. Nothing else crosses (the
    // policy's default is deny).
    let here = &index[at];
    let served: Vec<(u32, &LegacyNetwork)> =
        vrfs.iter().skip(1).filter_map(|v| here.networks.get(v.name.as_str()).map(|n| (v.id, *n))).collect();
    let mut policies = Vec::new();
    for (vrf, net) in &served {
        for (k, iso) in net.isolated.iter().enumerate() {
            let name = |dir: &str| format!("{}:isolated{k}:{dir}", net.id);
            policies.push(rule(name("from"), *vrf, Some(*iso), None, Action::Deny));
            policies.push(rule(name("to"), *vrf, None, Some(*iso), Action::Deny));
        }
    }
    // Operators' rules: those written higher up the tree (wider authority) first, then the
    // gateway's own node's. A rule for a network this gateway does not serve is not its business.
    for a in tree.ancestry(at) {
        let n = tree.nodes[a].node;
        // The node's rules that concern this gateway, in the node's order.
        let mut mine: Vec<(usize, u32)> =
            index[a].extranet_rules.iter().map(|&i| (i, EXTRANET_VRF)).collect();
        for v in vrfs.iter().skip(1) {
            if let Some(rules) = index[a].network_rules.get(v.name.as_str()) {
                mine.extend(rules.iter().map(|&i| (i, v.id)));
            }
        }
        mine.sort_unstable();
        for (i, vrf) in mine {
            policies.push(crate::policy::compile_rule(&n.code, &n.policies[i], vrf));
        }
    }
    // Destinations inside a legacy network stay in its VRF: its own prefixes, and what the
    // gateway routes there (a branch behind a tunnel, a subnet behind a legacy router). Without
    // these, the conversions below would translate the network's traffic to its own branch and
    // send it to the extranet. Only where the network reaches beyond one link: on a single
    // link without routes, every own destination is on the link and never comes to the gateway.
    let mut own_routes: HashMap<&str, Vec<usize>> = HashMap::new();
    for (k, r) in gw.routes.iter().enumerate() {
        if let Some(n) = &r.network {
            own_routes.entry(n.as_str()).or_default().push(k);
        }
    }
    let mut own_links: HashMap<&str, usize> = HashMap::new();
    for itf in &gw.interfaces {
        if let Some(n) = &itf.network {
            *own_links.entry(n.as_str()).or_default() += 1;
        }
    }
    for (vrf, net) in &served {
        let routes = own_routes.get(net.id.as_str()).map(Vec::as_slice).unwrap_or_default();
        if routes.is_empty() && own_links.get(net.id.as_str()).copied().unwrap_or(0) <= 1 {
            continue;
        }
        for (k, p) in net.prefixes.iter().enumerate() {
            let name = format!("{}:inside{k}:stay", net.id);
            policies.push(rule(name, *vrf, None, Some(*p), Action::Permit));
        }
        for &k in routes {
            let name = format!("{}:route{k}:stay", net.id);
            policies.push(rule(name, *vrf, None, Some(gw.routes[k].prefix), Action::Permit));
        }
    }
    let mut netmaps = Vec::new();
    let mut extranet_rules = Vec::new();
    let mut nat_pools = Vec::new();
    let mut services = Vec::new();
    for (vrf, net) in served {
        for (k, nm) in net.netmap.iter().enumerate() {
            netmaps.push(hutong_config::Netmap {
                inside_vrf: vrf,
                inside: nm.from,
                outside_vrf: EXTRANET_VRF,
                outside: nm.to,
            });
            let name = |dir: &str| format!("{}:netmap{k}:{dir}", net.id);
            policies.push(rule(name("out"), vrf, Some(nm.from), None, Action::Netmap));
            extranet_rules.push(rule(name("in"), EXTRANET_VRF, None, Some(nm.to), Action::Netmap));
        }
        if let Some(napt) = &net.napt {
            let pool = format!("{}:napt", net.id);
            let defaults = NatPool::defaults(pool.clone(), vrf, EXTRANET_VRF, napt.pool.clone());
            nat_pools.push(NatPool {
                mode: if napt.deterministic {
                    PoolMode::Deterministic { inside: net.prefixes[0] }
                } else {
                    PoolMode::Dynamic
                },
                block_size: napt.block_size.unwrap_or(defaults.block_size),
                filtering: match napt.filtering {
                    Some(FilteringName::EndpointIndependent) => Filtering::EndpointIndependent,
                    _ => Filtering::AddressAndPortDependent,
                },
                ..defaults
            });
            for (k, p) in net.prefixes.iter().enumerate() {
                let action = Action::Napt { pool: pool.clone() };
                policies.push(rule(format!("{}:napt{k}:out", net.id), vrf, Some(*p), None, action));
            }
        }
        for sv in &net.services {
            let proto = match sv.protocol {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
            };
            services.push(Service {
                name: format!("{}:{}", net.id, sv.name),
                proto,
                outside_vrf: EXTRANET_VRF,
                outside: *sv.outside.ip(),
                outside_port: sv.outside.port(),
                inside_vrf: vrf,
                inside: *sv.inside.ip(),
                inside_port: sv.inside.port(),
            });
            let port = PortRange { first: sv.outside.port(), last: sv.outside.port() };
            extranet_rules.push(Rule {
                proto: Some(proto),
                dst_ports: Some(port),
                ..rule(
                    format!("{}:service:{}", net.id, sv.name),
                    EXTRANET_VRF,
                    None,
                    Some(Ipv4Net::from(*sv.outside.ip())),
                    Action::Dnat,
                )
            });
        }
    }
    policies.extend(extranet_rules);

    let mut links: HashMap<Option<&str>, Vec<&crate::model::Interface>> = HashMap::new();
    for itf in &gw.interfaces {
        links.entry(itf.zone()).or_default().push(itf);
    }
    let mut routes = Vec::new();
    for r in &gw.routes {
        let vrf = match &r.network {
            Some(n) => vrf_of(&mut vrfs, n),
            None => EXTRANET_VRF,
        };
        // Validation guarantees one interface of the right VRF has the next hop on its subnet.
        let port = links
            .get(&r.network.as_deref())
            .into_iter()
            .flatten()
            .find(|i| i.address.contains(&r.via))
            .map(|i| match i.vlan {
                Some(v) => format!("{}.{v}", i.name),
                None => i.name.clone(),
            })
            .unwrap_or_default();
        routes.push(RouteConfig { vrf, prefix: IpNet::V4(r.prefix), port, via: Some(IpAddr::V4(r.via)) });
    }

    let config = Config {
        gateway: gw.id.clone(),
        vrfs,
        ports,
        netmaps,
        nptv6: vec![],
        routes,
        nat_pools,
        services,
        policies,
    };
    // The compiler's output must satisfy the data plane's own checks. Validation refuses first
    // whatever would fail here (the generative test in control/tests/generated_plans/ holds
    // it to that), so this is a bug in hutong: say so, at the gateway.
    if let Err(errors) = config.validate() {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let path = format!(
            "{}.gateways[{}]",
            tree.nodes[at].path,
            tree.nodes[at].node.gateways.iter().position(|g| g.id == gw.id).unwrap_or(0)
        );
        return Err(Diagnostics(vec![lp.error(
            &path,
            format!(
                "internal: the compiled config of gateway {} is inconsistent (a bug in hutong's checks): {}",
                quote(&gw.id),
                text.join("; ")
            ),
            None,
        )]));
    }
    Ok(config)
}

fn rule(name: String, vrf: u32, src: Option<Ipv4Net>, dst: Option<Ipv4Net>, action: Action) -> Rule {
    Rule {
        name,
        vrf,
        src: src.map(IpNet::V4),
        dst: dst.map(IpNet::V4),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{load::load_str, validate};

    const DEMO: &str = include_str!("../../configs/demo/plan.yaml");

    fn demo() -> LoadedPlan {
        let lp = load_str(DEMO, Path::new("plan.yaml")).unwrap();
        validate(&lp).unwrap();
        lp
    }

    #[test]
    fn demo_compiles_to_the_expected_config() {
        let c = compile(&demo(), "gw-changsha").unwrap();
        assert_eq!(
            c.vrfs,
            vec![Vrf { id: 0, name: "extranet".into() }, Vrf { id: 1, name: "city-hall".into() }]
        );
        assert_eq!(c.ports[0].name, "legacy0");
        assert_eq!((c.ports[0].role, c.ports[0].vrf), (Role::Legacy, 1));
        assert_eq!((c.ports[1].role, c.ports[1].vrf), (Role::Extranet, 0));
        assert_eq!(c.netmaps.len(), 1);
        assert_eq!(c.netmaps[0].inside.to_string(), "10.20.0.0/24");
        assert_eq!(c.netmaps[0].outside.to_string(), "198.18.20.0/24");
        assert_eq!(c.routes[0].port, "uplink0");
        let rules: Vec<(&str, u32, String)> = c
            .policies
            .iter()
            .map(|r| (r.name.as_str(), r.vrf, format!("{:?}->{:?}", r.src, r.dst)))
            .collect();
        assert_eq!(
            rules,
            vec![
                ("city-hall:netmap0:out", 1, "Some(10.20.0.0/24)->None".to_string()),
                ("city-hall:netmap0:in", 0, "None->Some(198.18.20.0/24)".to_string()),
            ]
        );
        assert_eq!(c.routes[0].via.unwrap().to_string(), "198.19.0.2");
    }

    #[test]
    fn output_is_byte_identical_across_runs() {
        let a = compile(&demo(), "gw-changsha").unwrap().to_json();
        let b = compile(&demo(), "gw-changsha").unwrap().to_json();
        assert_eq!(a, b);
    }

    #[test]
    fn every_conversion_kind_compiles_into_pools_services_and_ordered_rules() {
        let text = include_str!("../../configs/examples/conversions.yaml");
        let lp = load_str(text, Path::new("conversions.yaml")).unwrap();
        validate(&lp).unwrap();
        let c = compile(&lp, "gw-furong").unwrap();
        let ports: Vec<(String, u32)> = c.ports.iter().map(|p| (p.key(), p.vrf)).collect();
        let want = [("legacy0.100", 1), ("legacy0.200", 2), ("uplink0", 0), ("inet0", 3), ("gre-clinic", 2)];
        assert_eq!(ports, want.map(|(k, v)| (k.to_string(), v)));
        // The internet-access area is a VRF of its own; the tunnel carries the clinic's VRF over
        // the extranet, its MTU less GRE's 28 bytes with a key.
        assert_eq!(c.vrfs[3].name, "internet-access");
        assert_eq!(c.ports[3].role, hutong_config::Role::InternetAccess);
        let gre = &c.ports[4];
        assert_eq!((gre.role, gre.mtu), (hutong_config::Role::Tunnel, 1472));
        let t = gre.tunnel.as_ref().unwrap();
        assert_eq!(
            (t.local.to_string(), t.remote.to_string(), t.underlay_vrf, t.key),
            ("198.19.4.1".into(), "198.19.9.1".into(), 0, Some(7))
        );
        let routes: Vec<(u32, String)> = c.routes.iter().map(|r| (r.vrf, r.port.clone())).collect();
        assert_eq!(routes, [(0, "uplink0".into()), (3, "inet0".into()), (2, "gre-clinic".into())]);
        let rules: Vec<(&str, u32)> = c.policies.iter().map(|r| (r.name.as_str(), r.vrf)).collect();
        assert_eq!(
            rules,
            [
                ("tax-office:isolated0:from", 1),
                ("tax-office:isolated0:to", 1),
                ("430102:no-telnet", 1),
                ("430102:count-web", 1),
                // The clinic reaches beyond its link (a tunnel, a route): its own destinations
                // stay in its VRF, ahead of its NAPT.
                ("clinic:inside0:stay", 2),
                ("clinic:route2:stay", 2),
                ("tax-office:netmap0:out", 1),
                ("tax-office:napt0:out", 1),
                ("clinic:napt0:out", 2),
                ("tax-office:netmap0:in", 0),
                ("tax-office:service:portal", 0),
            ]
        );
        // Isolation first, both ways, ahead of anything an operator writes.
        let iso: ipnet::IpNet = "10.0.200.0/24".parse().unwrap();
        assert_eq!(
            (&c.policies[0].action, c.policies[0].src, c.policies[0].dst),
            (&Action::Deny, Some(iso), None)
        );
        assert_eq!(
            (&c.policies[1].action, c.policies[1].src, c.policies[1].dst),
            (&Action::Deny, None, Some(iso))
        );
        assert_eq!(c.policies[2].action, Action::Deny, "then operators' rules");
        assert_eq!(c.policies[2].dst_ports, Some(PortRange { first: 23, last: 23 }));
        assert_eq!(c.policies[3].dst_ports, Some(PortRange { first: 80, last: 443 }));
        assert_eq!(c.nat_pools[0].block_size, 512);
        assert_eq!(c.nat_pools[1].mode, PoolMode::Deterministic { inside: "10.0.0.0/20".parse().unwrap() });
        assert_eq!(
            (c.services[0].outside_port, c.services[0].inside_port, c.services[0].proto),
            (80, 8080, 6)
        );
        assert_eq!(c.policies[10].dst_ports, Some(PortRange { first: 80, last: 80 }));
        // And the data plane accepts it as is.
        c.validate().unwrap();
    }

    #[test]
    fn rules_written_higher_up_the_tree_apply_below_and_first() {
        let text = r#"
plan: tree
nodes:
  - code: "430000"
    name: Hunan
    level: province
    allocations: { public: [198.18.0.0/16] }
    policies:
      - { name: no-smb, protocol: tcp, ports: 445, action: deny }
      - { name: lan-no-rdp, network: lan, protocol: tcp, ports: 3389, action: deny }
    children:
      - code: "430100"
        name: Changsha
        level: prefecture
        allocations: { public: [198.18.0.0/16] }
        legacy_networks:
          - { id: lan, prefixes: [10.20.0.0/24], netmap: [{ from: 10.20.0.0/24, to: 198.18.20.0/24 }] }
        policies:
          - { name: count-all, network: lan, action: count }
        gateways:
          - id: gw
            interfaces:
              - { name: legacy0, role: legacy, network: lan, address: 10.20.0.1/24 }
              - { name: uplink0, role: extranet, address: 198.19.0.1/24 }
"#;
        let lp = load_str(text, Path::new("tree.yaml")).unwrap();
        validate(&lp).unwrap();
        let c = compile(&lp, "gw").unwrap();
        let names: Vec<&str> = c.policies.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["430000:no-smb", "430000:lan-no-rdp", "430100:count-all", "lan:netmap0:out", "lan:netmap0:in"]
        );
        assert_eq!((c.policies[0].vrf, c.policies[1].vrf), (0, 1), "no network means the extranet VRF");
    }

    #[test]
    fn unknown_gateway_lists_the_known_ones() {
        let err = compile(&demo(), "gw-nowhere").unwrap_err();
        assert!(err.0[0].hint.as_deref().unwrap().contains("gw-changsha"), "{err}");
    }
}
