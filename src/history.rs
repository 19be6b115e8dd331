//! The gateway's applied configs, kept on disk so rollback works across a restart.
//!
//! Versions are immutable files `config-NNNNNN.json` in the state directory, numbered from 1;
//! the file `current` names the version running. Applying a config writes the next number;
//! rolling back makes the version before the current one current again (and a second rollback
//! goes one further back). Every file is written to a temporary name and renamed, so a crash
//! leaves either the old state or the new one; the directory is 0700 and its files 0600
//! ([`crate::files`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dataplane::Config;

pub struct History {
    dir: PathBuf,
}

/// How many versions are kept on disk: the newest, so a rollback can walk back this far less
/// one. Older ones are removed as new ones are recorded (the current one never is).
pub const KEEP: usize = 64;

/// The default state directory of a gateway.
pub fn default_dir(gateway: &str) -> PathBuf {
    Path::new("/var/lib/hutong").join(gateway)
}

impl History {
    pub fn open(dir: &Path) -> Result<History> {
        crate::files::private_dir(dir).context("the state directory")?;
        // Staged versions whose apply never finished (a crash in between): they never ran.
        for e in std::fs::read_dir(dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with("staged-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(History { dir: dir.to_path_buf() })
    }

    fn path(&self, version: u64) -> PathBuf {
        self.dir.join(format!("config-{version:06}.json"))
    }

    /// Every version on disk, ascending.
    pub fn versions(&self) -> Result<Vec<u64>> {
        let mut v: Vec<u64> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_prefix("config-")?.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The version running, if any was recorded.
    pub fn current(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("current")).ok()?.trim().parse().ok()
    }

    pub fn load(&self, version: u64) -> Result<Config> {
        let path = self.path(version);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Config::from_json(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a valid config: {e:?}", path.display()))
    }

    /// The version `config` would be recorded as, written nowhere: the current version if it is
    /// the same config, else the next number. A start asks this first and records only once it
    /// has succeeded, so a failed start leaves the history as it was.
    pub fn version_for(&self, config: &Config) -> Result<u64> {
        if let Some(cur) = self.current() {
            if self.load(cur).is_ok_and(|c| c == *config) {
                return Ok(cur);
            }
        }
        Ok(self.versions()?.last().copied().unwrap_or(0) + 1)
    }

    /// Records `config` as running: the current version if it is the same config, else a new one.
    pub fn record(&mut self, config: &Config) -> Result<u64> {
        let version = self.stage(config)?;
        self.commit(version)?;
        Ok(version)
    }

    /// Writes `config` as the version it would be recorded as ([`History::version_for`]) without
    /// making it current: an apply stages first, so a state directory that cannot be written
    /// refuses the apply before anything changes.
    pub fn stage(&mut self, config: &Config) -> Result<u64> {
        let version = self.version_for(config)?;
        if Some(version) != self.current() {
            // Under a name `versions` does not list, until it has run: a crash in between
            // leaves no version that never ran for a rollback to find.
            write_atomically(&self.staged(version), &config.to_json())?;
        }
        Ok(version)
    }

    fn staged(&self, version: u64) -> PathBuf {
        self.dir.join(format!("staged-{version:06}.json"))
    }

    /// Makes a staged `version` current, then prunes. Pruning is housekeeping: if it fails the
    /// version is current all the same, and the next commit tries again.
    pub fn commit(&mut self, version: u64) -> Result<()> {
        if Some(version) != self.current() {
            let staged = self.staged(version);
            if staged.exists() {
                std::fs::rename(&staged, self.path(version))
                    .with_context(|| format!("making {} a version", staged.display()))?;
            }
            self.set_current(version)?;
        }
        if let Err(e) = self.prune() {
            log::warn!("pruning the config history: {e:#}");
        }
        Ok(())
    }

    /// Removes a staged `version` that was never made current (its apply failed).
    pub fn discard(&mut self, version: u64) {
        let _ = std::fs::remove_file(self.staged(version));
        if Some(version) != self.current() {
            let _ = std::fs::remove_file(self.path(version));
        }
    }

    /// The version the `--config` file was recorded as when the gateway last started from it.
    pub fn seed(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("seed")).ok()?.trim().parse().ok()
    }

    pub fn set_seed(&mut self, version: u64) -> Result<()> {
        write_atomically(&self.dir.join("seed"), &format!("{version}\n"))
    }

    /// What a start runs, given its `--config` file: the last version applied through the API if
    /// the file is the one the gateway last started from (unchanged since), else the file. So a
    /// restart keeps what operators applied, and an engineer who edits the file gets the file.
    /// Returns the config, its version and, when it is not the file, why.
    pub fn resume(&self, file: Config) -> Result<(Config, u64, Option<String>)> {
        let unchanged = |seed: u64| self.load(seed).is_ok_and(|c| c == file);
        if let (Some(current), Some(seed)) = (self.current(), self.seed())
            && current != seed
            && unchanged(seed)
        {
            match self.load(current) {
                // Ports cannot change through the API, so they match unless the files were edited.
                Ok(c) if c.ports == file.ports && c.gateway == file.gateway => {
                    let why = format!(
                        "the config file is unchanged since version {seed} was started from it: running version {current}, the last one applied"
                    );
                    return Ok((c, current, Some(why)));
                }
                Ok(_) => {
                    log::warn!("version {current} has other ports than the config file: running the file")
                }
                Err(e) => log::warn!("version {current} cannot be read ({e:#}): running the config file"),
            }
        }
        let version = self.version_for(&file)?;
        Ok((file, version, None))
    }

    /// Removes the oldest versions beyond [`KEEP`], never the current one.
    fn prune(&self) -> Result<()> {
        let versions = self.versions()?;
        let (current, seed) = (self.current(), self.seed());
        // The seed too: a restart compares the config file with it (see `resume`).
        for v in versions.iter().rev().skip(KEEP).filter(|v| Some(**v) != current && Some(**v) != seed) {
            let path = self.path(*v);
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }

    /// The version before the current one, and its config: what a rollback applies.
    pub fn previous(&self) -> Result<Option<(u64, Config)>> {
        let Some(cur) = self.current() else { return Ok(None) };
        match self.versions()?.into_iter().filter(|v| *v < cur).max() {
            Some(v) => Ok(Some((v, self.load(v)?))),
            None => Ok(None),
        }
    }

    /// Makes `version` the current one (after it was applied).
    pub fn set_current(&mut self, version: u64) -> Result<()> {
        write_atomically(&self.dir.join("current"), &format!("{version}\n"))
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    crate::files::write_replacing(path, text, crate::files::PRIVATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(deny: bool) -> Config {
        let lp = control::load_str(crate::demo::DEMO_PLAN, Path::new("plan.yaml")).unwrap();
        let mut c = control::compile(&lp, crate::demo::DEMO_GATEWAY).unwrap();
        if deny {
            c.policies[0].action = dataplane::Action::Deny;
        }
        c
    }

    #[test]
    fn versions_are_kept_and_rollback_walks_back_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        assert_eq!(h.previous().unwrap().map(|p| p.0), None);
        assert_eq!(h.record(&config(false)).unwrap(), 1);
        assert_eq!(h.record(&config(false)).unwrap(), 1, "the same config is the same version");
        assert_eq!(h.record(&config(true)).unwrap(), 2);
        // A restart: a new History over the same directory.
        let mut h = History::open(dir.path()).unwrap();
        assert_eq!(h.current(), Some(2));
        let (v, c) = h.previous().unwrap().unwrap();
        assert_eq!((v, c), (1, config(false)));
        h.set_current(v).unwrap();
        assert_eq!(h.previous().unwrap().map(|p| p.0), None, "nothing before version 1");
        // Applying after a rollback makes a new version; the history is never rewritten.
        assert_eq!(h.record(&config(true)).unwrap(), 3);
        assert_eq!(h.versions().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn asking_for_a_version_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        assert_eq!(h.record(&config(false)).unwrap(), 1);
        assert_eq!(h.version_for(&config(true)).unwrap(), 2);
        assert_eq!((h.current(), h.versions().unwrap()), (Some(1), vec![1]), "a failed start leaves this");
        assert_eq!(h.version_for(&config(false)).unwrap(), 1);
    }

    #[test]
    fn only_the_newest_versions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        let mut c = config(false);
        for i in 0..(KEEP + 10) {
            c.gateway = format!("gw{i}");
            h.record(&c).unwrap();
        }
        let versions = h.versions().unwrap();
        assert_eq!(versions.len(), KEEP);
        assert_eq!((versions[0], *versions.last().unwrap()), (11, (KEEP + 10) as u64));
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, KEEP + 1, "the versions and `current`, nothing else");
        // A rollback walks back through every kept version, and no further.
        let mut steps = 0;
        while let Some((v, _)) = h.previous().unwrap() {
            h.set_current(v).unwrap();
            steps += 1;
        }
        assert_eq!((steps, h.current()), (KEEP - 1, Some(11)));
    }

    #[test]
    fn a_restart_resumes_the_last_applied_version_unless_the_file_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        // First start, from the file.
        let (c, v, why) = h.resume(config(false)).unwrap();
        assert_eq!((c == config(false), v, why), (true, 1, None));
        h.record(&c).unwrap();
        h.set_seed(v).unwrap();
        // An apply through the API, then a restart with the same file: the apply runs.
        assert_eq!(h.record(&config(true)).unwrap(), 2);
        let (c, v, why) = h.resume(config(false)).unwrap();
        assert_eq!((c == config(true), v), (true, 2));
        assert!(why.unwrap().contains("running version 2"));
        // The file edited: it wins, as a new version.
        let mut edited = config(false);
        edited.policies[0].name = "edited".into();
        let (c, v, why) = h.resume(edited.clone()).unwrap();
        assert_eq!((c == edited, v, why), (true, 3, None));
    }

    #[test]
    fn a_staged_version_is_not_current_until_committed_and_can_be_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::open(dir.path()).unwrap();
        h.record(&config(false)).unwrap();
        let v = h.stage(&config(true)).unwrap();
        assert_eq!(
            (v, h.current(), h.versions().unwrap()),
            (2, Some(1), vec![1]),
            "staged is no version yet"
        );
        h.discard(v);
        assert_eq!(h.versions().unwrap(), vec![1]);
        // A crash between stage and commit: the next open forgets it.
        h.stage(&config(true)).unwrap();
        let h2 = History::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "config-000001.json and current");
        drop(h2);
        let v = h.stage(&config(true)).unwrap();
        h.commit(v).unwrap();
        assert_eq!(h.current(), Some(2));
        h.discard(2);
        assert_eq!(h.versions().unwrap(), vec![1, 2], "the current version is never discarded");
    }
}
