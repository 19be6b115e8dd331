//! The plan's promise: one owner for every address, plan-wide; a legacy network has one
//! gateway; isolation is absolute; translations are bijections.

use super::*;

/// Every address has one owner across the whole tree: top-level nodes, cousins, a parent's own
/// translations and its children's blocks, zones, and gateways' own addresses.
#[test]
fn one_owner_per_address_plan_wide() {
    run(&[
        // Cousins (their prefectures have no blocks): never compared before.
        Case {
            base: PLANWIDE,
            from: "public: [198.18.80.0/22]",
            to: "public: [198.18.40.0/23]",
            want: &[
                (
                    "public block 198.18.40.0/23 of node 430202 overlaps public block 198.18.40.0/22 of node 430102",
                    "198.18.40.0/23",
                ),
                (
                    "public block 198.18.40.0/22 of node 430102 overlaps public block 198.18.40.0/23 of node 430202",
                    "198.18.40.0/22",
                ),
            ],
        },
        // Two top-level nodes.
        Case {
            base: PLANWIDE,
            from: "plan: planwide\nnodes:\n",
            to: "plan: planwide\nnodes:\n  - code: \"440000\"\n    name: Guangdong\n    level: province\n    allocations: { public: [198.18.128.0/17] }\n",
            want: &[(
                "public block 198.18.128.0/17 of node 440000 overlaps public block 198.18.0.0/16 of node 430000",
                "198.18.128.0/17",
            )],
        },
        // A parent's own netmap target inside a child's block.
        Case {
            base: PLANWIDE,
            from: "to: 198.18.1.0/24",
            to: "to: 198.18.42.0/24",
            want: &[
                (
                    "netmap target 198.18.42.0/24 of legacy network \"prov-lan\" (node 430000) overlaps public block 198.18.40.0/22 of node 430102",
                    "198.18.42.0/24",
                ),
                (
                    "public block 198.18.40.0/22 of node 430102 overlaps netmap target 198.18.42.0/24",
                    "public: [198.18.40.0/22]",
                ),
            ],
        },
        // An internet-access block over another node's public space in use (its pool).
        Case {
            base: PLANWIDE,
            from: "public: [198.18.80.0/22]\n",
            to: "public: [198.18.80.0/22]\n              internet: [198.18.40.16/28]\n",
            want: &[
                (
                    "internet-access block 198.18.40.16/28 of node 430202 overlaps public block 198.18.40.0/22 of node 430102",
                    "internet: [198.18.40.16/28]",
                ),
                (
                    "NAPT pool 198.18.40.16/28 of legacy network \"furong-lan\" (node 430102) overlaps internet-access block 198.18.40.16/28 of node 430202",
                    "pool: [198.18.40.16/28]",
                ),
            ],
        },
        // The public and internet-access areas of one node.
        Case {
            base: CONVERSIONS,
            from: "internet: [198.19.200.0/28]",
            to: "internet: [198.18.43.0/28]",
            want: &[(
                "internet-access block 198.18.43.0/28 of node 430102 overlaps public block 198.18.40.0/22 of node 430102",
                "internet: [198.18.43.0/28]",
            )],
        },
        // Department VPNs of cousins.
        Case {
            base: PLANWIDE,
            from: "ipv4: [10.201.0.0/16]",
            to: "ipv4: [10.200.128.0/17]",
            want: &[(
                "dedicated (department \"tax\") block 10.200.128.0/17 of node 430202 overlaps dedicated (department \"tax\") block 10.200.0.0/16 of node 430102",
                "10.200.128.0/17",
            )],
        },
        // Two gateways' extranet addresses, and an address in a cousin's block.
        Case {
            base: PLANWIDE,
            from: "name: uplink0, role: extranet, address: 198.18.80.1/30",
            to: "name: up1, role: extranet, address: 198.18.40.1/30",
            want: &[
                (
                    "address 198.18.40.1 of gateway \"gw-hetang\"'s interface \"up1\" (node 430202) overlaps address 198.18.40.1 of gateway \"gw-furong\"'s interface \"uplink0\" (node 430102)",
                    "name: up1",
                ),
                (
                    "address 198.18.40.1 of gateway \"gw-furong\"'s interface \"uplink0\" (node 430102) overlaps address 198.18.40.1 of gateway \"gw-hetang\"",
                    "name: uplink0, role: extranet, address: 198.18.40.1/30",
                ),
            ],
        },
        Case {
            base: PLANWIDE,
            from: "address: 198.18.80.1/30",
            to: "address: 198.18.43.1/30",
            want: &[(
                "address 198.18.43.1 of gateway \"gw-hetang\"'s interface \"uplink0\" (node 430202) overlaps public block 198.18.40.0/22 of node 430102",
                "198.18.43.1/30",
            )],
        },
        // An address in an ancestor's space is not the node's own.
        Case {
            base: PLANWIDE,
            from: "address: 198.18.80.1/30",
            to: "address: 198.18.100.1/30",
            want: &[(
                "address 198.18.100.1 of gateway \"gw-hetang\"'s interface \"uplink0\" (node 430202) lies in public block 198.18.0.0/16 of node 430000, not in a block of its own node",
                "198.18.100.1/30",
            )],
        },
        // An extranet interface address inside a translation target: the gateway would keep the replies.
        Case {
            base: CONVERSIONS,
            from: "address: 198.19.4.1/30",
            to: "address: 198.18.41.1/30",
            want: &[
                (
                    "address 198.18.41.1 of gateway \"gw-furong\"'s interface \"uplink0\" (node 430102) overlaps netmap target 198.18.41.0/24",
                    "198.18.41.1/30",
                ),
                (
                    "netmap target 198.18.41.0/24 of legacy network \"tax-office\" (node 430102) overlaps address 198.18.41.1",
                    "to: 198.18.41.0/24",
                ),
            ],
        },
        // A pool over a netmap target; a service address inside a pool.
        Case {
            base: CONVERSIONS,
            from: "pool: [198.18.40.0/28]",
            to: "pool: [198.18.41.0/28]",
            want: &[
                (
                    "NAPT pool 198.18.41.0/28 of legacy network \"tax-office\" (node 430102) overlaps netmap target 198.18.41.0/24",
                    "pool: [198.18.41.0/28]",
                ),
                (
                    "netmap target 198.18.41.0/24 of legacy network \"tax-office\" (node 430102) overlaps NAPT pool 198.18.41.0/28",
                    "to: 198.18.41.0/24",
                ),
            ],
        },
        Case {
            base: CONVERSIONS,
            from: "outside: \"198.18.40.80:80\"",
            to: "outside: \"198.18.40.5:80\"",
            want: &[(
                "published address 198.18.40.5 of service \"portal\" of legacy network \"tax-office\" (node 430102) overlaps NAPT pool 198.18.40.0/28",
                "198.18.40.5:80",
            )],
        },
        // Two networks' pools.
        Case {
            base: CONVERSIONS,
            from: "pool: [198.18.40.32/28]",
            to: "pool: [198.18.40.0/27]",
            want: &[(
                "NAPT pool 198.18.40.0/28 of legacy network \"tax-office\" (node 430102) overlaps NAPT pool 198.18.40.0/27 of legacy network \"clinic\"",
                "pool: [198.18.40.0/28]",
            )],
        },
        // Siblings, as before.
        Case {
            base: TREE,
            from: "public: [198.18.44.0/22]",
            to: "public: [198.18.42.0/23]",
            want: &[(
                "public block 198.18.42.0/23 of node 430103 overlaps public block 198.18.40.0/22 of node 430102",
                "198.18.42.0/23",
            )],
        },
    ]);
}

/// Two gateways serving one legacy network would both hand out its pool and targets: refused.
#[test]
fn a_legacy_network_has_one_gateway() {
    run(&[Case {
        base: PLANWIDE,
        from: "                routes:\n                  - { prefix: 0.0.0.0/0, via: 198.18.40.2 }\n",
        to: "                routes:\n                  - { prefix: 0.0.0.0/0, via: 198.18.40.2 }\n              - id: gw-furong-b\n                interfaces:\n                  - { name: legacy0, role: legacy, network: furong-lan, address: 10.0.0.2/16 }\n                  - { name: uplink0, role: extranet, address: 198.18.40.5/30 }\n",
        want: &[
            (
                "legacy network \"furong-lan\" is served by gateway \"gw-furong\" and by gateway \"gw-furong-b\"",
                "10.0.0.2/16",
            ),
            (
                "legacy network \"furong-lan\" is served by gateway \"gw-furong\" and by gateway \"gw-furong-b\"",
                "network: furong-lan, address: 10.0.0.1/16",
            ),
        ],
    }]);
}

/// Nothing reaches an isolated subnet: a netmap, a service or an operator's permit that would
/// is refused at both places.
#[test]
fn isolation_is_absolute() {
    run(&[
        Case {
            base: CONVERSIONS,
            from: "isolated: [10.0.200.0/24]",
            to: "isolated: [10.0.1.128/25]",
            want: &[
                ("netmap source 10.0.1.0/24 reaches into isolated subnet 10.0.1.128/25", "from: 10.0.1.0/24"),
                (
                    "isolated subnet 10.0.1.128/25 is reached by netmap source 10.0.1.0/24",
                    "isolated: [10.0.1.128/25]",
                ),
            ],
        },
        Case {
            base: CONVERSIONS,
            from: "isolated: [10.0.200.0/24]",
            to: "isolated: [10.0.5.0/24]",
            want: &[
                (
                    "service \"portal\"'s inside address 10.0.5.8 reaches into isolated subnet 10.0.5.0/24",
                    "10.0.5.8:8080",
                ),
                (
                    "isolated subnet 10.0.5.0/24 is reached by service \"portal\"'s inside address 10.0.5.8",
                    "isolated: [10.0.5.0/24]",
                ),
            ],
        },
        Case {
            base: CONVERSIONS,
            from: "    policies:",
            to: "    policies:\n      - { name: allow-archive, network: tax-office, from: 10.0.200.0/26, action: permit }",
            want: &[
                (
                    "permit rule \"allow-archive\" (from 10.0.200.0/26) reaches into isolated subnet 10.0.200.0/24",
                    "allow-archive",
                ),
                (
                    "isolated subnet 10.0.200.0/24 is reached by permit rule \"allow-archive\"",
                    "isolated: [10.0.200.0/24]",
                ),
            ],
        },
        // Written higher up the tree, and towards the subnet.
        Case {
            base: PLANWIDE,
            from: "      - { name: count-all, action: count }",
            to: "      - { name: reach-archive, network: furong-lan, to: 10.0.200.128/25, action: permit }",
            want: &[(
                "permit rule \"reach-archive\" (to 10.0.200.128/25) reaches into isolated subnet 10.0.200.0/24",
                "reach-archive",
            )],
        },
    ]);
    // A wider permit is carved out by the isolation rules, which compile ahead of it.
    let wide = CONVERSIONS.replace(
        "    policies:",
        "    policies:\n      - { name: lan-web, network: tax-office, from: 10.0.0.0/16, to: 0.0.0.0/0, protocol: tcp, ports: 443, action: permit }",
    );
    assert_eq!(errors(&wide), Vec::<String>::new());
    let lp = load_str(&wide, Path::new("t.yaml")).unwrap();
    let config = crate::compile::compile(&lp, "gw-furong").unwrap();
    let names: Vec<&str> = config.policies.iter().map(|r| r.name.as_str()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} in {names:?}"));
    assert!(at("tax-office:isolated0:from") < at("430102:lan-web"), "{names:?}");
    assert!(at("tax-office:isolated0:to") < at("430102:lan-web"), "{names:?}");
}

/// A netmap is a bijection: one inside address, one outside address; a service one inside
/// endpoint per published one.
#[test]
fn translations_are_bijections() {
    run(&[
        Case {
            base: CONVERSIONS,
            from: "          - { from: 10.0.1.0/24, to: 198.18.41.0/24 }\n",
            to: "          - { from: 10.0.1.0/24, to: 198.18.41.0/24 }\n          - { from: 10.0.1.0/24, to: 198.18.42.0/24 }\n",
            want: &[
                (
                    "netmap source 10.0.1.0/24 overlaps netmap source 10.0.1.0/24 of the same network",
                    "198.18.42.0/24",
                ),
                (
                    "netmap source 10.0.1.0/24 overlaps netmap source 10.0.1.0/24 of the same network",
                    "198.18.41.0/24",
                ),
            ],
        },
        Case {
            base: CONVERSIONS,
            from: "          - { from: 10.0.1.0/24, to: 198.18.41.0/24 }\n",
            to: "          - { from: 10.0.1.0/24, to: 198.18.41.0/24 }\n          - { from: 10.0.1.64/26, to: 198.18.42.0/26 }\n",
            want: &[("netmap source 10.0.1.64/26 overlaps netmap source 10.0.1.0/24", "198.18.42.0/26")],
        },
        Case {
            base: CONVERSIONS,
            from: "outside: \"198.18.40.80:80\" }\n",
            to: "outside: \"198.18.40.80:80\" }\n          - { name: web, protocol: tcp, inside: \"10.0.5.8:8080\", outside: \"198.18.40.81:80\" }\n",
            want: &[("tcp 10.0.5.8:8080 is already published as service \"portal\"", "198.18.40.81:80")],
        },
        Case {
            base: TREE,
            from: "public: [198.19.0.0/17]",
            to: "public: [198.19.0.0/17, 198.19.0.0/18]",
            want: &[(
                "public block 198.19.0.0/18 of node 430200 overlaps public block 198.19.0.0/17 of node 430200",
                "198.19.0.0/18",
            )],
        },
    ]);
}

#[test]
fn netmap_target_outside_allocation_is_rejected() {
    let bad = DEMO.replace("to: 198.18.20.0/24", "to: 198.20.0.0/24");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("outside node 430100's public allocation"), "{errs:#?}");
    assert!(errs[0].starts_with(&format!("t.yaml:{}:", line_of(&bad, "198.20.0.0/24"))), "{errs:#?}");
}

#[test]
fn a_vpn_block_outside_private_space_is_plan_space() {
    run(&[Case {
        base: PLANWIDE,
        from: "ipv4: [10.201.0.0/16]",
        to: "ipv4: [198.18.41.0/24]",
        want: &[
            (
                "dedicated (department \"tax\") block 198.18.41.0/24 of node 430202 overlaps netmap target 198.18.41.0/24 of legacy network \"furong-lan\" (node 430102)",
                "ipv4: [198.18.41.0/24]",
            ),
            ("netmap target 198.18.41.0/24 of legacy network \"furong-lan\"", "to: 198.18.41.0/24"),
        ],
    }]);
    // Private VPN blocks are each department's own: two departments may both use 10.201/16.
    let two = PLANWIDE.replace(
        "      - { id: tax, name: Tax Service }",
        "      - { id: tax, name: Tax Service }\n      - { id: police, name: Police }",
    );
    let two = two.replace(
        "                - { department: tax, ipv4: [10.201.0.0/16] }",
        "                - { department: tax, ipv4: [10.201.0.0/16] }\n                - { department: police, ipv4: [10.201.0.0/16] }",
    );
    assert_eq!(errors(&two), Vec::<String>::new());
}
