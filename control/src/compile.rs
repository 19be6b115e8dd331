//! The compiler: one gateway's slice of a valid plan → its [`dataplane::Config`].
//!
//! Deterministic: VRF ids follow the order of the gateway's interfaces, everything else the
//! plan's order, so the same plan always gives byte-identical output.

use std::net::IpAddr;

use dataplane::{
    Action, Config, PortConfig, Role, RouteConfig, Rule, Vrf,
    config::{DEFAULT_MTU, EXTRANET_VRF},
};
use ipnet::{IpNet, Ipv4Net};

use crate::{
    diagnostics::Diagnostics,
    load::LoadedPlan,
    model::{InterfaceRole, Node},
};

/// Compiles the gateway `id`. The plan must have passed [`crate::validate`].
pub fn compile(lp: &LoadedPlan, id: &str) -> Result<Config, Diagnostics> {
    let nodes = lp.plan.nodes();
    let Some((node, gw)) =
        nodes.iter().find_map(|(_, n)| n.gateways.iter().find(|g| g.id == id).map(|g| (*n, g)))
    else {
        let known: Vec<&str> =
            nodes.iter().flat_map(|(_, n)| n.gateways.iter().map(|g| g.id.as_str())).collect();
        return Err(Diagnostics(vec![lp.error(
            "",
            format!("no gateway {id:?} in the plan"),
            Some(format!("gateways in this plan: {}", known.join(", "))),
        )]));
    };

    let mut vrfs = vec![Vrf { id: EXTRANET_VRF, name: "extranet".into() }];
    let vrf_of = |vrfs: &mut Vec<Vrf>, network: &str| -> u32 {
        if let Some(v) = vrfs.iter().find(|v| v.name == network) {
            return v.id;
        }
        let id = vrfs.len() as u32;
        vrfs.push(Vrf { id, name: network.to_string() });
        id
    };

    let mut ports = Vec::new();
    for itf in &gw.interfaces {
        let (role, vrf) = match (itf.role, &itf.network) {
            (InterfaceRole::Legacy, Some(n)) => (Role::Legacy, vrf_of(&mut vrfs, n)),
            _ => (Role::Extranet, EXTRANET_VRF),
        };
        ports.push(PortConfig {
            name: itf.name.clone(),
            vlan: None,
            role,
            vrf,
            addresses: vec![IpNet::V4(itf.address)],
            mtu: DEFAULT_MTU,
            tunnel: None,
        });
    }

    // Each netmap is published both ways by a pair of rules: the legacy side's source prefix
    // out, the plan block in. Nothing else crosses (the policy's default is deny).
    let mut netmaps = Vec::new();
    let mut policies = Vec::new();
    for vrf in vrfs.clone().iter().skip(1) {
        for (k, rule) in legacy_rules(node, &vrf.name).enumerate() {
            netmaps.push(dataplane::Netmap {
                inside_vrf: vrf.id,
                inside: rule.from,
                outside_vrf: EXTRANET_VRF,
                outside: rule.to,
            });
            let name = |dir: &str| format!("{}-netmap{k}-{dir}", vrf.name);
            policies.push(netmap_rule(name("out"), vrf.id, Some(rule.from), None));
            policies.push(netmap_rule(name("in"), EXTRANET_VRF, None, Some(rule.to)));
        }
    }

    let mut routes = Vec::new();
    for r in &gw.routes {
        let vrf = match &r.network {
            Some(n) => vrf_of(&mut vrfs, n),
            None => EXTRANET_VRF,
        };
        // Validation guarantees one interface of the right VRF has the next hop on its subnet.
        let port = gw
            .interfaces
            .iter()
            .find(|i| i.network == r.network && i.address.contains(&r.via))
            .map(|i| i.name.clone())
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
        nat_pools: vec![],
        services: vec![],
        policies,
    };
    // The compiler's output must satisfy the data plane's own checks; anything else is a bug here.
    if let Err(errors) = config.validate() {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(Diagnostics(vec![lp.error(
            "",
            format!("internal: compiled config is inconsistent: {}", text.join("; ")),
            None,
        )]));
    }
    Ok(config)
}

fn netmap_rule(name: String, vrf: u32, src: Option<Ipv4Net>, dst: Option<Ipv4Net>) -> Rule {
    Rule {
        name,
        vrf,
        src: src.map(IpNet::V4),
        dst: dst.map(IpNet::V4),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Netmap,
    }
}

fn legacy_rules<'a>(node: &'a Node, network: &str) -> impl Iterator<Item = &'a crate::model::NetmapRule> {
    node.legacy_networks.iter().filter(move |n| n.id == network).flat_map(|n| n.netmap.iter())
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
                ("city-hall-netmap0-out", 1, "Some(10.20.0.0/24)->None".to_string()),
                ("city-hall-netmap0-in", 0, "None->Some(198.18.20.0/24)".to_string()),
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
    fn unknown_gateway_lists_the_known_ones() {
        let err = compile(&demo(), "gw-nowhere").unwrap_err();
        assert!(err.0[0].hint.as_deref().unwrap().contains("gw-changsha"), "{err}");
    }
}
