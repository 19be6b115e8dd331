//! Every rule of plan validation, each shown to fire at its place (file:line) with its message:
//! the example plans (and `PLANWIDE`, a province with two counties in different prefectures)
//! with one thing changed. docs/plan.md lists the same rules.

use std::path::Path;

use super::validate;
use crate::load::load_str;

const DEMO: &str = include_str!("../../../configs/demo/plan.yaml");
const CONVERSIONS: &str = include_str!("../../../configs/examples/conversions.yaml");
const TREE: &str = include_str!("../../../configs/examples/province-tree.yaml");

/// A province with its own gateway and two counties under different prefectures (which have no
/// blocks of their own), each with a gateway: the shape in which plan-wide overlaps used to pass.
const PLANWIDE: &str = r#"plan: planwide
nodes:
  - code: "430000"
    name: Hunan
    level: province
    departments:
      - { id: tax, name: Tax Service }
    allocations:
      public: [198.18.0.0/16]
      internet: [198.19.128.0/17]
    legacy_networks:
      - id: prov-lan
        prefixes: [10.1.0.0/16]
        netmap:
          - { from: 10.1.1.0/24, to: 198.18.1.0/24 }
    policies:
      - { name: count-all, action: count }
    gateways:
      - id: gw-hunan
        interfaces:
          - { name: legacy0, role: legacy, network: prov-lan, address: 10.1.0.1/16 }
          - { name: uplink0, role: extranet, address: 198.18.0.1/30 }
        routes:
          - { prefix: 0.0.0.0/0, via: 198.18.0.2 }
    children:
      - code: "430100"
        name: Changsha
        level: prefecture
        children:
          - code: "430102"
            name: Furong
            level: county
            allocations:
              public: [198.18.40.0/22]
              internet: [198.19.140.0/28]
              dedicated:
                - { department: tax, ipv4: [10.200.0.0/16] }
            legacy_networks:
              - id: furong-lan
                prefixes: [10.0.0.0/16]
                netmap:
                  - { from: 10.0.1.0/24, to: 198.18.41.0/24 }
                napt: { pool: [198.18.40.16/28] }
                services:
                  - { name: portal, protocol: tcp, inside: "10.0.5.8:8080", outside: "198.18.40.80:80" }
                isolated: [10.0.200.0/24]
            gateways:
              - id: gw-furong
                interfaces:
                  - { name: legacy0, role: legacy, network: furong-lan, address: 10.0.0.1/16 }
                  - { name: uplink0, role: extranet, address: 198.18.40.1/30 }
                  - { name: inet0, role: internet-access, address: 198.19.140.2/29 }
                routes:
                  - { prefix: 0.0.0.0/0, via: 198.18.40.2 }
      - code: "430200"
        name: Zhuzhou
        level: prefecture
        children:
          - code: "430202"
            name: Hetang
            level: county
            allocations:
              public: [198.18.80.0/22]
              dedicated:
                - { department: tax, ipv4: [10.201.0.0/16] }
            legacy_networks:
              - id: hetang-lan
                prefixes: [10.0.0.0/16]
                napt: { pool: [198.18.80.16/28] }
            gateways:
              - id: gw-hetang
                interfaces:
                  - { name: legacy0, role: legacy, network: hetang-lan, address: 10.0.0.1/16 }
                  - { name: uplink0, role: extranet, address: 198.18.80.1/30 }
                routes:
                  - { prefix: 0.0.0.0/0, via: 198.18.80.2 }
"#;

fn errors(text: &str) -> Vec<String> {
    let lp = load_str(text, Path::new("t.yaml")).unwrap_or_else(|e| panic!("does not load: {e}\n{text}"));
    match validate(&lp) {
        Ok(()) => vec![],
        Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
    }
}

/// The line (1-based) of the one line of `text` (comments aside) containing `anchor`; with
/// `@after:` before it, the line after that one.
fn line_of(text: &str, anchor: &str) -> usize {
    if let Some(a) = anchor.strip_prefix("@after:") {
        return line_of(text, a) + 1;
    }
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(anchor) && !l.trim_start().starts_with('#'))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(lines.len(), 1, "anchor {anchor:?} is on lines {lines:?}, not on exactly one");
    lines[0]
}

/// One invalid plan: `base` with `from` replaced by `to` (the first occurrence), and what must
/// be reported: each (message part, anchor), the anchor being text on the line it must be
/// reported at.
struct Case<'a> {
    base: &'a str,
    from: &'a str,
    to: &'a str,
    want: &'a [(&'a str, &'a str)],
}

fn run(cases: &[Case]) {
    for c in cases {
        assert!(c.base.contains(c.from), "fixture lacks {:?}", c.from);
        let bad = c.base.replacen(c.from, c.to, 1);
        let errs = errors(&bad);
        assert!(!errs.is_empty(), "{:?} -> {:?}: the plan was accepted", c.from, c.to);
        for (want, anchor) in c.want {
            let line = line_of(&bad, anchor);
            assert!(
                errs.iter().any(|e| e.contains(want) && e.starts_with(&format!("t.yaml:{line}:"))),
                "{:?}: expected {want:?} at line {line}, got {errs:#?}",
                c.to
            );
        }
    }
}

#[test]
fn the_example_plans_are_valid() {
    for (name, text) in [("demo", DEMO), ("conversions", CONVERSIONS), ("tree", TREE), ("planwide", PLANWIDE)]
    {
        assert_eq!(errors(text), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn all_errors_are_reported_with_lines() {
    let bad = DEMO
        .replace("to: 198.18.20.0/24", "to: 198.18.20.0/25")
        .replace("via: 198.19.0.2", "via: 198.18.250.1")
        .replace("network: city-hall", "network: city-hal");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let line = |needle: &str| format!("t.yaml:{}:", line_of(&bad, needle));
    assert!(errs[0].starts_with(&line("198.18.20.0/25")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("equal sizes")));
    assert!(
        errs.iter()
            .any(|e| e.contains("\"city-hal\" is not defined") && e.starts_with(&line("network: city-hal")))
    );
    assert!(errs.iter().any(|e| e.contains("next hop 198.18.250.1") && e.starts_with(&line("198.18.250.1"))));
}

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

/// Addresses that cannot work, or belong to a special purpose, are refused where they are used.
#[test]
fn special_purpose_and_impossible_addresses_are_refused() {
    run(&[
        Case {
            base: CONVERSIONS,
            from: "pool: [198.18.40.0/28]",
            to: "pool: [0.0.0.0/28]",
            want: &[("NAPT pool: 0.0.0.0/28 is \"this network\" (0.0.0.0/8, RFC 791)", "0.0.0.0/28")],
        },
        Case {
            base: CONVERSIONS,
            from: "pool: [198.18.40.0/28]",
            to: "pool: [169.254.10.0/28]",
            want: &[("NAPT pool: 169.254.10.0/28 is link-local", "169.254.10.0/28")],
        },
        Case {
            base: CONVERSIONS,
            from: "pool: [198.18.40.0/28]",
            to: "pool: [203.0.113.0/28]",
            want: &[("NAPT pool: 203.0.113.0/28 is documentation (TEST-NET-3)", "203.0.113.0/28")],
        },
        Case {
            base: CONVERSIONS,
            from: "to: 198.18.41.0/24",
            to: "to: 224.1.1.0/24",
            want: &[("netmap target: 224.1.1.0/24 is multicast (224.0.0.0/4, RFC 5771)", "224.1.1.0/24")],
        },
        Case {
            base: CONVERSIONS,
            from: "outside: \"198.18.40.80:80\"",
            to: "outside: \"255.255.255.255:80\"",
            want: &[(
                "published address: 255.255.255.255/32 is the limited broadcast address",
                "255.255.255.255",
            )],
        },
        Case {
            base: DEMO,
            from: "public: [198.18.0.0/16]",
            to: "public: [127.0.0.0/16]",
            want: &[("public block: 127.0.0.0/16 is loopback (127.0.0.0/8, RFC 1122)", "127.0.0.0/16")],
        },
        Case {
            base: DEMO,
            from: "public: [198.18.0.0/16]",
            to: "public: [10.0.0.0/16]",
            want: &[("public block: 10.0.0.0/16 is private-use space (10.0.0.0/8, RFC 1918)", "10.0.0.0/16")],
        },
        Case {
            base: DEMO,
            from: "public: [198.18.0.0/16]",
            to: "public: [240.0.0.0/16]",
            want: &[("public block: 240.0.0.0/16 is reserved for future use", "240.0.0.0/16")],
        },
        Case {
            base: TREE,
            from: "public_v6: [\"2001:2::/48\"]",
            to: "public_v6: [\"::ffff:198.18.0.0/112\"]",
            want: &[(
                "public block: ::ffff:198.18.0.0/112 is IPv4-mapped addresses",
                "::ffff:198.18.0.0/112",
            )],
        },
        Case {
            base: TREE,
            from: "public_v6: [\"2001:2::/48\"]",
            to: "public_v6: [\"2001:db8::/48\"]",
            want: &[(
                "public block: 2001:db8::/48 is documentation (2001:db8::/32, RFC 3849)",
                "2001:db8::/48",
            )],
        },
        Case {
            base: TREE,
            from: "- { department: tax, ipv4: [10.200.0.0/14], ipv6: [\"fd00:4300:1::/48\"] }",
            to: "- { department: tax, ipv4: [10.200.0.0/14], ipv6: [\"fe80::/64\"] }",
            want: &[("dedicated (department \"tax\") block: fe80::/64 is link-local", "fe80::/64")],
        },
        Case {
            base: DEMO,
            from: "address: 198.19.0.1/24",
            to: "address: 100.64.0.1/24",
            want: &[("interface address: 100.64.0.1/32 is shared address space", "100.64.0.1/24")],
        },
        Case {
            base: CONVERSIONS,
            from: "remote: 198.19.9.1",
            to: "remote: 192.0.2.9",
            want: &[("tunnel remote: 192.0.2.9/32 is documentation (TEST-NET-1)", "192.0.2.9")],
        },
        Case {
            base: DEMO,
            from: "prefixes: [10.20.0.0/24]",
            to: "prefixes: [127.20.0.0/24]",
            want: &[("legacy prefix: 127.20.0.0/24 is loopback", "127.20.0.0/24")],
        },
    ]);
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

/// Names Linux refuses, ids that are not safe as file names or path segments.
#[test]
fn names_and_ids() {
    run(&[
        Case {
            base: CONVERSIONS,
            from: "name: gre-clinic",
            to: "name: \"gre:clinic\"",
            want: &[(
                "interface name \"gre:clinic\" is not a valid Linux interface name: character 4 ':' is not allowed",
                "gre:clinic",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "name: inet0",
            to: "name: \"inet 0\"",
            want: &[("interface name \"inet 0\" is not a valid Linux interface name", "inet 0")],
        },
        Case {
            base: CONVERSIONS,
            from: "name: inet0",
            to: "name: \"..\"",
            want: &[(
                "interface name \"..\" is not a valid Linux interface name: is a directory name Linux refuses",
                "\"..\"",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "name: inet0",
            to: "name: inet0-too-long-x",
            want: &[("is 16 bytes long; Linux allows 15", "inet0-too-long-x")],
        },
        Case {
            base: CONVERSIONS,
            from: "id: gw-furong",
            to: "id: ../x",
            want: &[(
                "gateway id \"../x\" is not a valid id: character 1 '.' may not start an id",
                "id: ../x",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "id: gw-furong",
            to: "id: /etc/cron.d/x",
            want: &[("gateway id \"/etc/cron.d/x\" is not a valid id", "/etc/cron.d/x")],
        },
        Case {
            base: TREE,
            from: "- { id: health, name: Health Commission }",
            to: "- { id: \"he alth\", name: Health Commission }",
            want: &[(
                "department id \"he alth\" is not a valid id: character 3 ' ' is not allowed",
                "he alth",
            )],
        },
        Case {
            base: CONVERSIONS,
            from: "id: li.na",
            to: "id: \"li na\"",
            want: &[("operator id \"li na\" is not a valid id", "li na")],
        },
        Case {
            base: DEMO,
            from: "code: \"430100\"",
            to: "code: \"43010\"",
            want: &[("node code \"43010\" is not a GB/T 2260 division code", "\"43010\"")],
        },
    ]);
}

/// A reference that nearly matches shows the value quoted and exactly where it differs.
#[test]
fn near_identical_names_are_quoted_with_the_difference() {
    let bad = DEMO.replacen("network: city-hall", "network: city-h\u{430}ll", 1);
    let errs = errors(&bad);
    let line = line_of(&bad, "city-h\u{430}ll");
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("t.yaml:{line}:"))
            && e.contains("legacy network \"city-h\u{430}ll\" is not defined at node 430100")
            && e.contains(
                "did you mean \"city-hall\"? character 7 is 'а' (U+0430 Cyrillic), not 'a' (U+0061)"
            )),
        "{errs:#?}"
    );
    let bad = DEMO.replacen("network: city-hall", "network: \"city-hall \"", 1);
    let errs = errors(&bad);
    assert!(
        errs.iter().any(|e| e.contains("legacy network \"city-hall \" is not defined")
            && e.contains("ends in 1 extra whitespace")),
        "{errs:#?}"
    );
    let bad = CONVERSIONS.replacen("network: internet-access", "network: internet-acess", 1);
    let errs = errors(&bad);
    assert!(
        errs.iter().any(|e| e.contains("has no interface in \"internet-acess\"")
            && e.contains("did you mean \"internet-access\"")),
        "{errs:#?}"
    );
}

#[test]
fn conversion_mistakes_are_each_named_at_their_place() {
    let cases = [
        (
            "pool: [198.18.40.0/28]",
            "pool: [198.18.60.0/28]",
            "NAPT pool 198.18.60.0/28 is outside node 430102's public allocation",
        ),
        ("pool: [198.18.40.0/28]", "pool: [198.18.40.1/28]", "has host bits set"),
        ("block_size: 512", "block_size: 0", "a port block holds 1-64512 ports"),
        (
            "inside: \"10.0.5.8:8080\"",
            "inside: \"10.9.5.8:8080\"",
            "10.9.5.8 is not inside legacy network \"tax-office\"'s prefixes",
        ),
        (
            "outside: \"198.18.40.80:80\"",
            "outside: \"198.18.50.80:80\"",
            "198.18.50.80 is outside node 430102's public allocation",
        ),
        (
            "isolated: [10.0.200.0/24]",
            "isolated: [10.1.200.0/24]",
            "isolated 10.1.200.0/24 is not inside legacy network \"tax-office\"'s prefixes",
        ),
        (
            "pool: [198.18.40.32/28]",
            "pool: [198.18.40.32/31]",
            "deterministic NAPT of 10.0.0.0/20 (4096 hosts) needs 4096 port blocks; this pool holds 2016",
        ),
        (
            "pool: [198.18.40.32/28]",
            "pool: [198.16.0.0/15]",
            "this NAPT pool has 131072 addresses; a pool holds at most 65536",
        ),
        (
            "prefixes: [10.0.0.0/20]",
            "prefixes: [10.0.0.0/21, 10.0.8.0/21]",
            "deterministic NAPT maps exactly one inside prefix",
        ),
        ("vlan: 200", "vlan: 5000", "a VLAN id is 1-4094"),
        ("vlan: 200", "vlan: 100", "appears twice"),
        ("ports: 23, action: deny", "ports: \"23-x\", action: deny", "is not a port or a range"),
        ("ports: \"80-443\"", "ports: \"443-80\"", "port range 443-80 is empty"),
        ("protocol: tcp, ports: 23", "protocol: gre, ports: 23", "\"gre\" is not tcp, udp, icmp"),
        (
            "network: tax-office, protocol: tcp, ports: 23",
            "network: tax-offic, protocol: tcp, ports: 23",
            "legacy network \"tax-offic\" is not at node 430102 or below",
        ),
        (
            "scope: \"430102\", role: operator",
            "scope: \"439999\", role: operator",
            "scope \"439999\" is not a node of the plan",
        ),
        ("id: wang.fang", "id: li.na", "operator id \"li.na\" is used twice"),
        (
            "local: 198.19.4.1,",
            "local: 198.19.4.9,",
            "tunnel source 198.19.4.9 is not the address of an extranet interface of gateway \"gw-furong\"",
        ),
        (
            "address: 198.19.200.2/29",
            "address: 198.19.201.2/29",
            "interface subnet 198.19.201.0/29 is outside node 430102's internet-access allocation",
        ),
        ("prefix: 0.0.0.0/0", "prefix: 7.0.0.0/0", "7.0.0.0/0 has host bits set"),
        (
            "outside: \"198.18.40.80:80\" }\n",
            "outside: \"198.18.40.80:80\" }\n          - { name: web, protocol: tcp, inside: \"10.0.5.9:80\", outside: \"198.18.40.80:80\" }\n",
            "tcp 198.18.40.80:80 is already published by service \"portal\" of legacy network \"tax-office\"",
        ),
    ];
    for (from, to, want) in cases {
        assert!(CONVERSIONS.contains(from), "fixture lacks {from:?}");
        let bad = CONVERSIONS.replacen(from, to, 1);
        let errs = errors(&bad);
        // The last line with the new text: a duplicate is reported where it repeats.
        let needle = to.lines().last().unwrap();
        let line = bad.lines().collect::<Vec<_>>().iter().rposition(|l| l.contains(needle)).unwrap() + 1;
        assert!(
            errs.iter().any(|e| e.contains(want) && e.starts_with(&format!("t.yaml:{line}:"))),
            "{to:?}: expected {want:?} at line {line}, got {errs:#?}"
        );
    }
}

#[test]
fn tree_and_zone_mistakes_are_each_named_at_their_place() {
    run(&[
        Case {
            base: TREE,
            from: "public: [198.18.44.0/22]",
            to: "public: [198.20.44.0/22]",
            want: &[(
                "198.20.44.0/22 of node 430103 is outside its parent 430100's public allocation",
                "198.20.44.0/22",
            )],
        },
        Case {
            base: TREE,
            from: "public_v6: [\"2001:2:0:100::/56\"]",
            to: "public_v6: [\"2001:2:0:1000::/56\"]",
            want: &[(
                "2001:2:0:1000::/56 of node 430102 is outside its parent 430100's public allocation",
                "2001:2:0:1000::/56",
            )],
        },
        Case {
            base: TREE,
            from: "public_v6: [\"2001:2::/48\"]",
            to: "public_v6: [\"2001:2::1/48\"]",
            want: &[("2001:2::1/48 has host bits set", "2001:2::1/48")],
        },
        Case {
            base: TREE,
            from: "- { department: tax, ipv4: [10.201.0.0/16] }",
            to: "- { department: taxes, ipv4: [10.201.0.0/16] }",
            want: &[("department \"taxes\" is not declared at node 430200 or above", "department: taxes")],
        },
        Case {
            base: TREE,
            from: "- { department: tax, ipv4: [10.201.0.0/16] }",
            to: "- { department: tax, ipv4: [10.210.0.0/16] }",
            want: &[(
                "10.210.0.0/16 of node 430200 is outside its parent 430000's dedicated (department \"tax\") allocation",
                "10.210.0.0/16",
            )],
        },
        Case {
            base: TREE,
            from: "- { id: health, name: Health Commission }",
            to: "- { id: tax, name: Health Commission }",
            want: &[("department \"tax\" appears twice", "name: Health Commission")],
        },
        // A county below a prefecture without blocks: checked against the province.
        Case {
            base: PLANWIDE,
            from: "public: [198.18.80.0/22]",
            to: "public: [198.20.80.0/22]",
            want: &[(
                "198.20.80.0/22 of node 430202 is outside node 430000's (the nearest node above it with such blocks) public allocation",
                "198.20.80.0/22",
            )],
        },
        Case {
            base: TREE,
            from: "name: Tianxin District\n            level: county",
            to: "name: Tianxin District\n            level: prefecture",
            want: &[(
                "node 430103 (prefecture) is below node 430100 (prefecture) but not at a lower level",
                "@after:name: Tianxin District",
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

#[test]
fn a_plan_without_nodes_is_refused() {
    for text in ["plan: p\nnodes: []\n", "plan: p\nnodes:\n"] {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("t.yaml:2:") && errs[0].contains("the plan has no nodes"), "{errs:#?}");
    }
}

#[test]
fn what_real_networks_do_is_accepted() {
    // A tunnel's inner link numbered from link-local space.
    let link_local = CONVERSIONS
        .replace(
            "            network: clinic\n            address: 10.99.0.1/30",
            "            network: clinic\n            address: 169.254.100.1/30",
        )
        .replace("via: 10.99.0.2, network: clinic", "via: 169.254.100.2, network: clinic");
    assert_eq!(errors(&link_local), Vec::<String>::new());
    // ... but not an uplink.
    let errs = errors(&CONVERSIONS.replace("address: 198.19.4.1/30", "address: 169.254.4.1/30"));
    assert!(errs.iter().any(|e| e.contains("interface address: 169.254.4.1/32 is link-local")), "{errs:#?}");
    // A LAN written as two adjacent /24s, its link a /23, a service at the /24s' seam.
    let adjacent = DEMO
        .replace("prefixes: [10.20.0.0/24]", "prefixes: [10.20.0.0/24, 10.20.1.0/24]")
        .replace("address: 10.20.0.1/24", "address: 10.20.0.1/23");
    assert!(adjacent.contains("10.20.1.0/24") && adjacent.contains("10.20.0.1/23"));
    assert_eq!(errors(&adjacent), Vec::<String>::new());
    let seam = CONVERSIONS
        .replace("prefixes: [10.0.0.0/16]", "prefixes: [10.0.0.0/17, 10.0.128.0/17]")
        .replace("inside: \"10.0.5.8:8080\"", "inside: \"10.0.127.255:8080\"");
    assert_eq!(errors(&seam), Vec::<String>::new());
    let edge = seam.replace("10.0.127.255:8080", "10.0.255.255:8080");
    let errs = errors(&edge);
    assert!(errs.iter().any(|e| e.contains("is the broadcast address of 10.0.128.0/17")), "{errs:#?}");
}
