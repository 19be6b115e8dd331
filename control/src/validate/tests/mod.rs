//! Every rule of plan validation, each shown to fire at its place (file:line) with its message:
//! the example plans (and `PLANWIDE`, a province with two counties in different prefectures)
//! with one thing changed. docs/plan.md lists the same rules.

use std::path::Path;

use super::validate;
use crate::load::load_str;

mod gateways;
mod names;
mod owners;

const DEMO: &str = include_str!("../../../../configs/demo/plan.yaml");
const CONVERSIONS: &str = include_str!("../../../../configs/examples/conversions.yaml");
const TREE: &str = include_str!("../../../../configs/examples/province-tree.yaml");

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
