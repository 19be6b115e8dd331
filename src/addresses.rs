//! The addresses this gateway put on its ports, so that a full stop takes off exactly those: not
//! the ones that were there before it started (an engineer's, a lab's, a bench's), which the
//! kernel answers EEXIST for. The record is a file in the state directory, `addresses`, so it
//! survives keep-forwarding restarts and crashes: the next start finds the addresses there
//! (EEXIST again) and knows from the record that they are its own.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::Result;
use ipnet::IpNet;

/// (port name, address) pairs this gateway added.
pub struct Added {
    path: PathBuf,
    entries: BTreeSet<(String, IpNet)>,
}

impl Added {
    /// The record in `state_dir`; none yet (or unreadable, said once) is an empty one.
    pub fn load(state_dir: &Path) -> Added {
        let path = state_dir.join("addresses");
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                eprintln!(
                    "hutong gateway: {} is not a valid record ({e}); starting a new one",
                    path.display()
                );
                BTreeSet::new()
            }),
            Err(_) => BTreeSet::new(),
        };
        Added { path, entries }
    }

    /// Whether `addr` on `port` is this gateway's.
    pub fn contains(&self, port: &str, addr: IpNet) -> bool {
        self.entries.contains(&(port.to_string(), addr))
    }

    pub fn insert(&mut self, port: &str, addr: IpNet) {
        self.entries.insert((port.to_string(), addr));
    }

    /// Forgets the entries `keep` says no to, and returns them (to be taken off).
    pub fn retain(&mut self, keep: impl Fn(&str, IpNet) -> bool) -> Vec<(String, IpNet)> {
        let (kept, gone) = std::mem::take(&mut self.entries).into_iter().partition(|(p, a)| keep(p, *a));
        self.entries = kept;
        gone.into_iter().collect()
    }

    pub fn entries(&self) -> impl Iterator<Item = &(String, IpNet)> {
        self.entries.iter()
    }

    /// Writes the record (root's alone), or removes it when empty.
    pub fn save(&self) -> Result<()> {
        if self.entries.is_empty() {
            let _ = std::fs::remove_file(&self.path);
            return Ok(());
        }
        let text = serde_json::to_string_pretty(&self.entries)?;
        crate::files::write_replacing(&self.path, &text, crate::files::PRIVATE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_survives_a_restart_and_forgets_what_is_no_longer_configured() {
        let dir = tempfile::tempdir().unwrap();
        let a: IpNet = "10.20.0.1/16".parse().unwrap();
        let b: IpNet = "198.19.0.1/24".parse().unwrap();
        let mut added = Added::load(dir.path());
        added.insert("legacy0", a);
        added.insert("uplink0", b);
        added.save().unwrap();
        let mut again = Added::load(dir.path());
        assert!(
            again.contains("legacy0", a) && again.contains("uplink0", b) && !again.contains("uplink0", a)
        );
        assert_eq!(again.retain(|p, _| p == "legacy0"), vec![("uplink0".to_string(), b)]);
        again.retain(|_, _| false);
        again.save().unwrap();
        assert!(!dir.path().join("addresses").exists());
        std::fs::write(dir.path().join("addresses"), "not json").unwrap();
        assert_eq!(Added::load(dir.path()).entries().count(), 0);
    }
}
