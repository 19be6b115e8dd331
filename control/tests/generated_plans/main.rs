//! The plan's promise, tested on plans nobody wrote by hand: every plan that passes `check`
//! (`control::load_str` then `control::validate`, as `hutong plan check` runs them) compiles for
//! every gateway, and no outside address has two owners across all the compiled configs (see
//! [`owners::outside_address_conflicts`]).
//!
//! 10,000 plans a run, from two sources:
//! - generated: random trees of 1-4 levels with allocations, departments, legacy networks and
//!   their conversions, gateways, routes, policies and operators, written as YAML text. Every
//!   choice is usually the sensible one and sometimes a hazard drawn from a small pool (a block
//!   placed in a child's allocation, two gateways serving one network, an uplink inside a netmap
//!   target, roots with overlapping blocks, ...), so that collisions are common;
//! - mutated: the example plans with one prefix or address replaced by another of the file or
//!   of a small pool, resized or shifted, a list item (legacy network, gateway, interface, netmap
//!   entry, node) duplicated or deleted, an id changed to another id of the file, a number
//!   changed.
//!
//! A failure prints the plan, shrunk; the counts of plans that passed check, and the commonest
//! reasons the others failed it, are printed at the end of each run (`cargo test -p control
//! --test generated_plans -- --nocapture`).

use std::{
    cell::{Cell, RefCell},
    cmp::Reverse,
    collections::BTreeMap,
    fmt::{self, Write as _},
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
};

use hutong_config::{Config, EXTRANET_VRF, NatPool, Netmap, PortConfig, Role, Service, Vrf};
use ipnet::{IpNet, Ipv4Net};
use proptest::{
    prelude::*,
    sample::Index,
    test_runner::{Config as RunConfig, RngAlgorithm, TestCaseError, TestCaseResult, TestRunner},
};

mod blocks;
mod generator;
mod mutations;
mod owners;
mod render;

use blocks::*;
use generator::*;
use mutations::*;
use owners::*;
use render::*;

/// Generated plans per run.
const GENERATED_CASES: u32 = 6_000;
/// Mutated example plans per run.
const MUTATED_CASES: u32 = 4_000;
/// Below this share of plans passing check, a run has not really exercised compile: the
/// generator (or the mutations) no longer fit the rules and need updating.
const MIN_PASSING_PERCENT: u32 = 5;

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

/// A plan's text; its `Debug` is the text itself, so a failure prints the plan readably.
#[derive(Clone)]
struct PlanText(String);

impl fmt::Debug for PlanText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\n--- plan ---\n{}--- end of plan ---", self.0)
    }
}

/// How the plans of one run fared.
#[derive(Default)]
struct Tally {
    tried: Cell<u32>,
    unloadable: Cell<u32>,
    rejected: Cell<u32>,
    passed: Cell<u32>,
    /// The first error of each rejected plan, digits blanked out, counted.
    reasons: RefCell<BTreeMap<String, u32>>,
}

impl Tally {
    fn bump(c: &Cell<u32>) {
        c.set(c.get() + 1);
    }

    fn reason(&self, d: &control::Diagnostics) {
        let Some(first) = d.0.first() else { return };
        *self.reasons.borrow_mut().entry(blank_digits(&first.message)).or_default() += 1;
    }

    fn report(&self, what: &str) {
        let (tried, passed) = (self.tried.get(), self.passed.get());
        eprintln!(
            "{what}: {passed} of {tried} plans passed check and were compiled and checked for \
             owners ({}%); {} did not load, {} failed validation",
            passed * 100 / tried.max(1),
            self.unloadable.get(),
            self.rejected.get()
        );
        let reasons = self.reasons.borrow();
        let mut top: Vec<(&String, &u32)> = reasons.iter().collect();
        top.sort_by_key(|(_, n)| Reverse(**n));
        for (reason, n) in top.into_iter().take(10) {
            eprintln!("    {n:6} rejected: {reason}");
        }
    }
}

/// What check and compile made of a plan.
enum Verdict {
    Unloadable(control::Diagnostics),
    Rejected(control::Diagnostics),
    /// Passed check (or panicked); the promises it broke, each as (class, details).
    Passed(Vec<(String, String)>),
}

/// Checks `text` as `hutong plan check` does; for a plan that passes, compiles every gateway and
/// checks the owners of the outside addresses. A panic anywhere breaks the promise too.
fn judge(text: &str) -> Verdict {
    std::panic::catch_unwind(|| judge_unguarded(text)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let class = format!("panics: {}", blank_digits(&message));
        Verdict::Passed(vec![(class, format!("check or compile panics: {message}"))])
    })
}

fn judge_unguarded(text: &str) -> Verdict {
    let lp = match control::load_str(text, Path::new("generated.yaml")) {
        Ok(lp) => lp,
        Err(d) => return Verdict::Unloadable(d),
    };
    if let Err(d) = control::validate(&lp) {
        return Verdict::Rejected(d);
    }
    let configs = match control::compile::compile_all(&lp) {
        Ok(c) => c,
        Err(d) => {
            let class = format!(
                "does not compile: {}",
                blank_digits(&d.0.first().map(|e| blank_quoted(&e.message)).unwrap_or_default())
            );
            return Verdict::Passed(vec![(
                class,
                format!("the plan passes check but does not compile:\n{d}"),
            )]);
        }
    };
    let mut claims = Vec::new();
    for c in configs.values() {
        collect_claims(c, &mut claims);
    }
    // Where each gateway is in the tree, to say how the two owners of an address are related.
    let nodes = lp.plan.nodes();
    let at: BTreeMap<&str, &str> = nodes
        .iter()
        .flat_map(|(path, n)| n.gateways.iter().map(move |g| (g.id.as_str(), path.as_str())))
        .collect();
    let relation = |a: &str, b: &str| {
        let (pa, pb) = (at.get(a).copied().unwrap_or(""), at.get(b).copied().unwrap_or(""));
        let below = |x: &str, y: &str| x.strip_prefix(y).is_some_and(|r| r.starts_with('.'));
        let root = |x: &str| x.split('.').next().unwrap_or("").to_string();
        if a == b {
            "one gateway"
        } else if pa == pb {
            "two gateways of one node"
        } else if below(pa, pb) || below(pb, pa) {
            "gateways of a node and of a node below it"
        } else if root(pa) == root(pb) {
            "gateways in different branches of one tree"
        } else {
            "gateways under different top-level nodes"
        }
    };
    let broken = conflicting_claims(&mut claims)
        .into_iter()
        .map(|(a, b)| {
            let mut kinds = [a.handed.kind(), b.handed.kind()];
            kinds.sort();
            let class = format!("{} and {}, {}", kinds[0], kinds[1], relation(a.gateway, b.gateway));
            (class, format!("{} overlaps {}", a.what, b.what))
        })
        .collect();
    Verdict::Passed(broken)
}

/// A message with what it quotes blanked out.
fn blank_quoted(message: &str) -> String {
    let parts = message.split('"').enumerate();
    parts.map(|(i, part)| if i % 2 == 1 { "…" } else { part }).collect::<Vec<_>>().join("\"")
}

/// A message with its numbers blanked out, to count alike messages together.
fn blank_digits(message: &str) -> String {
    let mut key = String::new();
    for ch in message.chars() {
        let ch = if ch.is_ascii_digit() { '#' } else { ch };
        if !(ch == '#' && key.ends_with('#')) {
            key.push(ch);
        }
    }
    key
}

/// The property: every plan that passes check compiles and gives each outside address one owner.
fn promise_holds(plan: &PlanText, tally: &Tally) -> TestCaseResult {
    Tally::bump(&tally.tried);
    match judge(&plan.0) {
        Verdict::Unloadable(d) => {
            Tally::bump(&tally.unloadable);
            tally.reason(&d);
            Ok(())
        }
        Verdict::Rejected(d) => {
            Tally::bump(&tally.rejected);
            tally.reason(&d);
            Ok(())
        }
        Verdict::Passed(broken) => {
            Tally::bump(&tally.passed);
            if broken.is_empty() {
                return Ok(());
            }
            let details: Vec<&str> = broken.iter().map(|(_, d)| d.as_str()).collect();
            Err(TestCaseError::fail(format!(
                "the plan passes check but breaks the promise (outside addresses with two owners, or no config):\n  {}",
                details.join("\n  ")
            )))
        }
    }
}

/// Runs the property over `cases` plans from `plans`, with proptest's shrinking and its
/// regression file (`control/tests/proptest-regressions/main.txt`), and prints how many passed
/// check.
fn run(name: &'static str, cases: u32, plans: impl Strategy<Value = PlanText>) {
    let config = RunConfig {
        cases,
        source_file: Some(file!()),
        test_name: Some(name),
        // A failing plan shrinks in a few hundred steps; do not spend minutes on the last few.
        max_shrink_iters: 4096,
        // The plans, not the random numbers, should take the time.
        rng_algorithm: RngAlgorithm::XorShift,
        ..RunConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let tally = Tally::default();
    let result = runner.run(&plans, |plan| promise_holds(&plan, &tally));
    tally.report(name);
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
    let (tried, passed) = (tally.tried.get(), tally.passed.get());
    assert!(
        passed * 100 >= tried * MIN_PASSING_PERCENT,
        "{name}: only {passed} of {tried} plans passed check; the plans no longer fit the rules \
         (see the rejection reasons above) and this test no longer exercises compile"
    );
}

#[test]
fn generated_plans_that_pass_check_compile_and_give_each_outside_address_one_owner() {
    run("generated_plans", GENERATED_CASES, plan_spec().prop_map(|s| PlanText(render(&s))));
}

#[test]
fn mutated_example_plans_that_pass_check_compile_and_give_each_outside_address_one_owner() {
    let plans = (0..EXAMPLES.len(), prop::collection::vec(mutation(), 1..=3))
        .prop_map(|(which, ms)| PlanText(mutate(which, &ms)));
    run("mutated_plans", MUTATED_CASES, plans);
}

// ---------------------------------------------------------------------------------------------
// The owners check, on its own
// ---------------------------------------------------------------------------------------------

fn port(name: &str, role: Role, vrf: u32, address: &str) -> PortConfig {
    PortConfig {
        name: name.into(),
        vlan: None,
        role,
        vrf,
        addresses: vec![address.parse().unwrap()],
        mtu: hutong_config::DEFAULT_MTU,
        tunnel: None,
    }
}

fn service(name: &str, proto: u8, outside: &str, port: u16) -> Service {
    Service {
        name: name.into(),
        proto,
        outside_vrf: EXTRANET_VRF,
        outside: outside.parse().unwrap(),
        outside_port: port,
        inside_vrf: 1,
        inside: "10.0.0.5".parse().unwrap(),
        inside_port: 80,
    }
}

/// A gateway with one legacy network netmapped onto `netmap`, NAPT onto `pool`, an uplink at
/// `uplink`, and `services`.
fn tiny(gateway: &str, uplink: &str, netmap: &str, pool: &str, services: &[(&str, u8, &str, u16)]) -> Config {
    Config {
        gateway: gateway.into(),
        vrfs: vec![Vrf { id: 0, name: "extranet".into() }, Vrf { id: 1, name: "lan".into() }],
        ports: vec![
            port("legacy0", Role::Legacy, 1, "10.0.0.1/24"),
            port("uplink0", Role::Extranet, 0, uplink),
        ],
        netmaps: vec![Netmap {
            inside_vrf: 1,
            inside: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), netmap.parse::<Ipv4Net>().unwrap().prefix_len())
                .unwrap(),
            outside_vrf: 0,
            outside: netmap.parse().unwrap(),
        }],
        nptv6: vec![],
        routes: vec![],
        nat_pools: vec![NatPool::defaults("lan-napt".into(), 1, 0, vec![pool.parse().unwrap()])],
        services: services.iter().map(|(n, proto, a, p)| service(n, *proto, a, *p)).collect(),
        policies: vec![],
    }
}

#[test]
fn the_owners_check_allows_what_may_be_shared_and_finds_every_overlap() {
    // Two gateways on one uplink subnet, each with its own blocks; services of one gateway
    // sharing an address on different ports or protocols.
    let a = tiny(
        "gw-a",
        "198.19.0.1/24",
        "198.18.20.0/24",
        "198.18.40.0/28",
        &[("web", 6, "198.18.50.1", 80), ("dns", 17, "198.18.50.1", 53), ("tls", 6, "198.18.50.1", 443)],
    );
    let b =
        tiny("gw-b", "198.19.0.2/24", "198.18.21.0/24", "198.18.40.16/28", &[("web", 6, "198.18.50.2", 80)]);
    assert_eq!(outside_address_conflicts([&a, &b]), Vec::<String>::new());
    // Each config may also be checked alone.
    assert_eq!(outside_address_conflicts([&a]), Vec::<String>::new());

    // Across gateways: b's netmap outside overlaps a's pool; b's uplink has a's address; b
    // publishes on a's service address (shared by three services there), on another port.
    let b2 =
        tiny("gw-b", "198.19.0.1/24", "198.18.40.0/24", "198.18.40.16/28", &[("x", 6, "198.18.50.1", 8080)]);
    let found = outside_address_conflicts([&a, &b2]);
    assert_eq!(found.len(), 6, "{found:#?}");
    let has = |a: &str, b: &str| found.iter().any(|f| f.contains(a) && f.contains(b));
    assert!(has("netmap outside 198.18.40.0/24 of gw-b", "NAT pool lan-napt address 198.18.40.0/28 of gw-a"));
    assert!(has(
        "netmap outside 198.18.40.0/24 of gw-b",
        "NAT pool lan-napt address 198.18.40.16/28 of gw-b"
    ));
    assert!(has("address 198.19.0.1 of gw-a", "address 198.19.0.1 of gw-b"));
    assert!(has("service web at 198.18.50.1:80", "service x at 198.18.50.1:8080"));
    // The same pair the other way round: the order of configs does not matter.
    assert_eq!(outside_address_conflicts([&b2, &a]).len(), 6);

    // Within one gateway: a service published twice on one address, protocol and port; a
    // service inside its netmap outside; its uplink inside its pool; its netmap and pool
    // overlapping.
    let c = tiny(
        "gw-c",
        "198.18.40.1/24",
        "198.18.40.0/26",
        "198.18.40.0/28",
        &[("web", 6, "198.18.60.1", 80), ("web2", 6, "198.18.60.1", 80), ("in", 17, "198.18.40.7", 53)],
    );
    let found = outside_address_conflicts([&c]);
    let has = |a: &str, b: &str| found.iter().any(|f| f.contains(a) && f.contains(b));
    assert!(has("service web at 198.18.60.1:80", "service web2 at 198.18.60.1:80"), "{found:#?}");
    assert!(has("netmap outside 198.18.40.0/26", "service in at 198.18.40.7:53"), "{found:#?}");
    assert!(has("NAT pool lan-napt address 198.18.40.0/28", "service in at 198.18.40.7:53"), "{found:#?}");
    assert!(has("netmap outside 198.18.40.0/26", "NAT pool lan-napt address 198.18.40.0/28"), "{found:#?}");
    assert!(
        has("NAT pool lan-napt address 198.18.40.0/28", "extranet port uplink0 address 198.18.40.1"),
        "{found:#?}"
    );
    assert!(has("netmap outside 198.18.40.0/26", "extranet port uplink0 address 198.18.40.1"), "{found:#?}");
    assert_eq!(found.len(), 6, "{found:#?}");

    // Inside addresses and legacy ports are no one's business here.
    let mut d = tiny("gw-d", "198.19.1.1/24", "198.18.30.0/24", "198.18.31.0/28", &[]);
    d.netmaps[0].inside = "10.0.0.0/24".parse().unwrap();
    d.ports[0] = port("legacy0", Role::Legacy, 1, "198.18.20.1/24");
    assert_eq!(outside_address_conflicts([&a, &d]), Vec::<String>::new());
}

#[test]
fn the_mutations_find_what_they_change() {
    let text = "nodes: # 10.0.0.0/8 in a comment\n  - code: \"430100\"\n    allocations: { public: [198.18.0.0/16], public_v6: [\"2400:8000::/32\"] }\n    legacy_networks:\n      - id: lan\n        prefixes: [10.20.0.0/24]\n        services:\n          - { name: web, protocol: tcp, inside: \"10.20.0.5:8080\", outside: \"198.18.0.1:80\" }\n    gateways:\n      - id: gw\n        interfaces:\n          - { name: legacy0, vlan: 100, role: legacy, network: lan, address: 10.20.0.1/24 }\n";
    let addresses: Vec<(&str, Kind)> =
        address_tokens(text).iter().map(|(t, k)| (&text[t.start..t.end], *k)).collect();
    assert_eq!(
        addresses,
        [
            ("198.18.0.0/16", Kind::V4Prefix),
            ("2400:8000::/32", Kind::V6Prefix),
            ("10.20.0.0/24", Kind::V4Prefix),
            ("10.20.0.5", Kind::V4Address),
            ("198.18.0.1", Kind::V4Address),
            ("10.20.0.1/24", Kind::V4Prefix),
        ]
    );
    let ids: Vec<&str> = id_tokens(text).iter().map(|t| &text[t.start..t.end]).collect();
    assert_eq!(ids, ["\"430100\"", "lan", "gw", "lan"]);
    let numbers: Vec<&str> = number_tokens(text).iter().map(|t| &text[t.start..t.end]).collect();
    assert_eq!(numbers, ["100", "8080", "80"]);
    let lines: Vec<&str> = text.lines().collect();
    let spans: Vec<(usize, usize)> = items(&lines);
    assert_eq!(spans, [(1, 12), (4, 8), (7, 8), (9, 12), (11, 12)]);
    // A renamed legacy network takes its gateway's reference with it only when both are copied.
    let copy = renamed(&lines[1..12]);
    assert!(copy.iter().any(|l| l.contains("code: \"530100\"")), "{copy:#?}");
    assert!(
        copy.iter().any(|l| l.contains("- id: lanb")) && copy.iter().any(|l| l.contains("network: lanb"))
    );
    let copy = renamed(&lines[9..12]);
    assert!(
        copy[0].contains("id: gwb")
            && copy[2].contains("name: legacy0b")
            && copy[2].contains("network: lan,")
    );
    // Every example plan still loads, and offers something to mutate.
    for (name, text) in EXAMPLES {
        control::load_str(text, Path::new(name)).unwrap();
        assert!(!address_tokens(text).is_empty() && !items(&text.lines().collect::<Vec<_>>()).is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever check then says, the generator writes YAML the loader reads.
    #[test]
    fn generated_plans_load(plan in plan_spec().prop_map(|s| PlanText(render(&s)))) {
        if let Err(d) = control::load_str(&plan.0, Path::new("generated.yaml")) {
            return Err(TestCaseError::fail(format!("{d}")));
        }
    }
}
