//! Gateways: their links and tunnels, next hops, VRF limits, what compile would refuse.

use super::*;

/// Whatever the compiler or the data plane would refuse, check refuses first, at its place.
#[test]
fn check_refuses_what_compile_would() {
    run(&[
        Case {
            base: CONVERSIONS,
            from: "- id: clinic",
            to: "- id: \"cli:nic\"",
            want: &[(
                "legacy network id \"cli:nic\" is not a valid id: character 4 ':' is not allowed",
                "cli:nic",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "- id: clinic",
            to: "- id: extranet",
            want: &[("legacy network id \"extranet\" is reserved", "id: extranet")],
        },
        Case {
            base: CONVERSIONS,
            from: "- id: clinic",
            to: "- id: internet-access",
            want: &[("legacy network id \"internet-access\" is reserved", "id: internet-access")],
        },
        Case {
            base: CONVERSIONS,
            from: "          - { name: uplink0,",
            to: "          - { name: legacy0.100, role: legacy, network: tax-office, address: 10.0.0.2/16 }\n          - { name: uplink0,",
            want: &[(
                "interface \"legacy0.100\" is the same port as interface \"legacy0\" on VLAN 100",
                "name: legacy0.100",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "name: no-telnet",
            to: "name: \"no:telnet\"",
            want: &[("policy name \"no:telnet\" is not a valid id", "no:telnet")],
        },
        Case {
            base: CONVERSIONS,
            from: "name: count-web",
            to: "name: no-telnet",
            want: &[(
                "policy name \"no-telnet\" is used twice at node 430102",
                "name: no-telnet, network: tax-office, protocol: tcp, ports: \"80",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "name: portal",
            to: "name: \"portal/x\"",
            want: &[("service name \"portal/x\" is not a valid id", "portal/x")],
        },
    ]);
}

#[test]
fn a_gateway_has_at_most_the_vrfs_the_data_plane_holds() {
    let mut text = String::from(
        "plan: many\nnodes:\n  - code: \"430100\"\n    name: n\n    level: prefecture\n    allocations: { public: [198.18.0.0/16] }\n    legacy_networks:\n",
    );
    let n = hutong_config::MAX_VRFS as usize; // with the extranet, one too many
    for i in 0..n {
        text += &format!("      - {{ id: n{i}, prefixes: [10.0.0.0/24] }}\n");
    }
    text += "    gateways:\n      - id: gw\n        interfaces:\n          - { name: up, role: extranet, address: 198.18.0.1/24 }\n";
    for i in 0..n {
        text += &format!(
            "          - {{ name: l, vlan: {}, role: legacy, network: n{i}, address: 10.0.0.1/24 }}\n",
            i % 4094 + 1
        );
    }
    let errs = errors(&text);
    let line = line_of(&text, &format!("network: n{},", n - 1));
    assert!(
        errs.iter().any(|e| e.contains("gateway \"gw\" needs more than 4096 VRFs")
            && e.starts_with(&format!("t.yaml:{line}:"))),
        "{:#?}",
        &errs[..errs.len().min(5)]
    );
}

/// Next hops are neighbours; interface addresses are hosts of their subnets, of the right
/// network; prefixes have no host bits.
#[test]
fn next_hops_interfaces_and_host_bits() {
    run(&[
        Case {
            base: DEMO,
            from: "via: 198.19.0.2",
            to: "via: 198.19.0.1",
            want: &[(
                "next hop 198.19.0.1 is an address of gateway \"gw-changsha\" itself",
                "via: 198.19.0.1",
            )],
        },
        Case {
            base: DEMO,
            from: "via: 198.19.0.2",
            to: "via: 198.19.0.0",
            want: &[("next hop 198.19.0.0 is the network address of 198.19.0.0/24", "via: 198.19.0.0")],
        },
        Case {
            base: DEMO,
            from: "via: 198.19.0.2",
            to: "via: 198.19.0.255",
            want: &[("next hop 198.19.0.255 is the broadcast address of 198.19.0.0/24", "198.19.0.255")],
        },
        Case {
            base: DEMO,
            from: "via: 198.19.0.2",
            to: "via: 198.18.250.1",
            want: &[("next hop 198.18.250.1 is not on the subnet of any extranet interface", "198.18.250.1")],
        },
        Case {
            base: DEMO,
            from: "address: 198.19.0.1/24",
            to: "address: 198.19.0.0/24",
            want: &[(
                "interface address 198.19.0.0/24 is the network address of its subnet 198.19.0.0/24",
                "address: 198.19.0.0/24",
            )],
        },
        Case {
            base: DEMO,
            from: "address: 10.20.0.1/24",
            to: "address: 10.30.0.1/24",
            want: &[(
                "legacy interface subnet 10.30.0.1/24 is outside legacy network \"city-hall\"'s prefixes",
                "10.30.0.1/24",
            )],
        },
        Case {
            base: DEMO,
            from: "address: 198.19.0.1/24",
            to: "address: 198.19.0.1/4",
            want: &[("interface subnet 192.0.0.0/4 is wider than /8", "198.19.0.1/4")],
        },
        Case {
            base: DEMO,
            from: "prefixes: [10.20.0.0/24]",
            to: "prefixes: [10.20.0.1/24]",
            want: &[("10.20.0.1/24 has host bits set", "prefixes: [10.20.0.1/24]")],
        },
        Case {
            base: CONVERSIONS,
            from: "remote: 198.19.9.1",
            to: "remote: 198.19.4.1",
            want: &[(
                "tunnel remote 198.19.4.1 is an address of gateway \"gw-furong\" itself",
                "remote: 198.19.4.1",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "prefix: 0.0.0.0/0, via: 198.19.4.2",
            to: "prefix: 224.0.0.0/8, via: 198.19.4.2",
            want: &[("route to 224.0.0.0/8", "224.0.0.0/8")],
        },
    ]);
}

#[test]
fn links_and_tunnels_are_where_they_can_work() {
    let gre_two = "            tunnel: { local: 198.19.4.1, remote: 198.19.9.1, key: 7 }\n          \
                   - { name: gre-two, role: tunnel, network: tax-office, address: 10.98.0.1/30, \
                   tunnel: { local: 198.19.4.1, remote: 198.19.9.1 } }\n";
    // A legacy link narrower than its network's prefix, for a subnet's own broadcast address.
    let narrow = PLANWIDE
        .replace("network: furong-lan, address: 10.0.0.1/16", "network: furong-lan, address: 10.0.0.1/24");
    assert_eq!(errors(&narrow), Vec::<String>::new());
    let two_uplinks = CONVERSIONS.replace(
        "          - { name: inet0,",
        "          - { name: uplink1, role: extranet, address: 198.19.5.1/30 }\n          - { name: inet0,",
    );
    assert_eq!(errors(&two_uplinks), Vec::<String>::new());
    // The clinic's tunnel carrying the extranet instead (its route moved along).
    let extranet_tunnel = CONVERSIONS
        .replace(
            "            network: clinic\n            address: 10.99.0.1/30",
            "            address: 198.19.6.1/30",
        )
        .replace("via: 10.99.0.2, network: clinic", "via: 198.19.6.2");
    assert_eq!(errors(&extranet_tunnel), Vec::<String>::new());
    // The tunnel carrying the tax office, its link inside the office's prefix.
    let tax_tunnel = CONVERSIONS
        .replace("network: tax-office, address: 10.0.0.1/16", "network: tax-office, address: 10.0.0.1/24")
        .replace(
            "            network: clinic\n            address: 10.99.0.1/30",
            "            network: tax-office\n            address: 10.0.9.1/30",
        )
        .replace("via: 10.99.0.2, network: clinic", "via: 10.0.9.2, network: tax-office");
    assert_eq!(errors(&tax_tunnel), Vec::<String>::new());
    run(&[
        // GRE packets find their tunnel by its ends.
        Case {
            base: CONVERSIONS,
            from: "            tunnel: { local: 198.19.4.1, remote: 198.19.9.1, key: 7 }\n",
            to: gre_two,
            want: &[(
                "tunnel \"gre-two\" has the same ends (198.19.4.1 to 198.19.9.1) as tunnel \"gre-clinic\": the data plane finds a tunnel by its ends, not by its GRE key",
                "gre-two",
            )],
        },
        // Connected subnets of one VRF do not overlap: two uplinks, two links into one network.
        Case {
            base: PLANWIDE,
            from: "          - { name: uplink0, role: extranet, address: 198.18.40.1/30 }\n",
            to: "          - { name: uplink0, role: extranet, address: 198.18.40.1/30 }\n                  - { name: uplink1, role: extranet, address: 198.18.40.5/29 }\n",
            want: &[(
                "interface \"uplink1\" (198.18.40.5/29) overlaps interface \"uplink0\" (198.18.40.1/30) in the extranet VRF",
                "uplink1",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "          - { name: uplink0,",
            to: "          - { name: legacy1, role: legacy, network: tax-office, address: 10.0.9.1/24 }\n          - { name: uplink0,",
            want: &[(
                "interface \"legacy1\" (10.0.9.1/24) overlaps interface \"legacy0.100\" (10.0.0.1/16) in the \"tax-office\" VRF",
                "legacy1",
            )],
        },
        // A link's subnet holding translated addresses: the gateway would look for them there.
        Case {
            base: PLANWIDE,
            from: "address: 198.18.40.1/30",
            to: "address: 198.18.40.1/27",
            want: &[(
                "interface subnet 198.18.40.0/27 overlaps NAPT pool 198.18.40.16/28 of legacy network \"furong-lan\" (node 430102)",
                "198.18.40.1/27",
            )],
        },
        // A tunnel carrying the extranet has an extranet address: plan space, one owner.
        Case {
            base: CONVERSIONS,
            from: "            network: clinic\n            address: 10.99.0.1/30",
            to: "            address: 10.99.0.1/30",
            want: &[("interface address: 10.99.0.1/32 is private-use space", "address: 10.99.0.1/30")],
        },
        Case {
            base: PLANWIDE,
            from: "          - { name: uplink0, role: extranet, address: 198.18.80.1/30 }\n",
            to: "          - { name: uplink0, role: extranet, address: 198.18.80.1/30 }\n                  - { name: gre0, role: tunnel, address: 198.18.40.1/30, tunnel: { local: 198.18.80.1, remote: 198.18.0.1 } }\n",
            want: &[("address 198.18.40.1 of gateway \"gw-hetang\"'s interface \"gre0\"", "name: gre0")],
        },
        Case {
            base: PLANWIDE,
            from: "          - { name: uplink0, role: extranet, address: 198.18.80.1/30 }\n",
            to: "          - { name: uplink0, role: extranet, address: 198.18.80.1/30 }\n                  - { name: gre0, role: tunnel, address: 198.18.80.9/30, tunnel: { local: 198.18.80.1, remote: 198.18.80.10 } }\n",
            want: &[(
                "tunnel remote 198.18.80.10 is reached through tunnel \"gre0\" (its best route is a /30)",
                "name: gre0",
            )],
        },
        // A tunnel's far end is a peer's extranet address: no translated address, no broadcast.
        Case {
            base: CONVERSIONS,
            from: "remote: 198.19.9.1",
            to: "remote: 198.18.41.7",
            want: &[(
                "tunnel remote 198.18.41.7 is inside netmap target 198.18.41.0/24 of legacy network \"tax-office\" (node 430102)",
                "remote: 198.18.41.7",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "remote: 198.19.9.1",
            to: "remote: 198.19.4.3",
            want: &[(
                "tunnel remote 198.19.4.3 is the broadcast address of 198.19.4.0/30",
                "remote: 198.19.4.3",
            )],
        },
        // Any subnet the gateway is on, and any route: the remote is reached by the extranet.
        Case {
            base: &two_uplinks,
            from: "remote: 198.19.9.1",
            to: "remote: 198.19.5.0",
            want: &[(
                "tunnel remote 198.19.5.0 is the network address of 198.19.5.0/30",
                "remote: 198.19.5.0",
            )],
        },
        Case {
            base: &extranet_tunnel,
            from: "          - { prefix: 0.0.0.0/0, via: 198.19.4.2 }",
            to: "          - { prefix: 0.0.0.0/0, via: 198.19.4.2 }\n          - { prefix: 198.19.9.0/24, via: 198.19.6.2 }",
            want: &[(
                "tunnel remote 198.19.9.1 is reached through tunnel \"gre-clinic\" (its best route is a /24)",
                "remote: 198.19.9.1",
            )],
        },
        // A legacy VRF's routes lead to the network's own parts, never over the extranet's.
        Case {
            base: CONVERSIONS,
            from: "prefix: 10.50.0.0/16, via: 10.99.0.2",
            to: "prefix: 0.0.0.0/0, via: 10.99.0.2",
            want: &[(
                "route 0.0.0.0/0 in legacy network \"clinic\"'s VRF overlaps public block 198.18.40.0/22 of node 430102: traffic to the extranet is translated, never routed inside a legacy network",
                "prefix: 0.0.0.0/0, via: 10.99.0.2",
            )],
        },
        // Nothing reaches an isolated subnet: not a next hop, not the gateway itself.
        Case {
            base: CONVERSIONS,
            from: "          - { prefix: 10.50.0.0/16, via: 10.99.0.2, network: clinic }",
            to: "          - { prefix: 10.50.0.0/16, via: 10.99.0.2, network: clinic }\n          - { prefix: 10.60.0.0/16, via: 10.0.200.9, network: tax-office }",
            want: &[
                ("next hop 10.0.200.9 reaches into isolated subnet 10.0.200.0/24", "via: 10.0.200.9"),
                (
                    "isolated subnet 10.0.200.0/24 is reached by next hop 10.0.200.9",
                    "isolated: [10.0.200.0/24]",
                ),
            ],
        },
        Case {
            base: CONVERSIONS,
            from: "network: tax-office, address: 10.0.0.1/16",
            to: "network: tax-office, address: 10.0.200.1/16",
            want: &[
                (
                    "gateway \"gw-furong\"'s interface address 10.0.200.1 reaches into isolated subnet 10.0.200.0/24",
                    "address: 10.0.200.1/16",
                ),
                (
                    "isolated subnet 10.0.200.0/24 is reached by gateway \"gw-furong\"'s interface address 10.0.200.1",
                    "isolated: [10.0.200.0/24]",
                ),
            ],
        },
        // A service is published from a host: not the gateway, not a network or broadcast address.
        Case {
            base: CONVERSIONS,
            from: "inside: \"10.0.5.8:8080\"",
            to: "inside: \"10.0.0.1:8080\"",
            want: &[(
                "service \"portal\"'s inside address 10.0.0.1 is gateway \"gw-furong\"'s own address on \"tax-office\"",
                "10.0.0.1:8080",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "inside: \"10.0.5.8:8080\"",
            to: "inside: \"10.0.255.255:8080\"",
            want: &[(
                "service \"portal\"'s inside address 10.0.255.255 is the broadcast address of 10.0.0.0/16",
                "10.0.255.255:8080",
            )],
        },
        Case {
            base: &tax_tunnel,
            from: "inside: \"10.0.5.8:8080\"",
            to: "inside: \"10.0.9.1:8080\"",
            want: &[(
                "service \"portal\"'s inside address 10.0.9.1 is gateway \"gw-furong\"'s own address on \"tax-office\"",
                "10.0.9.1:8080",
            )],
        },
        Case {
            base: &tax_tunnel,
            from: "inside: \"10.0.5.8:8080\"",
            to: "inside: \"10.0.9.3:8080\"",
            want: &[(
                "service \"portal\"'s inside address 10.0.9.3 is the broadcast address of 10.0.9.0/30",
                "10.0.9.3:8080",
            )],
        },
        Case {
            base: &narrow,
            from: "inside: \"10.0.5.8:8080\"",
            to: "inside: \"10.0.0.255:8080\"",
            want: &[(
                "service \"portal\"'s inside address 10.0.0.255 is the broadcast address of 10.0.0.0/24",
                "10.0.0.255:8080",
            )],
        },
        // Names that would be one file, or that Linux reads as a pattern.
        Case {
            base: PLANWIDE,
            from: "id: gw-hetang",
            to: "id: GW-Furong",
            want: &[(
                "gateway id \"GW-Furong\" differs from gateway id \"gw-furong\" only in case",
                "GW-Furong",
            )],
        },
        Case {
            base: DEMO,
            from: "name: uplink0",
            to: "name: up%d",
            want: &[(
                "interface name \"up%d\" is not a valid Linux interface name: character 3 '%' is not allowed",
                "up%d",
            )],
        },
    ]);
}

#[test]
fn a_next_hop_may_be_the_gateways_address_in_another_vrf() {
    // 10.0.0.1 is the gateway's own in tax-office's VRF; in the clinic's it is a neighbour.
    let text = CONVERSIONS
        .replace("network: clinic, address: 10.0.0.1/20", "network: clinic, address: 10.0.0.2/20")
        .replace(
            "          - { prefix: 10.50.0.0/16, via: 10.99.0.2, network: clinic }",
            "          - { prefix: 10.50.0.0/16, via: 10.99.0.2, network: clinic }\n          - { prefix: 10.70.0.0/16, via: 10.0.0.1, network: clinic }",
        );
    assert_eq!(errors(&text), Vec::<String>::new());
    let own = text.replace("via: 10.0.0.1, network: clinic", "via: 10.0.0.2, network: clinic");
    let errs = errors(&own);
    assert!(
        errs.iter().any(|e| e.contains("next hop 10.0.0.2 is an address of gateway \"gw-furong\" itself")),
        "{errs:#?}"
    );
}
