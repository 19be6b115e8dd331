//! `Config`: everything one gateway needs to forward, compiled from the plan (or hand-written).
//!
//! It is plain data with serde, so `hutong plan compile` prints it as JSON and `hutong gateway run
//! --config` reads it back. Because a config file can be edited by hand, [`Config::validate`]
//! checks it again on load and reports every problem, not just the first.

pub mod bounds;
pub mod examples;
pub mod nat;

use std::{collections::BTreeSet, fmt, net::IpAddr};

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

    /// Checks internal consistency: references resolve, VRFs exist, translations are 1:1, no
    /// route or rule crosses VRFs except through a translation.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(ConfigError { path, message });

        // Names end up in the counters file (`rule.<name> value` lines), in `/metrics` labels
        // and in logs: one character set, with nothing that could end a line, a field or a
        // quoted label there.
        let names = std::iter::once(("gateway".to_string(), "gateway", &self.gateway))
            .chain(self.vrfs.iter().enumerate().map(|(i, v)| (format!("vrfs[{i}]"), "VRF", &v.name)))
            .chain(self.policies.iter().enumerate().map(|(i, r)| (format!("policies[{i}]"), "rule", &r.name)))
            .chain(
                self.nat_pools.iter().enumerate().map(|(i, p)| (format!("nat_pools[{i}]"), "pool", &p.name)),
            )
            .chain(
                self.services.iter().enumerate().map(|(i, s)| (format!("services[{i}]"), "service", &s.name)),
            );
        for (path, what, name) in names {
            if let Some(why) = name_problem(name) {
                err(path, format!("{what} name {name:?} {why}; {NAME_RULE}"));
            }
        }

        let vrf_ids: BTreeSet<u32> = self.vrfs.iter().map(|v| v.id).collect();
        if vrf_ids.len() != self.vrfs.len() {
            err("vrfs".into(), "VRF ids must be unique".into());
        }
        if let Some(big) = vrf_ids.iter().find(|v| **v >= MAX_VRFS) {
            err("vrfs".into(), format!("VRF id {big} is not below {MAX_VRFS}"));
        }
        if self.ports.is_empty() {
            err("ports".into(), "a gateway needs at least one port".into());
        }
        // Looked up once per route, rule and tunnel: indexed, so that a gateway with tens of
        // thousands of ports and routes is checked in linear time.
        let by_key: std::collections::HashMap<String, &PortConfig> =
            self.ports.iter().rev().map(|p| (p.key(), p)).collect();
        let owned: BTreeSet<(u32, IpAddr)> =
            self.ports.iter().flat_map(|q| q.addresses.iter().map(move |a| (q.vrf, a.addr()))).collect();
        let mut keys = BTreeSet::new();
        // GRE packets find their tunnel port by (underlay VRF, local, remote): two tunnels with
        // the same ends would share one port's traffic.
        let mut tunnel_ends = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let path = format!("ports[{i}]");
            if !keys.insert(p.key()) {
                err(path.clone(), format!("port {:?} appears twice", p.key()));
            }
            if p.name.is_empty() || p.name.len() > 15 {
                err(path.clone(), format!("interface name {:?} must be 1-15 bytes", p.name));
            }
            if p.vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
                err(path.clone(), format!("VLAN {} is outside 1-4094", p.vlan.unwrap_or(0)));
            }
            if p.mtu < 576 {
                err(path.clone(), format!("MTU {} is below 576", p.mtu));
            }
            if !vrf_ids.contains(&p.vrf) {
                err(path.clone(), format!("VRF {} is not declared in vrfs", p.vrf));
            }
            if p.role == Role::Extranet && p.vrf != EXTRANET_VRF {
                err(path.clone(), format!("an extranet port must be in VRF {EXTRANET_VRF}"));
            }
            if matches!(p.role, Role::Legacy | Role::InternetAccess) && p.vrf == EXTRANET_VRF {
                err(path.clone(), "a legacy port needs its legacy network's VRF, not the extranet's".into());
            }
            match (&p.tunnel, p.role) {
                (Some(t), Role::Tunnel) => {
                    if !tunnel_ends.insert((t.underlay_vrf, t.local, t.remote)) {
                        err(
                            path.clone(),
                            format!(
                                "a second tunnel from {} to {} in VRF {}: GRE packets could not tell them apart",
                                t.local, t.remote, t.underlay_vrf
                            ),
                        );
                    }
                    if p.vlan.is_some() {
                        err(path.clone(), "a tunnel port has no VLAN".into());
                    }
                    if !owned.contains(&(t.underlay_vrf, IpAddr::V4(t.local))) {
                        err(
                            path,
                            format!(
                                "tunnel source {} is not an address of this gateway in VRF {}",
                                t.local, t.underlay_vrf
                            ),
                        );
                    }
                }
                (None, Role::Tunnel) => err(path, "a tunnel port needs its tunnel endpoints".into()),
                (Some(_), _) => err(path, "only a port with role tunnel has tunnel endpoints".into()),
                (None, _) => {}
            }
        }
        let translations =
            self.netmaps
                .iter()
                .map(|n| (IpNet::V4(n.inside), n.inside_vrf, IpNet::V4(n.outside), n.outside_vrf, "netmaps"))
                .chain(self.nptv6.iter().map(|n| {
                    (IpNet::V6(n.inside), n.inside_vrf, IpNet::V6(n.outside), n.outside_vrf, "nptv6")
                }));
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for (inside, inside_vrf, outside, outside_vrf, table) in translations {
            let i = counts.entry(table).or_default();
            let path = format!("{table}[{i}]");
            *i += 1;
            if inside.prefix_len() != outside.prefix_len() {
                err(path.clone(), format!("{inside} -> {outside} maps prefixes of different sizes"));
            }
            if inside != inside.trunc() || outside != outside.trunc() {
                err(path.clone(), "translation prefixes must have no host bits set".into());
            }
            if table == "nptv6" && inside.prefix_len() > 48 {
                err(
                    path.clone(),
                    "NPTv6 prefixes longer than /48 are not supported (RFC 6296 section 3.7)".into(),
                );
            }
            for vrf in [inside_vrf, outside_vrf] {
                if !vrf_ids.contains(&vrf) {
                    err(path.clone(), format!("VRF {vrf} is not declared in vrfs"));
                }
            }
            if inside_vrf == outside_vrf {
                err(path, "a translation must cross from one VRF to another".into());
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            if r.prefix != r.prefix.trunc() {
                err(path.clone(), format!("route prefix {} has host bits set", r.prefix));
            }
            if r.via.is_some_and(|v| v.is_ipv4() != matches!(r.prefix, IpNet::V4(_))) {
                err(path.clone(), "next hop and prefix are of different address families".into());
            }
            check_port_in_vrf(&by_key, &path, &r.port, r.vrf, &mut err);
        }
        let mut rule_names = BTreeSet::new();
        for (i, r) in self.policies.iter().enumerate() {
            let path = format!("policies[{i}]");
            if r.name.is_empty() || !rule_names.insert(r.name.as_str()) {
                err(path.clone(), format!("rule name {:?} must be non-empty and unique", r.name));
            }
            if !vrf_ids.contains(&r.vrf) {
                err(path.clone(), format!("VRF {} is not declared in vrfs", r.vrf));
            }
            if let (Some(s), Some(d)) = (r.src, r.dst) {
                if matches!(s, IpNet::V4(_)) != matches!(d, IpNet::V4(_)) {
                    err(path.clone(), "src and dst are of different address families".into());
                }
            }
            if (r.src_ports.is_some() || r.dst_ports.is_some()) && !matches!(r.proto, Some(6) | Some(17)) {
                err(path.clone(), "port ranges need proto 6 (TCP) or 17 (UDP)".into());
            }
            for range in [r.src_ports, r.dst_ports].into_iter().flatten() {
                if range.first > range.last {
                    err(path.clone(), format!("port range {}-{} is empty", range.first, range.last));
                }
            }
            if let Action::RouteVia { port, .. } = &r.action {
                check_port_in_vrf(&by_key, &path, port, r.vrf, &mut err);
            }
        }
        nat::validate(self, &vrf_ids, &mut err);
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// A route or route-via must leave through an existing port of its own VRF: crossing VRFs
/// untranslated would leak one legacy network into another.
fn check_port_in_vrf(
    ports: &std::collections::HashMap<String, &PortConfig>,
    path: &str,
    key: &str,
    vrf: u32,
    err: &mut impl FnMut(String, String),
) {
    match ports.get(key) {
        None => err(path.to_string(), format!("port {key:?} does not exist")),
        Some(p) if p.vrf != vrf => {
            err(path.to_string(), format!("VRF {vrf} leaves through port {key:?} of VRF {}", p.vrf))
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{demo, port, rule};

    #[test]
    fn names_that_would_forge_a_counter_or_label_line_are_refused() {
        for bad in ["a\nrule.x 999", "x\"} 1\nfake{a=\"", "with space", "", &"x".repeat(129)] {
            let mut c = demo();
            c.policies[0].name = bad.into();
            let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
            assert!(
                text.iter().any(|e| e.contains("rule name") && e.contains(NAME_RULE)),
                "{bad:?}: {text:#?}"
            );
        }
        let mut c = demo();
        c.vrfs[1].name = "city\nhall".into();
        assert!(c.validate().is_err());
        let mut c = demo();
        c.policies[0].name = "430100:city-hall:netmap0/out@v2+x".into();
        c.validate().unwrap();
    }

    /// What the probes sent: well-typed, but more than any machine should be asked for.
    #[test]
    fn pools_beyond_any_machine_are_refused() {
        let with_pool = |max_sessions: u32, addresses: &str| {
            let mut c = demo();
            c.nat_pools = vec![NatPool {
                max_sessions,
                ..NatPool::defaults("p".into(), 1, 0, vec![addresses.parse().unwrap()])
            }];
            c.validate().map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
        };
        let e = with_pool(u32::MAX, "198.18.30.0/24").unwrap_err();
        assert!(e.contains("max_sessions 4294967295 must be 1-16777216"), "{e}");
        let e = with_pool(1000, "100.64.0.0/10").unwrap_err();
        assert!(e.contains("4194304 outside addresses; at most 65536"), "{e}");
        with_pool(bounds::MAX_POOL_SESSIONS, "198.18.0.0/16").unwrap();
    }

    #[test]
    fn tunnel_ports_need_their_own_local_address() {
        let mut c = demo();
        let mut t = port("gre0", Role::Tunnel, 1, "10.99.0.1/30");
        t.tunnel = Some(GreTunnel {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            underlay_vrf: 0,
            key: None,
        });
        c.ports.push(t);
        let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|e| e.contains("tunnel source 192.0.2.1 is not an address of this gateway")),
            "{text:#?}"
        );
        c.ports[2].tunnel.as_mut().unwrap().local = "198.19.0.1".parse().unwrap();
        c.validate().unwrap();
        let mut twin = c.ports[2].clone();
        twin.name = "gre1".into();
        c.ports.push(twin);
        let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(text.iter().any(|e| e.contains("a second tunnel from 198.19.0.1 to 192.0.2.2")), "{text:#?}");
        c.ports.pop();
        c.ports[2].tunnel = None;
        assert!(c.validate().is_err(), "a tunnel port without endpoints");
    }

    #[test]
    fn policy_problems_are_reported() {
        let mut c = demo();
        c.policies.push(rule("lan-out", 9, Some("10.0.0.0/8"), Some("2001:db8::/32"), Action::Permit));
        let mut ports = rule("ports", 1, None, None, Action::RouteVia { port: "uplink0".into(), via: None });
        ports.dst_ports = Some(PortRange { first: 90, last: 80 });
        c.policies.push(ports);
        let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
        for want in [
            "unique",
            "VRF 9 is not declared",
            "different address families",
            "need proto",
            "is empty",
            "VRF 1 leaves through port \"uplink0\" of VRF 0",
        ] {
            assert!(text.iter().any(|e| e.contains(want)), "missing {want:?} in {text:#?}");
        }
    }

    #[test]
    fn demo_is_valid_and_round_trips_through_json() {
        let c = demo();
        c.validate().unwrap();
        assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn every_problem_is_reported() {
        let mut c = demo();
        c.netmaps[0].outside = "198.18.0.0/16".parse().unwrap();
        c.routes[0].port = "nope".into();
        c.ports[1].vrf = 7;
        let errors = c.validate().unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(text.iter().any(|e| e.starts_with("netmaps[0]") && e.contains("different sizes")));
        assert!(text.iter().any(|e| e.starts_with("routes[0]") && e.contains("\"nope\"")));
        assert!(text.iter().any(|e| e.starts_with("ports[1]") && e.contains("VRF 7")));
        assert!(text.iter().any(|e| e.starts_with("ports[1]") && e.contains("extranet port")));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = demo().to_json().replacen("\"gateway\"", "\"gatewya\": 1, \"gateway\"", 1);
        let errors = Config::from_json(&text).unwrap_err();
        assert!(errors[0].message.contains("unknown field `gatewya`"), "{errors:?}");
    }
}
