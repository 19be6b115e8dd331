//! Names and ids, near-identical names, the tree and zones, special-purpose addresses, and the
//! mistakes of conversions, each named at its place.

use super::*;

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
