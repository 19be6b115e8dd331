//! The plan's data model, as written in YAML. Unknown fields are errors everywhere, so a typo
//! never silently drops a setting.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// A name for the plan (a province, a site, "demo").
    pub plan: String,
    pub nodes: Vec<Node>,
}

/// A node of the plan tree, keyed by its GB/T 2260 administrative division code.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub code: String,
    pub name: String,
    pub level: Level,
    #[serde(default)]
    pub allocations: Allocations,
    #[serde(default)]
    pub legacy_networks: Vec<LegacyNetwork>,
    #[serde(default)]
    pub gateways: Vec<Gateway>,
    #[serde(default)]
    pub children: Vec<Node>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Central,
    Province,
    Prefecture,
    County,
}

/// Address blocks the unified plan gives a node, per extranet zone.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Allocations {
    /// Public network area (公用网络区).
    #[serde(default)]
    pub public: Vec<Ipv4Net>,
}

/// An existing network that joins the extranet through a gateway, converted rather than renumbered.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LegacyNetwork {
    pub id: String,
    /// Its prefixes as they are today, possibly overlapping other legacy networks.
    pub prefixes: Vec<Ipv4Net>,
    /// 1:1 prefix translations onto plan blocks (netmap).
    #[serde(default)]
    pub netmap: Vec<NetmapRule>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetmapRule {
    pub from: Ipv4Net,
    pub to: Ipv4Net,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub id: String,
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub routes: Vec<StaticRoute>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceRole {
    Legacy,
    Extranet,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    pub role: InterfaceRole,
    /// For a legacy interface: the legacy network (by id) behind it.
    #[serde(default)]
    pub network: Option<String>,
    pub address: Ipv4Net,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub prefix: Ipv4Net,
    pub via: Ipv4Addr,
    /// The legacy network whose VRF holds the route; absent means the extranet.
    #[serde(default)]
    pub network: Option<String>,
}

impl Node {
    /// Every node below this one, depth first, parents first, each with its path in the YAML.
    pub fn walk<'a>(&'a self, path: String, out: &mut Vec<(String, &'a Node)>) {
        for (i, c) in self.children.iter().enumerate() {
            let child = format!("{path}.children[{i}]");
            out.push((child.clone(), c));
            c.walk(child, out);
        }
    }
}

impl Plan {
    /// Every node of the tree with its YAML path (`nodes[0].children[1]`), parents first.
    pub fn nodes(&self) -> Vec<(String, &Node)> {
        let mut all = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let path = format!("nodes[{i}]");
            all.push((path.clone(), n));
            n.walk(path, &mut all);
        }
        all
    }
}
