//! Small, valid configs to build tests and examples on: the demo's shape and its parts. They
//! take addresses as literals and panic on one that does not parse.

use crate::*;

/// A port with one address, untagged, the default MTU.
pub fn port(name: &str, role: Role, vrf: u32, addr: &str) -> PortConfig {
    PortConfig {
        name: name.into(),
        vlan: None,
        role,
        vrf,
        addresses: vec![addr.parse().unwrap()],
        mtu: DEFAULT_MTU,
        tunnel: None,
    }
}

/// A rule on prefixes only.
pub fn rule(name: &str, vrf: u32, src: Option<&str>, dst: Option<&str>, action: Action) -> Rule {
    Rule {
        name: name.into(),
        vrf,
        src: src.map(|s| s.parse().unwrap()),
        dst: dst.map(|s| s.parse().unwrap()),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action,
    }
}

/// The demo's shape: one legacy network netmapped onto a plan block, published both ways.
pub fn demo() -> Config {
    Config {
        gateway: "gw".into(),
        vrfs: vec![Vrf { id: 0, name: "extranet".into() }, Vrf { id: 1, name: "lan".into() }],
        ports: vec![
            port("legacy0", Role::Legacy, 1, "10.20.0.1/24"),
            port("uplink0", Role::Extranet, 0, "198.19.0.1/24"),
        ],
        netmaps: vec![Netmap {
            inside_vrf: 1,
            inside: "10.20.0.0/24".parse().unwrap(),
            outside_vrf: 0,
            outside: "198.18.20.0/24".parse().unwrap(),
        }],
        nptv6: vec![],
        routes: vec![RouteConfig {
            vrf: 0,
            prefix: "0.0.0.0/0".parse().unwrap(),
            port: "uplink0".into(),
            via: Some("198.19.0.2".parse().unwrap()),
        }],
        nat_pools: vec![],
        services: vec![],
        policies: vec![
            rule("lan-out", 1, Some("10.20.0.0/24"), None, Action::Netmap),
            rule("lan-in", 0, None, Some("198.18.20.0/24"), Action::Netmap),
        ],
    }
}
