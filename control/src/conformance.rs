//! The conformance report: which legacy networks use addresses outside the unified plan, how
//! much, and how each is converted today; and, with `--propose`, netmap entries from free plan
//! blocks that would bring the rest in.

use std::fmt::Write as _;

use ipnet::Ipv4Net;

use crate::{LoadedPlan, model::Node};

/// `a` minus everything `b` covers, as disjoint prefixes in address order.
pub fn subtract(a: &[Ipv4Net], b: &[Ipv4Net]) -> Vec<Ipv4Net> {
    fn go(x: Ipv4Net, b: &[Ipv4Net], out: &mut Vec<Ipv4Net>) {
        if b.iter().any(|p| p.contains(&x)) {
            return;
        }
        if !b.iter().any(|p| x.contains(p)) {
            out.push(x);
            return;
        }
        // Something inside x is removed: split and look again (at most 32 levels deep).
        if let Ok(halves) = x.subnets(x.prefix_len() + 1) {
            for h in halves {
                go(h, b, out);
            }
        }
    }
    let mut out = Vec::new();
    for x in a {
        go(x.trunc(), b, &mut out);
    }
    out.sort();
    out
}

/// `a` ∩ `b`.
pub fn intersect(a: &[Ipv4Net], b: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let outside_b = subtract(a, b);
    subtract(a, &outside_b)
}

/// Addresses in disjoint prefixes.
pub fn size(nets: &[Ipv4Net]) -> u64 {
    nets.iter().map(|n| 1u64 << (32 - n.prefix_len())).sum()
}

fn list(nets: &[Ipv4Net]) -> String {
    if nets.is_empty() {
        "none".into()
    } else {
        nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// Takes the lowest free block of `len` bits from `free` (buddy style: the first free prefix that
/// can hold it gives up its first sub-block), or `None` if nothing is big enough.
fn allocate(free: &mut Vec<Ipv4Net>, len: u8) -> Option<Ipv4Net> {
    let i = free.iter().position(|f| f.prefix_len() <= len)?;
    let block = Ipv4Net::new(free[i].network(), len).ok()?;
    let taken = free.remove(i);
    let mut rest = subtract(&[taken], &[block]);
    free.append(&mut rest);
    free.sort();
    Some(block)
}

/// Blocks of `node`'s allocation already spoken for: netmap targets, pools, services, children.
fn used(node: &Node) -> Vec<Ipv4Net> {
    let mut u = Vec::new();
    for n in &node.legacy_networks {
        u.extend(n.netmap.iter().map(|m| m.to));
        if let Some(napt) = &n.napt {
            u.extend(napt.pool.iter().copied());
        }
        u.extend(n.services.iter().map(|s| Ipv4Net::from(*s.outside.ip())));
    }
    for c in &node.children {
        u.extend(c.allocations.public.iter().copied());
    }
    u
}

/// The report, as text; with `propose`, followed by plan YAML for each network that has
/// addresses neither in the plan nor converted.
pub fn report(lp: &LoadedPlan, propose: bool) -> String {
    let mut out = String::new();
    let (mut networks, mut conforming) = (0, 0);
    for (_, node) in lp.plan.nodes() {
        let mut free = subtract(&node.allocations.public, &used(node));
        for n in &node.legacy_networks {
            networks += 1;
            let prefixes: Vec<Ipv4Net> = subtract(&n.prefixes, &[]);
            let in_plan = intersect(&prefixes, &node.allocations.public);
            let foreign = subtract(&prefixes, &node.allocations.public);
            let netmapped = intersect(&foreign, &n.netmap.iter().map(|m| m.from).collect::<Vec<_>>());
            let isolated = intersect(&foreign, &n.isolated);
            let rest = subtract(&subtract(&foreign, &netmapped), &isolated);
            let state = if foreign.is_empty() {
                conforming += 1;
                "conforming".to_string()
            } else {
                format!(
                    "not conforming: {} of {} addresses outside the plan",
                    size(&foreign),
                    size(&prefixes)
                )
            };
            let _ = writeln!(out, "{} (node {} {}): {state}", n.id, node.code, node.name);
            let _ = writeln!(out, "  prefixes: {}; in the plan: {}", list(&prefixes), list(&in_plan));
            if foreign.is_empty() {
                continue;
            }
            let mut how = Vec::new();
            if !netmapped.is_empty() {
                how.push(format!("netmap {} addresses ({})", size(&netmapped), list(&netmapped)));
            }
            if !isolated.is_empty() {
                how.push(format!("isolated {} ({})", size(&isolated), list(&isolated)));
            }
            match (&n.napt, rest.is_empty()) {
                (_, true) => {}
                (Some(napt), false) => how.push(format!(
                    "NAPT{} {} addresses onto {}",
                    if napt.deterministic { " (deterministic)" } else { "" },
                    size(&rest),
                    list(&napt.pool)
                )),
                (None, false) => {
                    how.push(format!("unconverted {} addresses: they cannot reach the extranet", size(&rest)))
                }
            }
            let _ = writeln!(out, "  converted: {}", how.join("; "));
            if propose && !rest.is_empty() {
                let _ = writeln!(out, "  proposal, to paste under legacy_networks[id={}]:", n.id);
                let _ = writeln!(out, "    netmap:");
                for m in &n.netmap {
                    let _ = writeln!(out, "      - {{ from: {}, to: {} }}", m.from, m.to);
                }
                for r in &rest {
                    match allocate(&mut free, r.prefix_len()) {
                        Some(b) => {
                            let _ = writeln!(out, "      - {{ from: {r}, to: {b} }}");
                        }
                        None => {
                            let _ = writeln!(
                                out,
                                "      # no free /{} left in {} for {r}",
                                r.prefix_len(),
                                list(&node.allocations.public)
                            );
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "{networks} legacy network(s), {conforming} conforming");
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{load_str, validate};

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_set_arithmetic() {
        assert_eq!(subtract(&[n("10.0.0.0/24")], &[n("10.0.0.0/25")]), [n("10.0.0.128/25")]);
        assert_eq!(
            subtract(&[n("10.0.0.0/24")], &[n("10.0.0.64/26")]),
            [n("10.0.0.0/26"), n("10.0.0.128/25")]
        );
        assert_eq!(subtract(&[n("10.0.0.0/24")], &[n("10.0.0.0/8")]), []);
        assert_eq!(
            intersect(&[n("10.0.0.0/16")], &[n("10.0.5.0/24"), n("192.0.2.0/24")]),
            [n("10.0.5.0/24")]
        );
        assert_eq!(size(&subtract(&[n("10.0.0.0/16")], &[n("10.0.1.0/24")])), 65536 - 256);
    }

    #[test]
    fn buddy_allocation_is_lowest_first_and_splits() {
        let mut free = vec![n("198.18.0.0/22")];
        assert_eq!(allocate(&mut free, 24), Some(n("198.18.0.0/24")));
        assert_eq!(allocate(&mut free, 23), Some(n("198.18.2.0/23")));
        assert_eq!(allocate(&mut free, 25), Some(n("198.18.1.0/25")));
        assert_eq!(allocate(&mut free, 23), None);
    }

    #[test]
    fn the_example_report_and_proposal() {
        let text = include_str!("../../configs/examples/conversions.yaml");
        let lp = load_str(text, Path::new("c.yaml")).unwrap();
        validate(&lp).unwrap();
        let r = report(&lp, false);
        assert!(r.contains("tax-office (node 430102 Furong District): not conforming: 65536 of 65536 addresses outside the plan"), "{r}");
        assert!(r.contains("converted: netmap 256 addresses (10.0.1.0/24); isolated 256 (10.0.200.0/24); NAPT 65024 addresses onto 198.18.40.0/28"), "{r}");
        assert!(r.contains("2 legacy network(s), 0 conforming"), "{r}");
        // Without NAPT, the proposal netmaps the rest onto free blocks, avoiding what is used.
        let small = text
            .replace("prefixes: [10.0.0.0/20]", "prefixes: [10.0.0.0/24]")
            .replace("address: 10.0.0.1/20", "address: 10.0.0.1/24")
            .replace(
            "        napt:\n          pool: [198.18.40.32/28]\n          block_size: 64\n          deterministic: true\n",
            "",
        );
        let lp = load_str(&small, Path::new("c.yaml")).unwrap();
        validate(&lp).unwrap();
        let r = report(&lp, true);
        assert!(r.contains("clinic (node 430102 Furong District): not conforming: 256 of 256"), "{r}");
        assert!(r.contains("unconverted 256 addresses: they cannot reach the extranet"), "{r}");
        // 198.18.40.0/24 holds the pool and the portal; 198.18.41.0/24 is a netmap target.
        assert!(r.contains("      - { from: 10.0.0.0/24, to: 198.18.42.0/24 }"), "{r}");
    }
}
