//! Plan validation: every rule is checked and every violation reported, each at its place.
//!
//! `Ok` promises two things. The plan compiles for every gateway (whatever the compiler or the
//! data plane would refuse is refused here first, with its line). And it keeps the plan's
//! promise: every address it hands out has exactly one owner, plan-wide ([`owners`]); nothing
//! reaches an isolated subnet; a netmap is a bijection. docs/plan.md lists every rule with its
//! message; each has a test in `tests/`.
//!
//! The checks are split by what they look at: names and ids ([`names`]), the tree and its
//! allocations ([`allocations`]), legacy networks and their conversions ([`conversions`]),
//! gateways ([`gateways`]), operators' rules ([`policies`]) and addresses across the whole plan
//! ([`owners`]). Each is near-linear: sorted sweeps and maps, never all pairs.

mod allocations;
mod conversions;
mod gateways;
mod names;
mod owners;
mod policies;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use ipnet::{IpNet, Ipv4Net};

use crate::{
    diagnostics::{Diagnostic, Diagnostics, quote},
    load::LoadedPlan,
    special_use::{self, Usage},
    tree::Tree,
};

/// Checks the whole plan. `Ok` means it can be compiled for any of its gateways.
pub fn validate(lp: &LoadedPlan) -> Result<(), Diagnostics> {
    let cx = Ctx { lp, tree: Tree::new(&lp.plan), out: RefCell::new(Vec::new()) };
    names::check(&cx);
    allocations::check(&cx);
    conversions::check(&cx);
    gateways::check(&cx);
    policies::check(&cx);
    owners::check(&cx);
    let mut out = cx.out.into_inner();
    if out.is_empty() {
        return Ok(());
    }
    // Each pass reports in document order; together, in file order.
    out.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    out.dedup();
    Err(Diagnostics(out))
}

/// What every check works with: the plan, its tree, and the problems found so far.
pub(crate) struct Ctx<'a> {
    pub lp: &'a LoadedPlan,
    pub tree: Tree<'a>,
    /// Behind a cell so that checks can report while they walk the tree they borrow.
    pub out: RefCell<Vec<Diagnostic>>,
}

impl Ctx<'_> {
    pub fn err(&self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let d = self.lp.error(path, message, hint);
        self.out.borrow_mut().push(d);
    }

    /// `file:line:column` of `path`, for a message that names another place.
    pub fn place(&self, path: &str) -> String {
        let d = self.lp.error(path, "", None);
        if d.line == 0 {
            d.file.display().to_string()
        } else {
            format!("{}:{}:{}", d.file.display(), d.line, d.column)
        }
    }

    /// A prefix written with host bits set (10.0.0.1/24) is almost always a typo for an address
    /// or for the network; either way it is not what the plan means.
    /// `at` is asked for only when there is a problem: most prefixes have none, and a
    /// national plan has a million of them.
    pub fn host_bits(&self, at: impl FnOnce() -> String, net: IpNet) {
        if net != net.trunc() {
            self.err(
                &at(),
                format!("{net} has host bits set"),
                Some(format!("write the network, {}", net.trunc())),
            );
        }
    }

    /// A prefix used where `usage` allows no special-purpose block of the kind it touches.
    pub fn special(
        &self,
        at: impl FnOnce() -> String,
        what: impl FnOnce() -> String,
        net: IpNet,
        usage: Usage,
    ) -> bool {
        let Some(block) = special_use::problem(&net, usage) else { return false };
        let hint = match usage {
            Usage::Plan => {
                "extranet and internet-access addresses come from the plan's public blocks; \
                            only the benchmarking range 198.18.0.0/15 (2001:2::/48) may stand in for them"
            }
            Usage::Dedicated => {
                "a department's VPN may use private space, never other special-purpose blocks"
            }
            Usage::Legacy => "no host can use these addresses",
        };
        self.err(&at(), format!("{}: {}", what(), special_use::describe(&net, block)), Some(hint.into()));
        true
    }
}

/// The same rule for an address: a /32 or /128.
pub(crate) fn host(addr: std::net::IpAddr) -> IpNet {
    IpNet::from(addr)
}

pub(crate) fn fmt_list(nets: &[Ipv4Net]) -> String {
    if nets.is_empty() {
        "(none)".into()
    } else {
        nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// Names for a hint: the first 20, then how many more (a node may have thousands).
pub(crate) fn fmt_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 20;
    let mut names = names.into_iter();
    let list: Vec<String> = names.by_ref().take(SHOWN).map(quote).collect();
    let more = names.count();
    match (list.is_empty(), more) {
        (true, _) => "(none)".into(),
        (false, 0) => list.join(", "),
        (false, n) => format!("{} and {n} more", list.join(", ")),
    }
}

/// Pairs of overlapping prefixes in `nets` (index pairs, in order), found by sorting. Two
/// prefixes overlap only by one containing the other, so each is compared with the widest one
/// still open before it: n prefixes cost n log n, and each prefix inside another is named once.
pub(crate) fn overlapping_pairs(nets: &[Ipv4Net]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..nets.len()).collect();
    order.sort_by_key(|&i| (nets[i].network(), nets[i].prefix_len(), i));
    let mut pairs = Vec::new();
    let mut open: Option<usize> = None; // the widest prefix that may still contain the next
    for &i in &order {
        match open {
            Some(o) if nets[o].contains(&nets[i]) => pairs.push((o.min(i), o.max(i))),
            _ => open = Some(i),
        }
    }
    pairs.sort();
    pairs
}

/// A set of IPv4 prefixes that answers "which one overlaps this?" in O(log n): a prefix overlaps
/// a member when the member contains it (one of its 33 supernets is a member) or it contains the
/// member (a member starts inside it).
pub(crate) struct PrefixSet {
    sorted: Vec<(Ipv4Net, usize)>,
    exact: std::collections::HashMap<Ipv4Net, usize>,
}

impl PrefixSet {
    pub fn new(nets: &[Ipv4Net]) -> PrefixSet {
        let mut sorted: Vec<(Ipv4Net, usize)> = nets.iter().map(|n| n.trunc()).zip(0..).collect();
        sorted.sort();
        let mut exact = std::collections::HashMap::new();
        for (n, i) in &sorted {
            exact.entry(*n).or_insert(*i);
        }
        PrefixSet { sorted, exact }
    }

    /// The index (in the slice given to `new`) of a member overlapping `p`, if any.
    pub fn overlapping(&self, p: &Ipv4Net) -> Option<usize> {
        let p = p.trunc();
        for len in (0..=p.prefix_len()).rev() {
            let sup = Ipv4Net::new(p.network(), len).map(|s| s.trunc()).ok()?;
            if let Some(i) = self.exact.get(&sup) {
                return Some(*i);
            }
        }
        let start = self.sorted.partition_point(|(n, _)| n.network() < p.network());
        self.sorted.get(start).filter(|(n, _)| n.network() <= p.broadcast()).map(|(_, i)| *i)
    }
}
