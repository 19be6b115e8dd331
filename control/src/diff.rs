//! `hutong plan diff OLD NEW`: per gateway, what an apply would change — translations, pools,
//! services, routes, ports and policy — in words, compared by name rather than by position (VRF
//! numbers may shift between versions; names do not).

use std::{collections::BTreeMap, fmt};

use hutong_config::{Action, Config, Rule};

use crate::{Diagnostics, LoadedPlan, compile::compile_all};

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Removed(String),
    Changed { what: String, old: String, new: String },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(s) => write!(f, "+ {s}"),
            Change::Removed(s) => write!(f, "- {s}"),
            Change::Changed { what, old, new } => write!(f, "~ {what}: {old} -> {new}"),
        }
    }
}

/// The changes of one gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayDiff {
    pub gateway: String,
    pub changes: Vec<Change>,
}

fn vrf_name(c: &Config, id: u32) -> String {
    c.vrfs.iter().find(|v| v.id == id).map_or_else(|| format!("vrf{id}"), |v| v.name.clone())
}

fn describe_rule(c: &Config, r: &Rule) -> String {
    let mut m = vec![format!("in {}", vrf_name(c, r.vrf))];
    if let Some(s) = r.src {
        m.push(format!("from {s}"));
    }
    if let Some(d) = r.dst {
        m.push(format!("to {d}"));
    }
    if let Some(p) = r.proto {
        m.push(format!("protocol {p}"));
    }
    for (what, range) in [("source ports", r.src_ports), ("ports", r.dst_ports)] {
        if let Some(pr) = range {
            m.push(format!("{what} {}-{}", pr.first, pr.last));
        }
    }
    let action = match &r.action {
        Action::Napt { pool } => format!("NAPT with pool {pool}"),
        Action::RouteVia { port, via } => {
            format!("route via {port}{}", via.map(|v| format!(" {v}")).unwrap_or_default())
        }
        a => format!("{a:?}").to_lowercase(),
    };
    format!("{}: {action}", m.join(" "))
}

/// Keyed descriptions of everything comparable in a config.
fn items(c: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in &c.ports {
        let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        let tunnel = p.tunnel.as_ref().map_or(String::new(), |t| {
            let key = t.key.map(|k| format!(" key {k}")).unwrap_or_default();
            format!(", GRE {} -> {} in {}{key}", t.local, t.remote, vrf_name(c, t.underlay_vrf))
        });
        out.insert(
            format!("port {}", p.key()),
            format!(
                "{} in {}, {} (MTU {}){tunnel}",
                p.role.name(),
                vrf_name(c, p.vrf),
                addrs.join(" "),
                p.mtu
            ),
        );
    }
    // VRFs by name: their ids are positions, which may shift between versions.
    for v in &c.vrfs {
        out.insert(format!("VRF {}", v.name), "declared".into());
    }
    for n in &c.netmaps {
        out.insert(
            format!("netmap {} {}", vrf_name(c, n.inside_vrf), n.inside),
            format!("onto {} in {}", n.outside, vrf_name(c, n.outside_vrf)),
        );
    }
    for n in &c.nptv6 {
        out.insert(
            format!("NPTv6 {} {}", vrf_name(c, n.inside_vrf), n.inside),
            format!("onto {} in {}", n.outside, vrf_name(c, n.outside_vrf)),
        );
    }
    for p in &c.nat_pools {
        let addrs: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        out.insert(
            format!("NAT pool {}", p.name),
            format!(
                "{} in {} for {}, {:?}, ports {}-{}, blocks of {} (at most {} a host), {:?}, at most {} \
                 sessions, timeouts {:?}",
                addrs.join(" "),
                vrf_name(c, p.outside_vrf),
                vrf_name(c, p.inside_vrf),
                p.mode,
                p.ports.first,
                p.ports.last,
                p.block_size,
                p.max_blocks_per_host,
                p.filtering,
                p.max_sessions,
                p.timeouts
            ),
        );
    }
    for s in &c.services {
        out.insert(
            format!("service {}", s.name),
            format!(
                "{}:{} (protocol {}) published at {}:{}",
                s.inside, s.inside_port, s.proto, s.outside, s.outside_port
            ),
        );
    }
    for r in &c.routes {
        let via = r.via.map(|v| format!(" via {v}")).unwrap_or_default();
        out.insert(format!("route {} {}{via}", vrf_name(c, r.vrf), r.prefix), format!("out of {}", r.port));
    }
    for r in &c.policies {
        out.insert(format!("rule {}", r.name), describe_rule(c, r));
    }
    out
}

/// The changes from `old` to `new` for one gateway.
pub fn diff_configs(old: &Config, new: &Config) -> Vec<Change> {
    let (a, b) = (items(old), items(new));
    let mut changes = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => changes.push(Change::Removed(format!("{k} ({v})"))),
            Some(w) if w != v => {
                changes.push(Change::Changed { what: k.clone(), old: v.clone(), new: w.clone() })
            }
            _ => {}
        }
    }
    for (k, v) in &b {
        if !a.contains_key(k) {
            changes.push(Change::Added(format!("{k} ({v})")));
        }
    }
    // Rule order decides: report rules that kept their name but moved among their VRF's rules.
    let order = |c: &Config| -> BTreeMap<String, (String, usize)> {
        let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
        c.policies
            .iter()
            .map(|r| {
                let n = seen.entry(r.vrf).or_default();
                *n += 1;
                (r.name.clone(), (vrf_name(c, r.vrf), *n))
            })
            .collect()
    };
    let (oa, ob) = (order(old), order(new));
    for (name, (vrf, pos)) in &oa {
        if let Some((vrf2, pos2)) = ob.get(name) {
            if vrf == vrf2 && pos != pos2 {
                changes.push(Change::Changed {
                    what: format!("rule {name} position in {vrf}"),
                    old: pos.to_string(),
                    new: pos2.to_string(),
                });
            }
        }
    }
    if old.gateway != new.gateway {
        changes.push(Change::Changed {
            what: "gateway".into(),
            old: old.gateway.clone(),
            new: new.gateway.clone(),
        });
    }
    changes
}

/// Per gateway of either plan, what changes; gateways without changes are left out. Each plan
/// is compiled once, whole (compiling gateway by gateway looked each one up in the tree: a
/// national plan's diff with itself took 25 s).
pub fn diff(old: &LoadedPlan, new: &LoadedPlan) -> Result<Vec<GatewayDiff>, Diagnostics> {
    let (a, b) = (compile_all(old)?, compile_all(new)?);
    let ids: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for id in ids {
        let changes = match (a.get(id), b.get(id)) {
            (Some(a), Some(b)) => diff_configs(a, b),
            (None, Some(_)) => vec![Change::Added(format!("gateway {id}"))],
            (Some(_), None) => vec![Change::Removed(format!("gateway {id}"))],
            (None, None) => vec![],
        };
        if !changes.is_empty() {
            out.push(GatewayDiff { gateway: id.clone(), changes });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{load_str, validate};

    const DEMO: &str = include_str!("../../configs/demo/plan.yaml");

    fn plan(text: &str) -> LoadedPlan {
        let lp = load_str(text, Path::new("p.yaml")).unwrap();
        validate(&lp).unwrap();
        lp
    }

    #[test]
    fn every_field_of_a_config_is_compared_and_vrf_ids_are_not() {
        let old = crate::compile(&plan(DEMO), "gw-changsha").unwrap();
        assert_eq!(diff_configs(&old, &old), vec![]);
        let mut new = old.clone();
        new.vrfs.push(hutong_config::Vrf { id: 9, name: "spare".into() });
        let d: Vec<String> = diff_configs(&old, &new).iter().map(|c| c.to_string()).collect();
        assert_eq!(d, ["+ VRF spare (declared)"]);
        // Renumbered VRFs, the same names: no change.
        let mut renumbered = old.clone();
        renumbered.vrfs.iter_mut().for_each(|v| v.id += 100);
        renumbered.ports.iter_mut().for_each(|p| p.vrf += 100);
        renumbered
            .netmaps
            .iter_mut()
            .for_each(|n| (n.inside_vrf, n.outside_vrf) = (n.inside_vrf + 100, n.outside_vrf + 100));
        renumbered.routes.iter_mut().for_each(|r| r.vrf += 100);
        renumbered.policies.iter_mut().for_each(|r| r.vrf += 100);
        assert_eq!(diff_configs(&old, &renumbered), vec![], "VRF ids are positions");
        // A pool's session limit, beside another change: both listed.
        let mut pooled = old.clone();
        let (inside, outside) = (pooled.vrfs[1].id, pooled.vrfs[0].id);
        let addresses = vec!["198.18.99.0/30".parse().unwrap()];
        pooled.nat_pools.push(hutong_config::NatPool::defaults("p".into(), inside, outside, addresses));
        let mut limited = pooled.clone();
        limited.nat_pools[0].max_sessions /= 2;
        limited.routes.clear();
        let d: Vec<String> = diff_configs(&pooled, &limited).iter().map(|c| c.to_string()).collect();
        assert!(d.iter().any(|l| l.starts_with("~ NAT pool p:") && l.contains("sessions")), "{d:#?}");
        assert!(d.iter().any(|l| l.starts_with("- route")), "{d:#?}");
    }

    #[test]
    fn identical_plans_have_no_differences() {
        assert_eq!(diff(&plan(DEMO), &plan(DEMO)).unwrap(), vec![]);
    }

    #[test]
    fn changes_are_named_in_words() {
        let new = DEMO
            .replace("to: 198.18.20.0/24", "to: 198.18.21.0/24")
            .replace("via: 198.19.0.2", "via: 198.19.0.3");
        let d = diff(&plan(DEMO), &plan(&new)).unwrap();
        assert_eq!(d.len(), 1);
        let text: Vec<String> = d[0].changes.iter().map(|c| c.to_string()).collect();
        assert!(text.contains(&"~ netmap city-hall 10.20.0.0/24: onto 198.18.20.0/24 in extranet -> onto 198.18.21.0/24 in extranet".to_string()), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("- route extranet 0.0.0.0/0 via 198.19.0.2")), "{text:#?}");
        assert!(text.iter().any(|t| t.starts_with("+ route extranet 0.0.0.0/0 via 198.19.0.3")), "{text:#?}");
        assert!(
            text.iter().any(|t| t.starts_with("~ rule city-hall:netmap0:in: in extranet to 198.18.20.0/24")),
            "{text:#?}"
        );
    }

    #[test]
    fn gateways_coming_and_going_are_named() {
        let new = DEMO.replace("id: gw-changsha", "id: gw-changsha-2");
        let d = diff(&plan(DEMO), &plan(&new)).unwrap();
        let text: Vec<String> =
            d.iter().flat_map(|g| g.changes.iter().map(move |c| format!("{}: {c}", g.gateway))).collect();
        assert_eq!(text, ["gw-changsha: - gateway gw-changsha", "gw-changsha-2: + gateway gw-changsha-2"]);
    }
}
