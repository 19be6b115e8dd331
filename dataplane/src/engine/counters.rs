//! The userspace engine's counters: per statistic and drop reason (the shared enums), per port
//! and per policy rule. Port and rule counters are indexed on the packet path and keyed by name
//! across config swaps, so a swap neither loses nor misattributes counts.

use std::collections::BTreeMap;

use hutong_common::{Drop, Stat};

/// Counters indexed by position, remembered by name when the set of names changes.
#[derive(Clone, Debug, Default)]
pub struct Keyed {
    names: Vec<String>,
    pub values: Vec<u64>,
    retired: BTreeMap<String, u64>,
}

impl Keyed {
    /// Switches to a new set of names; counts of names that stay are carried over.
    pub fn rekey(&mut self, names: Vec<String>) {
        for (n, v) in self.names.drain(..).zip(self.values.drain(..)) {
            *self.retired.entry(n).or_default() += v;
        }
        self.values = names.iter().map(|n| self.retired.remove(n).unwrap_or(0)).collect();
        self.names = names;
    }

    #[inline]
    pub fn add(&mut self, i: usize, n: u64) {
        if let Some(v) = self.values.get_mut(i) {
            *v += n;
        }
    }

    /// Every name with its count, current and retired.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out = self.retired.clone();
        for (n, v) in self.names.iter().zip(&self.values) {
            *out.entry(n.clone()).or_default() += v;
        }
        out
    }

    pub fn get(&self, name: &str) -> u64 {
        self.snapshot().get(name).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, Default)]
pub struct EngineCounters {
    pub stats: [u64; Stat::COUNT as usize],
    pub drops: [u64; Drop::COUNT as usize],
    pub rule_hits: Keyed,
    pub port_rx_packets: Keyed,
    pub port_rx_bytes: Keyed,
    pub port_tx_packets: Keyed,
    pub port_tx_bytes: Keyed,
}

impl EngineCounters {
    pub fn stat(&self, s: Stat) -> u64 {
        self.stats[s as usize]
    }

    pub fn drop(&self, d: Drop) -> u64 {
        self.drops[d as usize]
    }

    /// The same snapshot shape the XDP engine reports.
    pub fn summary(&self) -> crate::Counters {
        crate::Counters {
            stats: Stat::ALL.iter().map(|s| (s.name(), self.stat(*s))).collect(),
            drops: Drop::ALL.iter().map(|d| (d.name(), self.drop(*d))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rekey_carries_counts_by_name() {
        let mut k = Keyed::default();
        k.rekey(vec!["a".into(), "b".into()]);
        k.add(0, 5);
        k.add(1, 2);
        k.rekey(vec!["b".into(), "c".into()]);
        k.add(0, 1);
        k.add(7, 1); // out of range: ignored, never a panic
        assert_eq!(k.get("a"), 5);
        assert_eq!(k.get("b"), 3);
        assert_eq!(k.get("c"), 0);
        k.rekey(vec!["a".into()]);
        k.add(0, 1);
        assert_eq!(k.get("a"), 6);
    }
}
