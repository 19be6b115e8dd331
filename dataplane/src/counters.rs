//! A snapshot of the program's counters, summed over CPUs, named by the shared enums.

use hutong_common::{Drop, Stat};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub stats: Vec<(&'static str, u64)>,
    pub drops: Vec<(&'static str, u64)>,
}

impl Counters {
    pub fn stat(&self, s: Stat) -> u64 {
        self.stats.iter().find(|(n, _)| *n == s.name()).map_or(0, |(_, v)| *v)
    }

    pub fn drop(&self, d: Drop) -> u64 {
        self.drops.iter().find(|(n, _)| *n == d.name()).map_or(0, |(_, v)| *v)
    }

    /// `name value` lines, the format `hutong gateway run` writes to its counters file.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (n, v) in &self.stats {
            out.push_str(&format!("{n} {v}\n"));
        }
        for (n, v) in &self.drops {
            out.push_str(&format!("drop_{n} {v}\n"));
        }
        out
    }

    /// Parses [`Counters::to_text`] output back; unknown lines are ignored.
    pub fn from_text(text: &str) -> Counters {
        let mut c = Counters::default();
        for line in text.lines() {
            let Some((name, value)) = line.split_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse() else {
                continue;
            };
            if let Some(d) = Drop::ALL.iter().find(|d| name.strip_prefix("drop_") == Some(d.name())) {
                c.drops.push((d.name(), value));
            } else if let Some(s) = Stat::ALL.iter().find(|s| s.name() == name) {
                c.stats.push((s.name(), value));
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let c =
            Counters { stats: vec![("received", 5), ("forwarded", 3)], drops: vec![("no_translation", 2)] };
        let back = Counters::from_text(&c.to_text());
        assert_eq!(back, c);
        assert_eq!(back.drop(Drop::NoTranslation), 2);
        assert_eq!(back.stat(Stat::Forwarded), 3);
        assert_eq!(back.drop(Drop::NoRoute), 0);
    }
}
