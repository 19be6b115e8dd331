//! Per-rule hit counters of the XDP program, kept by rule name across config changes.
//!
//! The program counts hits by a rule's position in the config. A new config moves rules around,
//! so at every apply the counts so far are credited to the old rules' names, and the counters'
//! values at that moment become the new baseline; a rule that stays (by name) keeps counting
//! on. (Packets the program counts between the read and the table flip are credited to the new
//! config's rule at that position: a handful at most.)

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct RuleHits {
    /// Names of the running config's rules, by position.
    names: Vec<String>,
    /// The program's counters when that config was applied.
    base: Vec<u64>,
    /// Counts credited to names so far (rules of earlier configs, and of this one before it).
    earlier: BTreeMap<String, u64>,
}

impl RuleHits {
    /// Counters for a config with these rule names, the program's counters reading `now`.
    pub fn new(names: Vec<String>, now: &[u64]) -> RuleHits {
        RuleHits { base: now.to_vec(), names, earlier: BTreeMap::new() }
    }

    /// A new config's rules take over; `now` is the program's counters read at the switch.
    pub fn switch(&mut self, names: Vec<String>, now: &[u64]) {
        for (i, name) in self.names.iter().enumerate() {
            *self.earlier.entry(name.clone()).or_default() += delta(now, &self.base, i);
        }
        self.names = names;
        self.base = now.to_vec();
    }

    /// Hits by name: every rule ever running, with the program's counters reading `now`.
    pub fn by_name(&self, now: &[u64]) -> BTreeMap<String, u64> {
        let mut out = self.earlier.clone();
        for (i, name) in self.names.iter().enumerate() {
            *out.entry(name.clone()).or_default() += delta(now, &self.base, i);
        }
        out
    }
}

fn delta(now: &[u64], base: &[u64], i: usize) -> u64 {
    now.get(i).copied().unwrap_or(0).saturating_sub(base.get(i).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_follow_names_across_a_config_change() {
        let mut h = RuleHits::new(names(&["out", "in"]), &[0, 0]);
        assert_eq!(h.by_name(&[5, 2]), BTreeMap::from([("out".into(), 5), ("in".into(), 2)]));
        // A deny rule goes first: "out" moves to position 1.
        h.switch(names(&["no-ping", "out", "in"]), &[5, 2, 0]);
        let now = [8, 2 + 4, 1];
        let got = h.by_name(&now);
        assert_eq!(got["no-ping"], 3);
        assert_eq!(got["out"], 5 + 4);
        assert_eq!(got["in"], 2 + 1);
        // Back again: "no-ping" keeps its history.
        h.switch(names(&["out", "in"]), &now);
        assert_eq!(h.by_name(&[9, 6, 1])["no-ping"], 3);
        assert_eq!(h.by_name(&[9, 6, 1])["out"], 9 + 1);
    }
}
