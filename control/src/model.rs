//! The plan's data model, as written in YAML. Unknown fields are errors everywhere, so a typo
//! never silently drops a setting.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// A name for the plan (a province, a site, "demo").
    pub plan: String,
    pub nodes: Vec<Node>,
    /// Who may change what: each operator is scoped to a subtree of the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<Operator>,
}

/// An operator: identity, the node whose subtree they answer for, and what they may do there.
/// Enforcement comes with the agent API; the plan carries them now.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub id: String,
    /// A node code; the operator's authority covers that node and everything below it.
    pub scope: String,
    pub role: OperatorRole,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    /// Plans, policies and gateways of the subtree.
    Admin,
    /// Policies of the subtree.
    Operator,
    /// Read only.
    Viewer,
}

/// A policy rule written by an operator, scoped to the node it is written at: it applies to
/// that node's gateways and every gateway below, ahead of the rules the conversions generate.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    pub name: String,
    /// The legacy network whose VRF the rule lives in; absent means the extranet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Ipv4Net>,
    /// tcp, udp, icmp, or a protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Destination ports: `80` or `1000-2000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ports: Option<PortSpec>,
    pub action: PolicyAction,
}

/// A port or an inclusive range, written `80` or `"1000-2000"`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum PortSpec {
    One(u16),
    Range(String),
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Permit,
    Deny,
    Count,
}

/// A node of the plan tree, keyed by its GB/T 2260 administrative division code.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub code: String,
    pub name: String,
    pub level: Level,
    #[serde(default, skip_serializing_if = "Allocations::is_empty")]
    pub allocations: Allocations,
    /// Departments at this node (their VPNs are in `allocations.dedicated`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<Department>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_networks: Vec<LegacyNetwork>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<Gateway>,
    /// Ordered; applies to this node's gateways and all below (see [`PolicyRule`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
    /// Files, relative to this one, each holding one more child node (a province keeps each
    /// city in its own file). They are read in order after the inline `children`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Central,
    Province,
    Prefecture,
    County,
}

impl Level {
    /// As the plan writes it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Central => "central",
            Level::Province => "province",
            Level::Prefecture => "prefecture",
            Level::County => "county",
        }
    }
}

/// Address blocks the unified plan gives a node, per extranet zone.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Allocations {
    /// Public network area (公用网络区), IPv4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public: Vec<Ipv4Net>,
    /// Public network area, IPv6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_v6: Vec<Ipv6Net>,
    /// Internet-access area (互联网接入区): registered public addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internet: Vec<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub internet_v6: Vec<Ipv6Net>,
    /// Dedicated network area (专用网络区): one VPN per department.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedicated: Vec<DedicatedVpn>,
}

/// A department's VPN in the dedicated network area. Departments plan these themselves, so
/// different departments' VPNs may overlap; within one department they may not.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DedicatedVpn {
    /// A department declared at this node or above.
    pub department: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4: Vec<Ipv4Net>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Ipv6Net>,
}

/// A department (部门) below an administrative node.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: String,
    pub name: String,
}

/// An existing network that joins the extranet through a gateway, converted rather than renumbered.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LegacyNetwork {
    pub id: String,
    /// Its prefixes as they are today, possibly overlapping other legacy networks.
    pub prefixes: Vec<Ipv4Net>,
    /// 1:1 prefix translations onto plan blocks (netmap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub netmap: Vec<NetmapRule>,
    /// Outbound NAPT for the prefixes no netmap covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napt: Option<NaptConversion>,
    /// Legacy services published at plan addresses (destination NAT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<PublishedService>,
    /// Subnets that must never cross, whatever else is configured (stripped out, 剥离).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolated: Vec<Ipv4Net>,
}

/// NAPT onto a pool of plan addresses.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NaptConversion {
    /// Plan addresses to translate onto (inside the node's public allocation).
    pub pool: Vec<Ipv4Net>,
    /// Ports per block handed to one inside host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u16>,
    /// RFC 7422: each host's block is a pure function of its address, so no per-session logs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deterministic: bool,
    /// Who may answer a mapping: only what the host contacted (default), or anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filtering: Option<FilteringName>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FilteringName {
    AddressAndPortDependent,
    EndpointIndependent,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// As written in the plan.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A legacy service reachable from the extranet at a plan address.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublishedService {
    pub name: String,
    pub protocol: Protocol,
    /// Where it runs in the legacy network.
    pub inside: std::net::SocketAddrV4,
    /// Where the extranet reaches it (a plan address of the node).
    pub outside: std::net::SocketAddrV4,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetmapRule {
    pub from: Ipv4Net,
    pub to: Ipv4Net,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    pub id: String,
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<StaticRoute>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceRole {
    Legacy,
    Extranet,
    /// Into the internet-access area; its address comes from the node's `internet` allocation.
    InternetAccess,
    /// A GRE tunnel over the extranet, carrying a legacy network (`network:`) or the extranet.
    Tunnel,
}

/// The VRF name an internet-access interface and its routes live in; no legacy network may take it.
pub const INTERNET_ACCESS: &str = "internet-access";

/// A GRE tunnel's ends (RFC 2784; RFC 2890 key when given). Its packets travel the extranet.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TunnelEnds {
    /// The address of one of the gateway's extranet interfaces.
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    pub role: InterfaceRole,
    /// For a legacy interface: the legacy network (by id) behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// An 802.1Q VLAN on the interface; the same interface name may then appear once per VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub address: Ipv4Net,
    /// For a tunnel interface: its ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelEnds>,
}

impl Interface {
    /// The VRF it is in, by name: its legacy network, `internet-access`, or `None` for the
    /// extranet. Routes name the same (`network:`).
    pub fn zone(&self) -> Option<&str> {
        match self.role {
            InterfaceRole::Legacy | InterfaceRole::Tunnel => self.network.as_deref(),
            InterfaceRole::InternetAccess => Some(INTERNET_ACCESS),
            InterfaceRole::Extranet => None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    pub prefix: Ipv4Net,
    pub via: Ipv4Addr,
    /// The legacy network whose VRF holds the route, or `internet-access`; absent means the
    /// extranet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl Allocations {
    /// No block at all (the plan may leave `allocations:` out).
    pub fn is_empty(&self) -> bool {
        self.public.is_empty()
            && self.public_v6.is_empty()
            && self.internet.is_empty()
            && self.internet_v6.is_empty()
            && self.dedicated.is_empty()
    }

    /// Every block, as (zone, field path under the node, prefix). The zone names an address
    /// space: `public`, `internet`, or `dedicated:<department>`.
    pub fn blocks(&self) -> Vec<(String, String, IpNet)> {
        let mut out = Vec::new();
        let mut add = |zone: &str, field: String, nets: Vec<IpNet>| {
            for (i, n) in nets.into_iter().enumerate() {
                out.push((zone.to_string(), format!("{field}[{i}]"), n));
            }
        };
        add("public", "allocations.public".into(), self.public.iter().map(|n| IpNet::V4(*n)).collect());
        add("public", "allocations.public_v6".into(), self.public_v6.iter().map(|n| IpNet::V6(*n)).collect());
        add("internet", "allocations.internet".into(), self.internet.iter().map(|n| IpNet::V4(*n)).collect());
        add(
            "internet",
            "allocations.internet_v6".into(),
            self.internet_v6.iter().map(|n| IpNet::V6(*n)).collect(),
        );
        for (k, d) in self.dedicated.iter().enumerate() {
            let zone = format!("dedicated:{}", d.department);
            add(
                &zone,
                format!("allocations.dedicated[{k}].ipv4"),
                d.ipv4.iter().map(|n| IpNet::V4(*n)).collect(),
            );
            add(
                &zone,
                format!("allocations.dedicated[{k}].ipv6"),
                d.ipv6.iter().map(|n| IpNet::V6(*n)).collect(),
            );
        }
        out
    }
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
