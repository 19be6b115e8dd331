//! `Config`: everything one gateway needs to forward, compiled from the plan (or hand-written).
//!
//! It is plain data with serde, so `hutong plan compile` prints it as JSON and `hutong gateway run
//! --config` reads it back. Because a config file can be edited by hand, [`Config::validate`]
//! checks it again on load and reports every problem, not just the first.

use std::{collections::BTreeSet, fmt, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// VRF 0 is the extranet (the plan's own address space); legacy networks get 1, 2, ...
pub const EXTRANET_VRF: u32 = 0;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gateway this config belongs to (its id in the plan).
    pub gateway: String,
    pub vrfs: Vec<Vrf>,
    pub ports: Vec<PortConfig>,
    /// Stateless 1:1 prefix translations between a legacy VRF and the extranet.
    #[serde(default)]
    pub netmaps: Vec<Netmap>,
    /// Static routes. Each port's own prefixes are connected routes and need no entry here.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrf {
    pub id: u32,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Faces a legacy network; its VRF is that network's.
    Legacy,
    /// Faces the extranet; VRF 0.
    Extranet,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Interface name on the gateway host.
    pub name: String,
    pub role: Role,
    pub vrf: u32,
    /// The gateway's own addresses on this port (with their prefix: the connected route).
    pub addresses: Vec<Ipv4Net>,
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
pub struct RouteConfig {
    pub vrf: u32,
    pub prefix: Ipv4Net,
    /// Egress port name.
    pub port: String,
    /// Next hop; absent means the prefix is on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Ipv4Addr>,
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

    pub fn port(&self, name: &str) -> Option<&PortConfig> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Checks internal consistency: references resolve, VRFs exist, netmaps are 1:1.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(ConfigError { path, message });

        let vrf_ids: BTreeSet<u32> = self.vrfs.iter().map(|v| v.id).collect();
        if vrf_ids.len() != self.vrfs.len() {
            err("vrfs".into(), "VRF ids must be unique".into());
        }
        if self.ports.is_empty() {
            err("ports".into(), "a gateway needs at least one port".into());
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let path = format!("ports[{i}]");
            if !names.insert(p.name.as_str()) {
                err(path.clone(), format!("port {:?} appears twice", p.name));
            }
            if p.name.is_empty() || p.name.len() > 15 {
                err(path.clone(), format!("interface name {:?} must be 1-15 bytes", p.name));
            }
            if !vrf_ids.contains(&p.vrf) {
                err(path.clone(), format!("VRF {} is not declared in vrfs", p.vrf));
            }
            if p.role == Role::Extranet && p.vrf != EXTRANET_VRF {
                err(path.clone(), format!("an extranet port must be in VRF {EXTRANET_VRF}"));
            }
            if p.role == Role::Legacy && p.vrf == EXTRANET_VRF {
                err(path, "a legacy port needs its legacy network's VRF, not the extranet's".into());
            }
        }
        for (i, n) in self.netmaps.iter().enumerate() {
            let path = format!("netmaps[{i}]");
            if n.inside.prefix_len() != n.outside.prefix_len() {
                err(
                    path.clone(),
                    format!("netmap {} -> {} maps prefixes of different sizes", n.inside, n.outside),
                );
            }
            if n.inside != n.inside.trunc() || n.outside != n.outside.trunc() {
                err(path.clone(), "netmap prefixes must have no host bits set".into());
            }
            for vrf in [n.inside_vrf, n.outside_vrf] {
                if !vrf_ids.contains(&vrf) {
                    err(path.clone(), format!("VRF {vrf} is not declared in vrfs"));
                }
            }
            if n.inside_vrf == n.outside_vrf {
                err(path, "a netmap must cross from one VRF to another".into());
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            match self.port(&r.port) {
                None => err(path, format!("port {:?} does not exist", r.port)),
                Some(p) if p.vrf != r.vrf => err(
                    path,
                    format!("route in VRF {} leaves through port {:?} of VRF {}", r.vrf, p.name, p.vrf),
                ),
                Some(_) => {}
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The demo's shape: one legacy network netmapped onto a plan block.
    pub(crate) fn demo() -> Config {
        Config {
            gateway: "gw".into(),
            vrfs: vec![Vrf { id: 0, name: "extranet".into() }, Vrf { id: 1, name: "lan".into() }],
            ports: vec![
                PortConfig {
                    name: "legacy0".into(),
                    role: Role::Legacy,
                    vrf: 1,
                    addresses: vec!["10.20.0.1/24".parse().unwrap()],
                },
                PortConfig {
                    name: "uplink0".into(),
                    role: Role::Extranet,
                    vrf: 0,
                    addresses: vec!["198.19.0.1/24".parse().unwrap()],
                },
            ],
            netmaps: vec![Netmap {
                inside_vrf: 1,
                inside: "10.20.0.0/24".parse().unwrap(),
                outside_vrf: 0,
                outside: "198.18.20.0/24".parse().unwrap(),
            }],
            routes: vec![RouteConfig {
                vrf: 0,
                prefix: "0.0.0.0/0".parse().unwrap(),
                port: "uplink0".into(),
                via: Some("198.19.0.2".parse().unwrap()),
            }],
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
