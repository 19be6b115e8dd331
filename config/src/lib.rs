//! `Config`: everything one gateway needs to forward, compiled from the plan (or hand-written).
//!
//! It is plain data with serde, so `hutong plan compile` prints it as JSON and `hutong gateway run
//! --config` reads it back. Because a config file can be edited by hand, [`Config::validate`]
//! checks it again on load and reports every problem, not just the first.

#![forbid(unsafe_code)]

pub mod bounds;
pub mod examples;
pub mod nat;
mod validate;

use std::{fmt, net::IpAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use nat::{Filtering, NatPool, PoolMode, Service, Timeouts};

/// VRF 0 is the extranet (the plan's own address space); legacy networks get 1, 2, ...
pub const EXTRANET_VRF: u32 = 0;
/// VRF ids index per-VRF tables directly, so they are kept small.
pub const MAX_VRFS: u32 = 4096;
/// The characters of a name (gateway, VRF, rule, pool, service), and its longest length.
pub const NAME_RULE: &str = "a name is 1-128 characters from A-Z a-z 0-9 . _ - : / @ +";
const NAME_MAX: usize = 128;

/// Why `name` is not a name, if it is not.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Some("is empty or too long");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@' | '+');
    if name.chars().all(allowed) { None } else { Some("has a character outside the set") }
}

/// Ethernet MTU unless a port says otherwise.
pub const DEFAULT_MTU: u16 = 1500;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gateway this config belongs to (its id in the plan).
    pub gateway: String,
    pub vrfs: Vec<Vrf>,
    pub ports: Vec<PortConfig>,
    /// Stateless 1:1 IPv4 prefix translations between a legacy VRF and the extranet, applied by
    /// rules whose action is `netmap`.
    #[serde(default)]
    pub netmaps: Vec<Netmap>,
    /// Checksum-neutral IPv6 prefix translations (RFC 6296), applied by `nptv6` rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nptv6: Vec<Nptv6>,
    /// Static routes. Each port's own prefixes are connected routes and need no entry here.
    /// Several routes for the same VRF and prefix form an ECMP group.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// NAPT pools, used by `napt` rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat_pools: Vec<NatPool>,
    /// Published legacy services, reached by `dnat` rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// Ordered policy: the first matching rule decides; nothing matching means deny.
    #[serde(default)]
    pub policies: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrf {
    pub id: u32,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Faces a legacy network; its VRF is that network's.
    Legacy,
    /// Faces the extranet; VRF 0.
    Extranet,
    /// A GRE tunnel (a transitional network, or a site reached before its own backbone exists):
    /// not an interface, but a port packets are routed into and decapsulated out of.
    Tunnel,
    /// Faces the internet-access area (互联网接入区): a VRF of its own, so nothing crosses to or
    /// from it unless a rule says so.
    InternetAccess,
}

impl Role {
    /// As the config and the plan write it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Legacy => "legacy",
            Role::Extranet => "extranet",
            Role::Tunnel => "tunnel",
            Role::InternetAccess => "internet-access",
        }
    }
}

/// A GRE tunnel port's endpoints (RFC 2784, with the RFC 2890 key when given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreTunnel {
    /// The gateway's end: one of its own addresses in `underlay_vrf`.
    pub local: std::net::Ipv4Addr,
    pub remote: std::net::Ipv4Addr,
    /// The VRF the encapsulated packets travel in.
    pub underlay_vrf: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
}

/// A port: an interface, or one 802.1Q VLAN on it. Its key (`name` or `name.vid`) is how routes
/// and rules refer to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Interface name on the gateway host.
    pub name: String,
    /// The VLAN this port is, on that interface; absent means untagged frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub role: Role,
    pub vrf: u32,
    /// The gateway's own addresses on this port (with their prefix: the connected route).
    pub addresses: Vec<IpNet>,
    #[serde(default = "default_mtu", skip_serializing_if = "is_default_mtu")]
    pub mtu: u16,
    /// For a tunnel port: its endpoints. Its `name` is then only a name, and its MTU is the
    /// largest inner packet it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<GreTunnel>,
}

fn default_mtu() -> u16 {
    DEFAULT_MTU
}

fn is_default_mtu(m: &u16) -> bool {
    *m == DEFAULT_MTU
}

impl PortConfig {
    /// `name`, or `name.vid` for a VLAN port.
    pub fn key(&self) -> String {
        match self.vlan {
            Some(v) => format!("{}.{v}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Netmap {
    pub inside_vrf: u32,
    pub inside: Ipv4Net,
    pub outside_vrf: u32,
    pub outside: Ipv4Net,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nptv6 {
    pub inside_vrf: u32,
    pub inside: Ipv6Net,
    pub outside_vrf: u32,
    pub outside: Ipv6Net,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub vrf: u32,
    pub prefix: IpNet,
    /// Egress port key (`name` or `name.vid`).
    pub port: String,
    /// Next hop; absent means the prefix is on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        self.first <= p && p <= self.last
    }
}

/// One policy rule. Absent match fields match anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in counters and traces.
    pub name: String,
    /// The VRF the packet arrived in.
    pub vrf: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpNet>,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ports: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ports: Option<PortRange>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Forward untranslated in the same VRF.
    Permit,
    Deny,
    /// Count the hit and go on to the next rule.
    Count,
    /// Translate with the netmap table: the source if the packet is in a netmap's inside VRF and
    /// prefix, else the destination if it is in the outside VRF and prefix.
    Netmap,
    /// The same with the NPTv6 table.
    Nptv6,
    /// Translate the source with a NAPT pool (an existing mapping is reused).
    Napt {
        pool: String,
    },
    /// Translate the destination to the published service at the packet's destination address,
    /// protocol and port.
    Dnat,
    /// Forward untranslated to a fixed next hop (a port key, and an address unless on-link).
    RouteVia {
        port: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<IpAddr>,
    },
}

/// One problem in a config, with the path of the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Config {
    /// Parses a JSON config and validates it; every problem is reported.
    pub fn from_json(text: &str) -> Result<Config, Vec<ConfigError>> {
        let config: Config = serde_json::from_str(text).map_err(|e| {
            vec![ConfigError {
                path: format!("line {} column {}", e.line(), e.column()),
                message: e.to_string(),
            }]
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).expect("Config serializes")
    }

    /// The port with this key (`name` or `name.vid`).
    pub fn port(&self, key: &str) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.key() == key)
    }
}
