//! The plan's promise, tested on plans nobody wrote by hand: every plan that passes `check`
//! (`control::load_str` then `control::validate`, as `hutong plan check` runs them) compiles for
//! every gateway, and no outside address has two owners across all the compiled configs (see
//! [`outside_address_conflicts`]).
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

/// Generated plans per run.
const GENERATED_CASES: u32 = 6_000;
/// Mutated example plans per run.
const MUTATED_CASES: u32 = 4_000;
/// Below this share of plans passing check, a run has not really exercised compile: the
/// generator (or the mutations) no longer fit the rules and need updating.
const MIN_PASSING_PERCENT: u32 = 5;

// ---------------------------------------------------------------------------------------------
// The owners check
// ---------------------------------------------------------------------------------------------

/// What a gateway hands out at an outside address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handed {
    Netmap,
    Nptv6,
    Pool,
    Service { proto: u8, port: u16 },
    Port,
}

impl Handed {
    fn kind(self) -> &'static str {
        match self {
            Handed::Netmap => "netmap outside",
            Handed::Nptv6 => "NPTv6 outside",
            Handed::Pool => "NAT pool",
            Handed::Service { .. } => "service",
            Handed::Port => "port address",
        }
    }
}

/// One gateway's claim on an inclusive range of outside addresses.
#[derive(Debug)]
struct Claim<'a> {
    gateway: &'a str,
    handed: Handed,
    v6: bool,
    first: u128,
    last: u128,
    what: String,
}

/// The outside addresses every config hands out in the extranet (VRF 0, and the VRF named
/// `internet-access`, both real plan addresses): netmap and NPTv6 outside prefixes, NAT pool
/// addresses, published services (address, protocol, port) and the own addresses of extranet
/// and internet-access ports; and every pair of them that breaks the one-owner rule, described.
///
/// The rule: two different gateways never hand out overlapping addresses (a service's address
/// not at all, whatever its port). Within one gateway, services may share an address with other
/// services but not address, protocol and port; netmap outsides and pools never overlap one
/// another; a service address never lies inside a netmap outside or a pool; a port's own address
/// never lies inside a netmap outside, a pool, or a service address. Ports' own addresses are
/// hosts: two gateways on one link subnet are fine, on one address are not.
///
/// Claims are sorted by first address and swept once, so the cost is the number of claims times
/// the number open at once.
fn outside_address_conflicts<'a>(configs: impl IntoIterator<Item = &'a Config>) -> Vec<String> {
    let mut claims = Vec::new();
    for c in configs {
        collect_claims(c, &mut claims);
    }
    conflicting_claims(&mut claims).iter().map(|(a, b)| format!("{} overlaps {}", a.what, b.what)).collect()
}

/// The pairs of `claims` that overlap and may not (sorts `claims`).
fn conflicting_claims<'c, 'a>(claims: &'c mut [Claim<'a>]) -> Vec<(&'c Claim<'a>, &'c Claim<'a>)> {
    claims.sort_by_key(|c| (c.v6, c.first, Reverse(c.last)));
    let claims = &*claims;
    let mut open: Vec<usize> = Vec::new();
    let mut conflicts = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        open.retain(|&j| claims[j].v6 == c.v6 && claims[j].last >= c.first);
        for &j in &open {
            if !may_share(&claims[j], c) {
                conflicts.push((&claims[j], c));
            }
        }
        open.push(i);
    }
    conflicts
}

/// Whether two overlapping claims are allowed to overlap.
fn may_share(a: &Claim, b: &Claim) -> bool {
    if a.gateway != b.gateway {
        return false;
    }
    match (a.handed, b.handed) {
        (Handed::Port, Handed::Port) => true,
        (Handed::Service { proto: p, port: q }, Handed::Service { proto: r, port: s }) => (p, q) != (r, s),
        _ => false,
    }
}

fn span(net: IpNet) -> (bool, u128, u128) {
    match net {
        IpNet::V4(n) => (false, u32::from(n.network()).into(), u32::from(n.broadcast()).into()),
        IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

fn collect_claims<'a>(c: &'a Config, out: &mut Vec<Claim<'a>>) {
    let gw = c.gateway.as_str();
    let outside: Vec<u32> = c
        .vrfs
        .iter()
        .filter(|v| v.id == EXTRANET_VRF || v.name == control::model::INTERNET_ACCESS)
        .map(|v| v.id)
        .chain([EXTRANET_VRF])
        .collect();
    let mut claim = |net: IpNet, handed: Handed, what: String| {
        let (v6, first, last) = span(net);
        out.push(Claim { gateway: gw, handed, v6, first, last, what: format!("{what} of {gw}") });
    };
    for n in c.netmaps.iter().filter(|n| outside.contains(&n.outside_vrf)) {
        claim(IpNet::V4(n.outside), Handed::Netmap, format!("netmap outside {}", n.outside));
    }
    for n in c.nptv6.iter().filter(|n| outside.contains(&n.outside_vrf)) {
        claim(IpNet::V6(n.outside), Handed::Nptv6, format!("NPTv6 outside {}", n.outside));
    }
    for p in c.nat_pools.iter().filter(|p| outside.contains(&p.outside_vrf)) {
        for a in &p.addresses {
            claim(IpNet::V4(*a), Handed::Pool, format!("NAT pool {} address {a}", p.name));
        }
    }
    for s in c.services.iter().filter(|s| outside.contains(&s.outside_vrf)) {
        let handed = Handed::Service { proto: s.proto, port: s.outside_port };
        let what = format!("service {} at {}:{} (protocol {})", s.name, s.outside, s.outside_port, s.proto);
        claim(IpNet::V4(Ipv4Net::from(s.outside)), handed, what);
    }
    for p in c.ports.iter().filter(|p| matches!(p.role, Role::Extranet | Role::InternetAccess)) {
        for a in &p.addresses {
            let host = IpNet::new(a.addr(), a.max_prefix_len()).expect("a host prefix");
            claim(host, Handed::Port, format!("{} port {} address {}", p.role.name(), p.key(), a.addr()));
        }
    }
}

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
/// regression file (`generated_plans.proptest-regressions`), and prints how many passed check.
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
// Address blocks
// ---------------------------------------------------------------------------------------------

/// An IPv4 or IPv6 prefix as integers, for carving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    v6: bool,
    addr: u128,
    len: u8,
}

impl Block {
    fn parse(text: &str) -> Block {
        match text.parse::<IpNet>().expect(text) {
            IpNet::V4(n) => Block { v6: false, addr: u32::from(n.network()).into(), len: n.prefix_len() },
            IpNet::V6(n) => Block { v6: true, addr: u128::from(n.network()), len: n.prefix_len() },
        }
    }

    fn bits(self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    fn size(self) -> u128 {
        1u128.checked_shl(u32::from(self.bits() - self.len)).unwrap_or(u128::MAX)
    }

    /// The block of length `len` that holds `addr`.
    fn at(v6: bool, addr: u128, len: u8) -> Block {
        let b = Block { v6, addr, len: len.min(if v6 { 128 } else { 32 }) };
        let host = u32::from(b.bits() - b.len);
        let mask = u128::MAX.checked_shl(host).unwrap_or(0);
        Block { addr: addr & mask, ..b }
    }

    /// Sub-block number `idx` (wrapping) of length `len` (at least this block's length).
    fn sub(self, len: u8, idx: u128) -> Block {
        let len = len.clamp(self.len, self.bits());
        let count = u32::from(len - self.len);
        let idx = idx & 1u128.checked_shl(count).map_or(u128::MAX, |n| n - 1);
        let off = idx.checked_shl(u32::from(self.bits() - len)).unwrap_or(0);
        Block { v6: self.v6, addr: self.addr + off, len }
    }

    /// The address `n` into the block, as text.
    fn host(self, n: u128) -> String {
        let a = self.addr + n % self.size().max(1);
        if self.v6 { Ipv6Addr::from(a).to_string() } else { Ipv4Addr::from(a as u32).to_string() }
    }

    /// The address `n` into the block with the block's length: an interface address.
    fn iface(self, n: u128) -> String {
        format!("{}/{}", self.host(n), self.len)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host(0), self.len)
    }
}

/// A block handed out piece by piece, each piece aligned to its size; past the end it starts
/// again at the beginning (an overlap, on purpose).
#[derive(Clone, Copy)]
struct Area {
    block: Block,
    next: u128,
    last: Option<Block>,
}

impl Area {
    fn new(block: Block) -> Area {
        Area { block, next: 0, last: None }
    }

    fn alloc(&mut self, len: u8) -> Block {
        let len = len.clamp(self.block.len, self.block.bits());
        let size = Block { len, ..self.block }.size();
        let mut off = self.next.div_ceil(size) * size;
        if off + size > self.block.size() {
            off = 0;
        }
        self.next = off + size;
        let b = Block { v6: self.block.v6, addr: self.block.addr + off, len };
        self.last = Some(b);
        b
    }
}

// ---------------------------------------------------------------------------------------------
// The generator: a plan's shape as small numbers, rendered into addresses and YAML
// ---------------------------------------------------------------------------------------------

const LEVELS: [&str; 4] = ["central", "province", "prefecture", "county"];
/// Roots' blocks, by rank (shifted by a root's `slot_shift`): the first three are apart.
const ROOT_PUBLIC: [&str; 5] =
    ["198.18.0.0/15", "40.0.0.0/12", "44.0.0.0/12", "198.18.0.0/16", "40.0.0.0/16"];
const ROOT_PUBLIC_V6: [&str; 4] =
    ["2400:8000::/32", "2400:8001::/32", "2400:8002::/32", "2400:8000:4300::/40"];
const ROOT_INTERNET: [&str; 4] = ["32.128.0.0/16", "32.144.0.0/16", "32.160.0.0/16", "32.128.0.0/20"];
/// Internet-access blocks given out carelessly: inside public roots, or the uplinks' links.
const STRAY_INTERNET: [&str; 3] = ["40.0.0.0/24", "32.0.0.0/24", "198.19.255.0/24"];
const DEPARTMENTS: [&str; 3] = ["tax", "health", "police"];
/// Departments plan their own VPNs: tax and health overlap, which is allowed.
const ROOT_DEDICATED: [&str; 3] = ["10.200.0.0/14", "10.200.0.0/14", "10.204.0.0/14"];
const LEGACY: [&str; 7] = [
    "10.0.0.0/16",
    "10.0.0.0/20",
    "10.0.1.0/24",
    "10.20.0.0/24",
    "172.16.0.0/22",
    "192.168.1.0/24",
    "192.168.0.0/16",
];
const NETWORK_BASES: [&str; 3] = ["lan", "office", "clinic"];
/// Ids given out carelessly: the same id at two nodes.
const NETWORK_POOL: [&str; 3] = ["lan", "lan-web", "clinic"];
const SERVICE_NAMES: [&str; 4] = ["web", "dns", "web-dns", "portal"];
const INSIDE_PORTS: [u16; 4] = [80, 8080, 53, 443];
const OUTSIDE_PORTS: [u16; 6] = [80, 443, 8080, 53, 1, 65535];
const BLOCK_SIZES: [u16; 4] = [64, 256, 512, 1024];
const ROUTES: [&str; 4] = ["0.0.0.0/0", "10.50.0.0/16", "172.20.0.0/16", "32.0.0.0/8"];
const REMOTES: [&str; 3] = ["32.0.250.1", "198.19.9.1", "40.3.0.1"];
/// An uplink address written without looking: inside 198.18.0.0/15, the first root's block.
const FIXED_UPLINK: &str = "198.19.0.1/24";
const POLICY_NAMES: [&str; 4] = ["p0", "p1", "no-telnet", "count-web"];
const PROTOCOLS: [Option<&str>; 5] = [None, Some("tcp"), Some("udp"), Some("icmp"), Some("\"47\"")];
const PORT_SPECS: [&str; 3] = ["80", "\"80-443\"", "23"];
const ACTIONS: [&str; 3] = ["permit", "deny", "count"];
const ROLES: [&str; 3] = ["admin", "operator", "viewer"];

/// Where a node puts a block of its own (netmap target, pool, service address, uplink): in its
/// own area, split in quarters (netmaps, pools, services, uplinks), which its children's blocks
/// leave free; or, as a hazard, over its last block of that kind, in another quarter, or inside
/// a child's block.
#[derive(Clone, Copy, Debug)]
enum Place {
    Own,
    Collide,
    Quarter(u8),
    Child(u8),
}

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        970 => Just(Place::Own),
        5 => Just(Place::Collide),
        5 => (0u8..4).prop_map(Place::Quarter),
        20 => (0u8..6).prop_map(Place::Child),
    ]
}

#[derive(Clone, Debug)]
struct PlanSpec {
    /// The roots' level (index into [`LEVELS`]); deeper levels are dropped to fit.
    root_level: u8,
    /// Level by level, the roots first.
    levels: Vec<Vec<NodeSpec>>,
    operators: Vec<OperatorSpec>,
}

#[derive(Clone, Debug)]
enum Internet {
    None,
    Slot,
    Stray(u8),
}

#[derive(Clone, Debug)]
struct NodeSpec {
    /// Index into the level above (wrapping).
    parent: u8,
    /// Hazard: the slot in the parent's blocks (or the root pools) moves by this much.
    slot_shift: u8,
    /// Hazard: at its parent's level.
    same_level: bool,
    /// Hazard: the previous node's code.
    reuse_code: bool,
    /// Extra bits between this node's block and its children's.
    child_extra: u8,
    public: bool,
    public_v6: bool,
    internet: Internet,
    departments: Vec<&'static str>,
    /// Dedicated VPNs: each an index into the departments declared here or above.
    dedicated: Vec<u8>,
    networks: Vec<NetSpec>,
    gateways: Vec<GwSpec>,
    policies: Vec<PolicySpec>,
}

#[derive(Clone, Debug)]
enum NetId {
    Fresh(u8),
    /// The previous network's id with `-web` appended (its services' names may then collide).
    Derived,
    /// Hazard: from a small pool shared by all nodes.
    Pool(u8),
}

#[derive(Clone, Debug)]
struct NetSpec {
    id: NetId,
    prefixes: Vec<u8>,
    netmaps: Vec<NetmapSpec>,
    napt: Option<NaptSpec>,
    services: Vec<ServiceSpec>,
    isolated: Vec<IsolatedSpec>,
}

#[derive(Clone, Debug)]
struct NetmapSpec {
    prefix: u8,
    /// Extra bits below a quarter of the prefix.
    extra: u8,
    /// Hazard: the source overlaps the network's previous netmap source.
    overlap: bool,
    to: Place,
}

#[derive(Clone, Debug)]
struct NaptSpec {
    pools: Vec<(u8, Place)>,
    block_size: Option<u8>,
    deterministic: bool,
    /// Hazard: a deterministic pool one bit too small.
    short: bool,
    filtering: Option<bool>,
}

#[derive(Clone, Debug)]
struct ServiceSpec {
    name: u8,
    udp: bool,
    prefix: u8,
    host: u8,
    inside_port: u8,
    outside_port: u8,
    /// The address of the node's previous service.
    share: bool,
    place: Place,
}

/// An isolated subnet: the last block of a prefix (netmap sources are taken from its start).
#[derive(Clone, Debug)]
struct IsolatedSpec {
    prefix: u8,
    /// Extra bits below a quarter of the prefix.
    extra: u8,
    /// Hazard: 1, the whole prefix (netmap sources and services inside it); 2, outside it.
    hazard: u8,
}

#[derive(Clone, Debug)]
enum UplinkKind {
    /// A link subnet of the gateway's own.
    Link,
    /// The previous gateway's link subnet.
    Shared,
    /// A /30 from the node's public block.
    InPublic(Place),
    Fixed,
}

#[derive(Clone, Debug)]
struct UplinkSpec {
    kind: UplinkKind,
    /// .2 on its subnet rather than .1.
    second: bool,
}

#[derive(Clone, Debug)]
struct TunnelSpec {
    network: Option<u8>,
    remote: u8,
    key: Option<u32>,
    /// Hazard: the local end is not the uplink's address.
    wrong_local: bool,
}

#[derive(Clone, Debug)]
struct RouteSpec {
    interface: u8,
    prefix: u8,
    via: u8,
}

#[derive(Clone, Debug)]
struct GwSpec {
    /// Hazard: the previous gateway's id.
    reuse_id: bool,
    /// Hazard: also serves this network (by index), which another gateway of the node may serve.
    also: Option<u8>,
    /// Legacy interfaces as VLANs of one interface.
    vlans: bool,
    uplinks: Vec<UplinkSpec>,
    /// An internet-access interface; `true`: on the previous gateway's subnet.
    internet: Option<bool>,
    tunnel: Option<TunnelSpec>,
    routes: Vec<RouteSpec>,
}

#[derive(Clone, Debug)]
struct PolicySpec {
    name: u8,
    network: Option<u8>,
    from: Option<u8>,
    to: Option<u8>,
    protocol: u8,
    ports: Option<u8>,
    action: u8,
}

#[derive(Clone, Debug)]
struct OperatorSpec {
    scope: u8,
    role: u8,
}

fn small(max: u8) -> impl Strategy<Value = u8> {
    0..=max
}

/// 0 but once in `per` draws, 1..=max.
fn rarely(per: u32, max: u8) -> impl Strategy<Value = u8> {
    prop_oneof![per - 1 => Just(0u8), 1 => 1..=max]
}

prop_compose! {
    fn netmap_spec()(prefix in small(3), extra in small(4), overlap in prop::bool::weighted(0.005), to in place())
        -> NetmapSpec {
        NetmapSpec { prefix, extra, overlap, to }
    }
}

prop_compose! {
    fn napt_spec()(
        pools in prop::collection::vec((26u8..=30, place()), 1..=2),
        block_size in prop::option::weighted(0.6, small(3)),
        deterministic in prop::bool::weighted(0.3),
        short in prop::bool::weighted(0.03),
        filtering in prop::option::weighted(0.3, any::<bool>()),
    ) -> NaptSpec {
        NaptSpec { pools, block_size, deterministic, short, filtering }
    }
}

prop_compose! {
    fn service_spec()(
        name in small(3),
        udp in prop::bool::weighted(0.3),
        prefix in small(3),
        host in 1u8..=8,
        inside_port in small(3),
        outside_port in small(5),
        share in prop::bool::weighted(0.3),
        place in place(),
    ) -> ServiceSpec {
        ServiceSpec { name, udp, prefix, host, inside_port, outside_port, share, place }
    }
}

prop_compose! {
    fn isolated_spec()(prefix in small(3), extra in small(6), hazard in prop_oneof![99 => Just(0u8), 1 => 1u8..=2])
        -> IsolatedSpec {
        IsolatedSpec { prefix, extra, hazard }
    }
}

fn net_id() -> impl Strategy<Value = NetId> {
    prop_oneof![
        975 => small(2).prop_map(NetId::Fresh),
        20 => Just(NetId::Derived),
        5 => small(2).prop_map(NetId::Pool),
    ]
}

prop_compose! {
    fn net_spec()(
        id in net_id(),
        prefixes in prop_oneof![8 => prop::collection::vec(small(6), 1..=1), 2 => prop::collection::vec(small(6), 2..=2)],
        netmaps in prop::collection::vec(netmap_spec(), 0..=2),
        napt in prop::option::weighted(0.4, napt_spec()),
        services in prop::collection::vec(service_spec(), 0..=2),
        isolated in prop::collection::vec(isolated_spec(), 0..=1),
    ) -> NetSpec {
        NetSpec { id, prefixes, netmaps, napt, services, isolated }
    }
}

fn uplink_spec() -> impl Strategy<Value = UplinkSpec> {
    let kind = prop_oneof![
        950 => Just(UplinkKind::Link),
        20 => Just(UplinkKind::Shared),
        25 => place().prop_map(UplinkKind::InPublic),
        5 => Just(UplinkKind::Fixed),
    ];
    (kind, prop::bool::weighted(0.5)).prop_map(|(kind, second)| UplinkSpec { kind, second })
}

prop_compose! {
    fn tunnel_spec()(
        network in prop::option::weighted(0.7, small(3)),
        remote in small(2),
        key in prop::option::weighted(0.5, 1u32..10),
        wrong_local in prop::bool::weighted(0.01),
    ) -> TunnelSpec {
        TunnelSpec { network, remote, key, wrong_local }
    }
}

prop_compose! {
    fn route_spec()(interface in small(5), prefix in small(3), via in prop_oneof![98 => Just(0u8), 2 => small(2)])
        -> RouteSpec {
        RouteSpec { interface, prefix, via }
    }
}

prop_compose! {
    fn gw_spec()(
        reuse_id in prop::bool::weighted(0.005),
        also in prop::option::weighted(0.1, small(3)),
        vlans in prop::bool::weighted(0.3),
        uplinks in prop_oneof![
            950 => prop::collection::vec(uplink_spec(), 1..=1),
            45 => prop::collection::vec(uplink_spec(), 2..=2),
            5 => Just(Vec::new()),
        ],
        internet in prop::option::weighted(0.25, prop::bool::weighted(0.03)),
        tunnel in prop::option::weighted(0.2, tunnel_spec()),
        routes in prop::collection::vec(route_spec(), 0..=3),
    ) -> GwSpec {
        GwSpec { reuse_id, also, vlans, uplinks, internet, tunnel, routes }
    }
}

prop_compose! {
    fn policy_spec()(
        name in rarely(100, 3),
        network in prop::option::weighted(0.6, small(5)),
        from in prop::option::weighted(0.3, small(6)),
        to in prop::option::weighted(0.3, small(6)),
        protocol in small(4),
        ports in prop::option::weighted(0.5, small(2)),
        action in small(2),
    ) -> PolicySpec {
        PolicySpec { name, network, from, to, protocol, ports, action }
    }
}

fn internet() -> impl Strategy<Value = Internet> {
    prop_oneof![
        650 => Just(Internet::None),
        345 => Just(Internet::Slot),
        5 => small(2).prop_map(Internet::Stray),
    ]
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    let head = (
        any::<u8>(),
        rarely(100, 3),
        prop::bool::weighted(0.003),
        prop::bool::weighted(0.003),
        small(1),
        prop::bool::weighted(0.98),
        prop::bool::weighted(0.3),
        internet(),
        prop_oneof![7 => Just(Vec::new()), 3 => prop::sample::subsequence(DEPARTMENTS.to_vec(), 1..=2)],
        prop_oneof![7 => Just(Vec::new()), 3 => prop::collection::vec(small(2), 1..=1)],
    );
    let body = (
        prop_oneof![3 => Just(Vec::new()), 5 => prop::collection::vec(net_spec(), 1..=1), 2 => prop::collection::vec(net_spec(), 2..=3)],
        prop_oneof![3 => Just(Vec::new()), 6 => prop::collection::vec(gw_spec(), 1..=1), 1 => prop::collection::vec(gw_spec(), 2..=2)],
        prop::collection::vec(policy_spec(), 0..=2),
    );
    (head, body).prop_map(
        |(
            (
                parent,
                slot_shift,
                same_level,
                reuse_code,
                child_extra,
                public,
                public_v6,
                internet,
                departments,
                dedicated,
            ),
            (networks, gateways, policies),
        )| NodeSpec {
            parent,
            slot_shift,
            same_level,
            reuse_code,
            child_extra,
            public,
            public_v6,
            internet,
            departments,
            dedicated,
            networks,
            gateways,
            policies,
        },
    )
}

fn plan_spec() -> impl Strategy<Value = PlanSpec> {
    let roots = prop_oneof![8 => prop::collection::vec(node_spec(), 1..=1), 2 => prop::collection::vec(node_spec(), 2..=3)];
    let below = prop::collection::vec(prop::collection::vec(node_spec(), 1..=6), 0..=3);
    let operators = prop::collection::vec(
        (any::<u8>(), small(2)).prop_map(|(scope, role)| OperatorSpec { scope, role }),
        0..=2,
    );
    (small(3), roots, below, operators).prop_map(|(root_level, roots, below, operators)| {
        let mut levels = vec![roots];
        levels.extend(below);
        PlanSpec { root_level, levels, operators }
    })
}

/// A node's quarters and its children's blocks, to place its own blocks in.
struct OwnArea {
    quarters: [Area; 4],
    children: Vec<Block>,
}

impl OwnArea {
    fn place(&mut self, quarter: usize, len: u8, p: Place) -> Block {
        let area = &mut self.quarters[quarter];
        let len = len.max(area.block.len);
        match p {
            Place::Own => area.alloc(len),
            Place::Collide => match area.last {
                Some(b) => Block::at(false, b.addr, len),
                None => area.alloc(len),
            },
            Place::Quarter(q) => self.quarters[q as usize % 4].alloc(len),
            Place::Child(c) if !self.children.is_empty() => {
                Block::at(false, self.children[c as usize % self.children.len()].addr, len)
            }
            Place::Child(_) => area.alloc(len),
        }
    }
}

/// A node of the tree being rendered, with its place and its (possibly undeclared) blocks.
struct RNode<'a> {
    spec: &'a NodeSpec,
    children: Vec<usize>,
    code: String,
    level: usize,
    public: Block,
    public_v6: Block,
    internet: Block,
    dedicated: [Block; 3],
    /// Bits between this node's blocks and its children's (and its own area).
    child_bits: u8,
    network_ids: Vec<String>,
    gateway_ids: Vec<String>,
    /// Departments declared here or above.
    departments: Vec<&'static str>,
}

/// Renders a plan spec as YAML text.
fn render(spec: &PlanSpec) -> String {
    let depth = spec.levels.len().min(4 - spec.root_level as usize);
    // The tree, level by level.
    let mut nodes: Vec<RNode> = Vec::new();
    let mut level_start = Vec::new();
    for d in 0..depth {
        level_start.push(nodes.len());
        for ns in &spec.levels[d] {
            let parent = (d > 0).then(|| level_start[d - 1] + ns.parent as usize % spec.levels[d - 1].len());
            let i = nodes.len();
            let code =
                if ns.reuse_code && i > 0 { nodes[i - 1].code.clone() } else { format!("{}", 430100 + i) };
            let level = match parent {
                None => spec.root_level as usize,
                Some(p) => nodes[p].level + usize::from(!ns.same_level),
            };
            if let Some(p) = parent {
                nodes[p].children.push(i);
            }
            let zero = Block { v6: false, addr: 0, len: 0 };
            nodes.push(RNode {
                spec: ns,
                children: Vec::new(),
                code,
                level,
                public: zero,
                public_v6: zero,
                internet: zero,
                dedicated: [zero; 3],
                child_bits: 0,
                network_ids: Vec::new(),
                gateway_ids: Vec::new(),
                departments: Vec::new(),
            });
        }
    }
    // Blocks, top down: roots from the pools by rank, children by slot in their parent's.
    for (rank, i) in (0..spec.levels[0].len()).enumerate() {
        let n = &mut nodes[i];
        let slot = rank + n.spec.slot_shift as usize;
        n.public = Block::parse(ROOT_PUBLIC[slot % ROOT_PUBLIC.len()]);
        n.public_v6 = Block::parse(ROOT_PUBLIC_V6[slot % ROOT_PUBLIC_V6.len()]);
        n.internet = Block::parse(ROOT_INTERNET[slot % ROOT_INTERNET.len()]);
        for (d, text) in ROOT_DEDICATED.iter().enumerate() {
            n.dedicated[d] = Block::parse(text).sub(Block::parse(text).len + 2, slot as u128);
        }
        n.departments = n.spec.departments.clone();
    }
    let mut network_count = 0usize;
    let mut gateway_count = 0usize;
    let mut last_network: Option<String> = None;
    for i in 0..nodes.len() {
        let n = &nodes[i];
        let kids = n.children.clone();
        let bits = ceil_log2(kids.len() + 1) + n.spec.child_extra;
        let (public, v6, internet, dedicated, departments) =
            (n.public, n.public_v6, n.internet, n.dedicated, n.departments.clone());
        nodes[i].child_bits = if kids.is_empty() { 0 } else { bits };
        for (rank, &c) in kids.iter().enumerate() {
            let child = &mut nodes[c];
            let slot = (rank + child.spec.slot_shift as usize) as u128;
            child.public = public.sub(public.len + bits, slot);
            child.public_v6 = v6.sub(v6.len + 8, slot);
            child.internet = internet.sub(internet.len + bits, slot);
            child.dedicated = dedicated.map(|d| d.sub(d.len + bits, slot));
            let mut visible = departments.clone();
            visible.extend(child.spec.departments.iter().copied());
            child.departments = visible;
        }
        // Ids, in document order (parents first, which is this order too).
        let n = &mut nodes[i];
        for net in &n.spec.networks {
            let id = match (&net.id, &last_network) {
                (NetId::Derived, Some(prev)) => format!("{prev}-web"),
                (NetId::Pool(p), _) => NETWORK_POOL[*p as usize % NETWORK_POOL.len()].to_string(),
                (NetId::Fresh(b), _) => {
                    format!("{}{network_count}", NETWORK_BASES[*b as usize % NETWORK_BASES.len()])
                }
                (NetId::Derived, None) => format!("lan{network_count}"),
            };
            network_count += 1;
            last_network = Some(id.clone());
            n.network_ids.push(id);
        }
        for g in &n.spec.gateways {
            let id = match (g.reuse_id, gateway_count) {
                (true, c) if c > 0 => format!("gw{}", c - 1),
                _ => format!("gw{gateway_count}"),
            };
            gateway_count += 1;
            n.gateway_ids.push(id);
        }
    }
    let mut r =
        Renderer { nodes: &nodes, bodies: Vec::new(), gateway: 0, last_link: None, last_internet: None };
    for i in 0..nodes.len() {
        let body = r.node_body(i);
        r.bodies.push(body);
    }
    let mut out = String::from("plan: generated\n");
    if !spec.operators.is_empty() && !nodes.is_empty() {
        out.push_str("operators:\n");
        for (k, o) in spec.operators.iter().enumerate() {
            let scope = &nodes[o.scope as usize % nodes.len()].code;
            let role = ROLES[o.role as usize % ROLES.len()];
            let _ = writeln!(out, "  - {{ id: op{k}, scope: \"{scope}\", role: {role} }}");
        }
    }
    out.push_str("nodes:\n");
    for i in 0..spec.levels[0].len() {
        r.emit(i, 2, &mut out);
    }
    out
}

fn ceil_log2(n: usize) -> u8 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as u8
}

struct Renderer<'a> {
    nodes: &'a [RNode<'a>],
    bodies: Vec<String>,
    /// Gateways rendered so far (their link subnets are numbered by it).
    gateway: usize,
    /// The previous gateway's first uplink subnet.
    last_link: Option<Block>,
    last_internet: Option<Block>,
}

/// An interface as routes need it.
struct Itf {
    zone: Option<String>,
    subnet: Block,
    /// The gateway's own host number on the subnet.
    host: u128,
}

impl Renderer<'_> {
    fn emit(&self, i: usize, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        for (k, line) in self.bodies[i].lines().enumerate() {
            let lead = if k == 0 { "- " } else { "  " };
            let _ = writeln!(out, "{pad}{lead}{line}");
        }
        if !self.nodes[i].children.is_empty() {
            let _ = writeln!(out, "{pad}  children:");
            for &c in &self.nodes[i].children {
                self.emit(c, indent + 4, out);
            }
        }
    }

    /// The node's keys, at column 0.
    fn node_body(&mut self, i: usize) -> String {
        let n = &self.nodes[i];
        let s = n.spec;
        let mut o = String::new();
        let _ = writeln!(o, "code: \"{}\"\nname: n{}\nlevel: {}", n.code, n.code, LEVELS[n.level.min(3)]);
        if !s.departments.is_empty() {
            o.push_str("departments:\n");
            for d in &s.departments {
                let _ = writeln!(o, "  - {{ id: {d}, name: {d} department }}");
            }
        }
        // The node's own area: after its children's slots, in quarters.
        let own = if n.children.is_empty() {
            n.public
        } else {
            n.public.sub(n.public.len + n.child_bits, n.children.len() as u128)
        };
        let children: Vec<Block> = n.children.iter().map(|&c| self.nodes[c].public).collect();
        let q = |k| Area::new(own.sub(own.len + 2, k));
        let mut area = OwnArea { quarters: [q(0), q(1), q(2), q(3)], children };
        let internet_own = if n.children.is_empty() {
            n.internet
        } else {
            n.internet.sub(n.internet.len + n.child_bits, n.children.len() as u128)
        };
        let mut internet_area = Area::new(internet_own);
        let internet_block = match s.internet {
            Internet::None => None,
            Internet::Slot => Some(n.internet),
            Internet::Stray(k) => Some(Block::parse(STRAY_INTERNET[k as usize % STRAY_INTERNET.len()])),
        };
        let mut alloc = Vec::new();
        if s.public {
            alloc.push(format!("  public: [{}]", n.public));
        }
        if s.public_v6 {
            alloc.push(format!("  public_v6: [\"{}\"]", n.public_v6));
        }
        if let Some(b) = internet_block {
            alloc.push(format!("  internet: [{b}]"));
        }
        // A dedicated VPN for a department declared here or above (none, if none is).
        if !s.dedicated.is_empty() && !n.departments.is_empty() {
            alloc.push("  dedicated:".into());
            for &d in &s.dedicated {
                let dept = n.departments[d as usize % n.departments.len()];
                let k = DEPARTMENTS.iter().position(|x| *x == dept).unwrap_or(0);
                alloc.push(format!("    - {{ department: {dept}, ipv4: [{}] }}", n.dedicated[k]));
            }
        }
        if !alloc.is_empty() {
            let _ = writeln!(o, "allocations:\n{}", alloc.join("\n"));
        }
        // Legacy networks and their conversions.
        let mut networks: Vec<Vec<Block>> = Vec::new();
        let mut last_service: Option<(Block, usize)> = None;
        if !s.networks.is_empty() {
            o.push_str("legacy_networks:\n");
        }
        for (k, net) in s.networks.iter().enumerate() {
            // A second prefix apart from the first (overlap within a network is never legal).
            let mut prefixes = vec![Block::parse(LEGACY[net.prefixes[0] as usize % LEGACY.len()])];
            for &p in &net.prefixes[1..] {
                let apart: Vec<Block> = LEGACY
                    .iter()
                    .map(|t| Block::parse(t))
                    .filter(|b| prefixes.iter().all(|q| !overlap(*b, *q)))
                    .collect();
                if !apart.is_empty() {
                    prefixes.push(apart[p as usize % apart.len()]);
                }
            }
            let pick = |p: u8| prefixes[p as usize % prefixes.len()];
            let _ = writeln!(o, "  - id: {}\n    prefixes: [{}]", n.network_ids[k], list(&prefixes));
            if !net.netmaps.is_empty() {
                o.push_str("    netmap:\n");
            }
            // Sources from the start of each prefix, one after another; targets in quarter 0.
            let mut sources: Vec<Area> = prefixes.iter().map(|p| Area::new(*p)).collect();
            let mut last_source: Option<Block> = None;
            for m in &net.netmaps {
                let k = m.prefix as usize % prefixes.len();
                let len = (prefixes[k].len + 2 + m.extra).max(area.quarters[0].block.len + 2).min(32);
                let from = match (m.overlap, last_source) {
                    (true, Some(b)) => Block::at(false, b.addr, len),
                    _ => sources[k].alloc(len),
                };
                last_source = Some(from);
                let to = area.place(0, len, m.to);
                let _ = writeln!(o, "      - {{ from: {from}, to: {to} }}");
            }
            if let Some(napt) = &net.napt {
                let block = napt.block_size.map(|b| BLOCK_SIZES[b as usize % BLOCK_SIZES.len()]);
                // Deterministic NAPT maps one prefix (with two, only as a hazard).
                let deterministic = napt.deterministic && (prefixes.len() == 1 || napt.short);
                let pools: Vec<Block> = if deterministic {
                    // One prefix, just big enough for every host to own a block.
                    let hosts = 1u64 << (32 - prefixes[0].len);
                    let per_address = 64512 / u64::from(block.unwrap_or(256));
                    let needed = hosts.div_ceil(per_address) as usize;
                    let len = 32 - ceil_log2(needed) + u8::from(napt.short);
                    vec![area.place(1, len.min(32), napt.pools[0].1)]
                } else {
                    napt.pools.iter().map(|(len, p)| area.place(1, *len, *p)).collect()
                };
                let mut line = format!("    napt: {{ pool: [{}]", list(&pools));
                if let Some(b) = block {
                    let _ = write!(line, ", block_size: {b}");
                }
                if deterministic {
                    line.push_str(", deterministic: true");
                }
                match napt.filtering {
                    Some(true) => line.push_str(", filtering: endpoint-independent"),
                    Some(false) => line.push_str(", filtering: address-and-port-dependent"),
                    None => {}
                }
                let _ = writeln!(o, "{line} }}");
            }
            if !net.services.is_empty() {
                o.push_str("    services:\n");
            }
            for (j, sv) in net.services.iter().enumerate() {
                let name = SERVICE_NAMES[(j + net.services[0].name as usize) % SERVICE_NAMES.len()];
                let protocol = if sv.udp { "udp" } else { "tcp" };
                let inside = pick(sv.prefix).host(u128::from(sv.host));
                let inside_port = INSIDE_PORTS[sv.inside_port as usize % INSIDE_PORTS.len()];
                // Sharing the previous service's address, on another port.
                let (outside, port) = match (sv.share, last_service) {
                    (true, Some((b, prev))) => {
                        (b, prev + 1 + sv.outside_port as usize % (OUTSIDE_PORTS.len() - 1))
                    }
                    _ => (area.place(2, 32, sv.place), sv.outside_port as usize),
                };
                last_service = Some((outside, port));
                let outside_port = OUTSIDE_PORTS[port % OUTSIDE_PORTS.len()];
                let _ = writeln!(
                    o,
                    "      - {{ name: {name}, protocol: {protocol}, inside: \"{inside}:{inside_port}\", outside: \"{}:{outside_port}\" }}",
                    outside.host(0)
                );
            }
            let isolated: Vec<String> = net
                .isolated
                .iter()
                .map(|iso| {
                    let p = pick(iso.prefix);
                    match iso.hazard {
                        0 => p.sub(p.len + 2 + iso.extra, u128::MAX).to_string(),
                        1 => p.to_string(),
                        _ => "10.99.0.0/24".to_string(),
                    }
                })
                .collect();
            if !isolated.is_empty() {
                let _ = writeln!(o, "    isolated: [{}]", isolated.join(", "));
            }
            networks.push(prefixes);
        }
        // Gateways: network k is served by gateway k mod their number (and by hazard another).
        if !s.gateways.is_empty() {
            o.push_str("gateways:\n");
        }
        let count = s.gateways.len();
        for (g, gw) in s.gateways.iter().enumerate() {
            let _ = writeln!(o, "  - id: {}\n    interfaces:", n.gateway_ids[g]);
            let mut itfs: Vec<Itf> = Vec::new();
            let mut served: Vec<usize> = (0..networks.len()).filter(|k| k % count == g).collect();
            if let (Some(a), false) = (gw.also, networks.is_empty()) {
                let a = a as usize % networks.len();
                if !served.contains(&a) {
                    served.push(a);
                }
            }
            for (j, &k) in served.iter().enumerate() {
                let subnet = networks[k][0];
                let (name, vlan) = if gw.vlans {
                    ("lan0".to_string(), format!(", vlan: {}", 100 + j))
                } else {
                    (format!("lan{j}"), String::new())
                };
                let id = &n.network_ids[k];
                let _ = writeln!(
                    o,
                    "      - {{ name: {name}{vlan}, role: legacy, network: {id}, address: {} }}",
                    subnet.iface(1)
                );
                itfs.push(Itf { zone: Some(id.clone()), subnet, host: 1 });
            }
            let mut local = None;
            let mut first_link = None;
            for (j, up) in gw.uplinks.iter().enumerate() {
                let link = Block::parse(&format!("32.{}.{}.0/24", 2 * j, self.gateway % 250));
                let subnet = match up.kind {
                    UplinkKind::Link => link,
                    UplinkKind::Shared => self.last_link.unwrap_or(link),
                    UplinkKind::InPublic(p) => area.place(3, 30, p),
                    UplinkKind::Fixed => Block::parse(FIXED_UPLINK),
                };
                first_link.get_or_insert(subnet);
                let address = subnet.iface(1 + u128::from(up.second));
                local.get_or_insert_with(|| subnet.host(1 + u128::from(up.second)));
                let _ = writeln!(o, "      - {{ name: up{j}, role: extranet, address: {address} }}");
                itfs.push(Itf { zone: None, subnet, host: 1 + u128::from(up.second) });
            }
            if let (Some(collide), Some(block)) = (gw.internet, internet_block) {
                let subnet = match (collide, self.last_internet) {
                    (true, Some(b)) => b,
                    _ if block != n.internet => block.sub(29, 0),
                    _ => internet_area.alloc(29),
                };
                self.last_internet = Some(subnet);
                let _ = writeln!(
                    o,
                    "      - {{ name: inet0, role: internet-access, address: {} }}",
                    subnet.iface(1)
                );
                itfs.push(Itf { zone: Some(control::model::INTERNET_ACCESS.into()), subnet, host: 1 });
            }
            if let Some(t) = &gw.tunnel {
                let network = match t.network {
                    Some(k) if !networks.is_empty() => {
                        Some(n.network_ids[k as usize % networks.len()].clone())
                    }
                    _ => None,
                };
                let subnet = match network {
                    Some(_) => Block::parse(&format!("10.99.{}.0/30", self.gateway % 250)),
                    None => Block::parse(&format!("32.1.{}.0/30", self.gateway % 250)),
                };
                let remote = REMOTES[t.remote as usize % REMOTES.len()];
                let local = match (&local, t.wrong_local) {
                    (Some(l), false) => l.clone(),
                    _ => remote.to_string(),
                };
                let key = t.key.map(|k| format!(", key: {k}")).unwrap_or_default();
                let net = network.as_ref().map(|id| format!(" network: {id},")).unwrap_or_default();
                let _ = writeln!(
                    o,
                    "      - {{ name: gre0, role: tunnel,{net} address: {}, tunnel: {{ local: {local}, remote: {remote}{key} }} }}",
                    subnet.iface(1)
                );
                itfs.push(Itf { zone: network, subnet, host: 1 });
            }
            if !gw.routes.is_empty() && !itfs.is_empty() {
                o.push_str("    routes:\n");
                for rt in &gw.routes {
                    let itf = &itfs[rt.interface as usize % itfs.len()];
                    let peer = if itf.host == 1 { 2 } else { 1 };
                    let via = itf.subnet.host(peer + u128::from(rt.via));
                    let prefix = ROUTES[rt.prefix as usize % ROUTES.len()];
                    let net = itf.zone.as_ref().map(|z| format!(", network: {z}")).unwrap_or_default();
                    let _ = writeln!(o, "      - {{ prefix: {prefix}, via: {via}{net} }}");
                }
            }
            self.last_link = first_link;
            self.gateway += 1;
        }
        // Operators' rules, on this node's networks or its subtree's.
        if !s.policies.is_empty() {
            o.push_str("policies:\n");
        }
        let mut subtree = Vec::new();
        let mut stack = vec![i];
        while let Some(k) = stack.pop() {
            subtree.extend(self.nodes[k].network_ids.iter().cloned());
            stack.extend(self.nodes[k].children.iter().copied());
        }
        for (k, p) in s.policies.iter().enumerate() {
            let mut line =
                format!("  - {{ name: {}", POLICY_NAMES[(k + p.name as usize) % POLICY_NAMES.len()]);
            if let (Some(x), false) = (p.network, subtree.is_empty()) {
                let _ = write!(line, ", network: {}", subtree[x as usize % subtree.len()]);
            }
            if let Some(f) = p.from {
                let _ = write!(line, ", from: {}", LEGACY[f as usize % LEGACY.len()]);
            }
            if let Some(t) = p.to {
                let _ = write!(line, ", to: {}", LEGACY[t as usize % LEGACY.len()]);
            }
            let protocol = PROTOCOLS[p.protocol as usize % PROTOCOLS.len()];
            if let Some(proto) = protocol {
                let _ = write!(line, ", protocol: {proto}");
            }
            if let (Some(ports), Some("tcp" | "udp")) = (p.ports, protocol) {
                let _ = write!(line, ", ports: {}", PORT_SPECS[ports as usize % PORT_SPECS.len()]);
            }
            let _ = writeln!(o, "{line}, action: {} }}", ACTIONS[p.action as usize % ACTIONS.len()]);
        }
        o
    }
}

fn overlap(a: Block, b: Block) -> bool {
    let (a_last, b_last) = (a.addr + (a.size() - 1), b.addr + (b.size() - 1));
    a.v6 == b.v6 && a.addr <= b_last && b.addr <= a_last
}

fn list(blocks: &[Block]) -> String {
    blocks.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// Mutations of the example plans
// ---------------------------------------------------------------------------------------------

const EXAMPLES: [(&str, &str); 3] = [
    ("configs/demo/plan.yaml", include_str!("../../configs/demo/plan.yaml")),
    ("configs/examples/conversions.yaml", include_str!("../../configs/examples/conversions.yaml")),
    ("configs/examples/province-tree.yaml", include_str!("../../configs/examples/province-tree.yaml")),
];
const POOL_V4_PREFIXES: [&str; 8] = [
    "198.18.0.0/16",
    "198.18.20.0/24",
    "198.18.40.0/24",
    "198.19.0.0/24",
    "32.0.0.0/24",
    "40.0.0.0/16",
    "10.20.0.0/24",
    "10.0.0.0/20",
];
const POOL_V4_ADDRESSES: [&str; 7] =
    ["198.18.20.1", "198.18.40.80", "198.19.0.1", "198.19.4.1", "198.18.41.1", "32.0.0.1", "10.20.0.1"];
const POOL_V6: [&str; 3] = ["2400:8000::/32", "2400:8000:4300::/40", "2400:8000:4301::/48"];
const POOL_NUMBERS: [u32; 11] = [0, 1, 23, 64, 80, 100, 200, 443, 512, 8080, 65535];
/// Keys whose values are ids (or codes) the mutations exchange.
const ID_KEYS: [&str; 5] = ["id: ", "network: ", "department: ", "scope: ", "code: "];
/// Keys whose values are numbers.
const NUMBER_KEYS: [&str; 4] = ["ports: ", "block_size: ", "vlan: ", "key: "];

#[derive(Clone, Debug)]
enum Mutation {
    /// An address or prefix becomes another of the same kind, from the file or a small pool.
    Address {
        at: Index,
        with: Index,
    },
    /// A prefix gets longer or shorter (its address truncated to fit).
    Resize {
        at: Index,
        longer: bool,
        by: u8,
    },
    /// An address moves on by `by`, a prefix by `by` blocks of its size.
    Shift {
        at: Index,
        by: u8,
    },
    /// A list item (a node, legacy network, gateway, interface, netmap entry, ...) is doubled;
    /// with `rename`, the copy's ids, names and codes are made new (its own references follow).
    Duplicate {
        at: Index,
        rename: bool,
    },
    Delete {
        at: Index,
    },
    /// An id (or code) becomes another of the file's.
    Id {
        at: Index,
        with: Index,
    },
    /// A port, block size, VLAN or key becomes another number.
    Number {
        at: Index,
        with: Index,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Address { at, with }),
        1 => (any::<Index>(), any::<bool>(), 1u8..4).prop_map(|(at, longer, by)| Mutation::Resize { at, longer, by }),
        2 => (any::<Index>(), 1u8..4).prop_map(|(at, by)| Mutation::Shift { at, by }),
        3 => (any::<Index>(), prop::bool::weighted(0.8)).prop_map(|(at, rename)| Mutation::Duplicate { at, rename }),
        1 => any::<Index>().prop_map(|at| Mutation::Delete { at }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Id { at, with }),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, with)| Mutation::Number { at, with }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    V4Prefix,
    V4Address,
    V6Prefix,
}

/// A span of the text.
#[derive(Clone, Copy, Debug)]
struct Token {
    start: usize,
    end: usize,
}

/// The text's lines with their byte offsets, each cut at its comment.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let code = line.find('#').map_or(line, |i| &line[..i]);
        out.push((at, code.trim_end_matches('\n')));
        at += line.len();
    }
    out
}

/// Every IPv4 address or prefix and quoted IPv6 prefix outside comments, with its kind.
fn address_tokens(text: &str) -> Vec<(Token, Kind)> {
    let mut out = Vec::new();
    for (at, line) in code_lines(text) {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let close = if b[i] == b'"' { line[i + 1..].find('"') } else { None };
            if let Some(close) = close {
                let inner = &line[i + 1..i + 1 + close];
                if inner.contains(':') && inner.parse::<ipnet::Ipv6Net>().is_ok() {
                    out.push((Token { start: at + i + 1, end: at + i + 1 + close }, Kind::V6Prefix));
                    i += close + 2;
                    continue;
                }
            }
            let starts =
                b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.'));
            if !starts {
                i += 1;
                continue;
            }
            let mut end = i;
            while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
                end += 1;
            }
            if line[i..end].parse::<Ipv4Addr>().is_err() {
                i = end.max(i + 1);
                continue;
            }
            let mut kind = Kind::V4Address;
            if end < b.len() && b[end] == b'/' {
                let mut e = end + 1;
                while e < b.len() && b[e].is_ascii_digit() {
                    e += 1;
                }
                if line[i..e].parse::<Ipv4Net>().is_ok() {
                    kind = Kind::V4Prefix;
                    end = e;
                }
            }
            out.push((Token { start: at + i, end: at + end }, kind));
            i = end;
        }
    }
    out
}

/// The values of `keys` (each a key and ": "), ending at a delimiter, outside comments.
fn keyed_tokens(text: &str, keys: &[&str], value: impl Fn(u8) -> bool) -> Vec<Token> {
    let mut out = Vec::new();
    for (at, line) in code_lines(text) {
        for key in keys {
            for (i, _) in line.match_indices(key) {
                let before = line[..i].bytes().last();
                if before.is_some_and(|c| !matches!(c, b' ' | b'{' | b'-')) {
                    continue;
                }
                let s = i + key.len();
                let len = line[s..].bytes().take_while(|c| value(*c)).count();
                if len > 0 {
                    out.push(Token { start: at + s, end: at + s + len });
                }
            }
        }
    }
    out
}

fn id_tokens(text: &str) -> Vec<Token> {
    keyed_tokens(text, &ID_KEYS, |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'"'))
}

/// Ports after socket addresses, and the values of [`NUMBER_KEYS`].
fn number_tokens(text: &str) -> Vec<Token> {
    let mut out = keyed_tokens(text, &NUMBER_KEYS, |c| c.is_ascii_digit());
    for (t, kind) in address_tokens(text) {
        let rest = &text[t.end..];
        if kind == Kind::V4Address && rest.starts_with(':') {
            let len = rest[1..].bytes().take_while(u8::is_ascii_digit).count();
            if len > 0 {
                out.push(Token { start: t.end + 1, end: t.end + 1 + len });
            }
        }
    }
    out
}

/// List items (`- ...` lines) and the lines below each: (first line, end line exclusive).
fn items(lines: &[&str]) -> Vec<(usize, usize)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.trim_start().starts_with("- ") {
            continue;
        }
        let dash = indent(l);
        let mut end = i + 1;
        let mut last = i + 1;
        while end < lines.len() && (blank(lines[end]) || indent(lines[end]) > dash) {
            end += 1;
            if !blank(lines[end - 1]) {
                last = end;
            }
        }
        out.push((i, last));
    }
    out
}

/// The copy of an item with new ids, names and codes; references to ids it defines follow.
fn renamed(block: &[&str]) -> Vec<String> {
    let text = block.join("\n");
    let defined: Vec<String> =
        keyed_tokens(&text, &["id: "], |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
            .iter()
            .map(|t| text[t.start..t.end].to_string())
            .collect();
    let mut renames: Vec<Token> = keyed_tokens(&text, &["id: ", "name: ", "network: "], |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
    })
    .into_iter()
    .filter(|t| !text[..t.start].ends_with("network: ") || defined.iter().any(|d| *d == text[t.start..t.end]))
    .collect();
    renames.sort_by_key(|t| Reverse(t.start));
    let mut out = text.clone();
    for t in renames {
        out.insert(t.end, 'b');
    }
    out.replace("code: \"43", "code: \"53").lines().map(str::to_string).collect()
}

/// Applies `ms` to example `which`; the text starts with a comment saying what was done.
fn mutate(which: usize, ms: &[Mutation]) -> String {
    let (name, original) = EXAMPLES[which];
    let mut text = original.to_string();
    let mut done = vec![format!("# {name}, mutated:")];
    for m in ms {
        if let Some(what) = apply(&mut text, m) {
            done.push(format!("#   {what}"));
        }
    }
    format!("{}\n{text}", done.join("\n"))
}

fn replace(text: &mut String, t: Token, with: &str) -> String {
    let what =
        format!("{} -> {with} (line {})", &text[t.start..t.end], text[..t.start].lines().count().max(1));
    text.replace_range(t.start..t.end, with);
    what
}

fn apply(text: &mut String, m: &Mutation) -> Option<String> {
    match m {
        Mutation::Address { at, with } => {
            let tokens = address_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let (t, kind) = tokens[at.index(tokens.len())];
            let pool: &[&str] = match kind {
                Kind::V4Prefix => &POOL_V4_PREFIXES,
                Kind::V4Address => &POOL_V4_ADDRESSES,
                Kind::V6Prefix => &POOL_V6,
            };
            let mut choices: Vec<String> = tokens
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(u, _)| text[u.start..u.end].to_string())
                .collect();
            choices.extend(pool.iter().map(|s| s.to_string()));
            let with = choices[with.index(choices.len())].clone();
            Some(replace(text, t, &with))
        }
        Mutation::Resize { at, longer, by } => {
            let tokens: Vec<Token> = address_tokens(text)
                .into_iter()
                .filter(|(_, k)| *k != Kind::V4Address)
                .map(|(t, _)| t)
                .collect();
            if tokens.is_empty() {
                return None;
            }
            let t = tokens[at.index(tokens.len())];
            let b = Block::parse(&text[t.start..t.end]);
            let len =
                if *longer { b.len.saturating_add(*by).min(b.bits()) } else { b.len.saturating_sub(*by) };
            Some(replace(text, t, &Block::at(b.v6, b.addr, len).to_string()))
        }
        Mutation::Shift { at, by } => {
            let tokens = address_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let (t, kind) = tokens[at.index(tokens.len())];
            let new = if kind == Kind::V4Address {
                let a: Ipv4Addr = text[t.start..t.end].parse().ok()?;
                Ipv4Addr::from(u32::from(a).wrapping_add(u32::from(*by))).to_string()
            } else {
                let b = Block::parse(&text[t.start..t.end]);
                let addr = b.addr.wrapping_add(u128::from(*by).wrapping_mul(b.size()));
                let addr = if b.v6 { addr } else { addr & u128::from(u32::MAX) };
                Block::at(b.v6, addr, b.len).to_string()
            };
            Some(replace(text, t, &new))
        }
        Mutation::Duplicate { at, rename } => {
            let lines: Vec<&str> = text.lines().collect();
            let all = items(&lines);
            if all.is_empty() {
                return None;
            }
            let (first, end) = all[at.index(all.len())];
            let copy: Vec<String> = if *rename {
                renamed(&lines[first..end])
            } else {
                lines[first..end].iter().map(|l| l.to_string()).collect()
            };
            let what = format!(
                "line {} doubled{}: {}",
                first + 1,
                if *rename { ", renamed" } else { "" },
                lines[first].trim()
            );
            let mut out: Vec<String> = lines[..end].iter().map(|l| l.to_string()).collect();
            out.extend(copy);
            out.extend(lines[end..].iter().map(|l| l.to_string()));
            *text = out.join("\n") + "\n";
            Some(what)
        }
        Mutation::Delete { at } => {
            let lines: Vec<&str> = text.lines().collect();
            let all = items(&lines);
            if all.is_empty() {
                return None;
            }
            let (first, end) = all[at.index(all.len())];
            let what = format!("line {} deleted: {}", first + 1, lines[first].trim());
            let out: Vec<&str> = lines[..first].iter().chain(&lines[end..]).copied().collect();
            *text = out.join("\n") + "\n";
            Some(what)
        }
        Mutation::Id { at, with } => {
            let tokens = id_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let t = tokens[at.index(tokens.len())];
            let u = tokens[with.index(tokens.len())];
            let with = text[u.start..u.end].to_string();
            Some(replace(text, t, &with))
        }
        Mutation::Number { at, with } => {
            let tokens = number_tokens(text);
            if tokens.is_empty() {
                return None;
            }
            let t = tokens[at.index(tokens.len())];
            Some(replace(text, t, &POOL_NUMBERS[with.index(POOL_NUMBERS.len())].to_string()))
        }
    }
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
