//! The gateway's counters, gathered every 200 ms for the API, the metrics and `--stats-file`.

use anyhow::Result;
use dataplane::{Config, xdp::XdpEngine};
use hutong_common::PortCounters;

use crate::{api::Snapshot, rule_hits::RuleHits};

/// The gateway's counters now: the program's, the slow path's, the flows, and per-rule hits of
/// both engines together (each packet is counted by the engine that decided it), by rule name,
/// rules of earlier configs included.
pub(super) fn snapshot(
    config: &Config,
    hits: &RuleHits,
    slot_names: &[String],
    engine: &XdpEngine,
    slow: &crate::slow_path::SlowPath,
) -> Result<Snapshot> {
    let published = slow.published();
    let mut rules = hits.by_name(&engine.rule_hits(config.policies.len())?);
    for (name, n) in &published.rule_hits {
        *rules.entry(name.clone()).or_default() += n;
    }
    let mut ports: Vec<(String, &'static str, PortCounters)> = slot_names
        .iter()
        .cloned()
        .zip(engine.port_counters(slot_names.len())?)
        .map(|(n, c)| (n, "xdp", c))
        .collect();
    ports.extend(published.ports.into_iter().map(|(n, c)| (n, "slow_path", c)));
    Ok(Snapshot {
        xdp: engine.counters()?,
        slow: published.counters,
        flows: published.flows,
        rules: rules.into_iter().collect(),
        ports,
        pools: published.pools,
        host: published.host,
        workers: published.workers,
        api_refused: Vec::new(),
    })
}

/// The counters file: the program's counters as `name value` lines, then the slow-path engine's
/// as `slow.name value` (what it dropped and why, the ICMP errors it sent), the flows it handed
/// to the program as `flows.active|installed|removed|full value`, and each policy rule's hits as
/// `rule.<name> value`. Readers of the program's counters (`Counters::from_text`) skip the
/// prefixed lines.
pub(super) fn stats_text(s: &Snapshot) -> String {
    let mut text = s.xdp.to_text();
    for line in s.slow.to_text().lines() {
        text.push_str("slow.");
        text.push_str(line);
        text.push('\n');
    }
    let f = &s.flows;
    for (name, v) in
        [("active", f.active), ("installed", f.installed), ("removed", f.removed), ("full", f.full)]
    {
        text.push_str(&format!("flows.{name} {v}\n"));
    }
    for (name, v) in &s.rules {
        text.push_str(&format!("rule.{name} {v}\n"));
    }
    text
}
