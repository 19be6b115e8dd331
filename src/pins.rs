//! Who a pin directory belongs to. The pinned maps and links are a gateway's forwarding state, and
//! a keep-forwarding restart adopts them, so a directory must never be adopted by another
//! gateway, another network namespace's gateway, or a second process of the same gateway:
//!
//! - A running gateway holds an exclusive `flock` on its pin directory (and on its state
//!   directory): a second process naming either is refused before it reads or writes anything.
//! - The directory carries an owner marker, `owner-<digest>` (bpffs holds only directories and
//!   BPF objects), digest of the gateway id and the network namespace it runs in. A start whose
//!   marker differs is refused while the directory holds any state. Links are pinned by
//!   interface name, and an interface of the same name in another namespace is another interface.

use std::{
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

const OWNER_PREFIX: &str = "owner-";

/// An exclusive lock on a directory, held while this lives.
pub struct DirLock(#[allow(dead_code)] Flock<File>);

/// Locks `dir` (which must exist) for this process, or says it is in use. `what` names it.
pub fn lock_dir(dir: &Path, what: &str) -> Result<DirLock> {
    let file = File::open(dir).with_context(|| format!("opening {what} {}", dir.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(DirLock(lock)),
        Err((_, Errno::EWOULDBLOCK)) => bail!(
            "{what} {} is in use by another running gateway; every gateway needs its own (stop that one, or choose another)",
            dir.display()
        ),
        Err((_, e)) => Err(e).with_context(|| format!("locking {what} {}", dir.display())),
    }
}

/// A claimed pin directory: locked, and marked as this gateway's in this namespace.
pub struct PinClaim {
    dir: PathBuf,
    marker: PathBuf,
    _lock: DirLock,
}

/// The marker of gateway `gateway` in the network namespace this process runs in.
fn marker_name(gateway: &str) -> Result<String> {
    let netns = std::fs::metadata("/proc/self/ns/net").context("reading this network namespace")?.ino();
    let digest = dataplane::xdp::fnv1a(format!("{gateway}\n{netns}").as_bytes());
    Ok(format!("{OWNER_PREFIX}{digest:016x}"))
}

/// Claims `dir` for gateway `gateway`, creating it if need be.
pub fn claim(dir: &Path, gateway: &str) -> Result<PinClaim> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {} (is bpffs mounted on /sys/fs/bpf?)", dir.display()))?;
    let lock = lock_dir(dir, "the pin directory")?;
    let ours = marker_name(gateway)?;
    let mut owners = Vec::new();
    let mut state = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match name.strip_prefix(OWNER_PREFIX) {
            Some(_) => owners.push(name),
            None => state.push(name),
        }
    }
    let foreign: Vec<&String> = owners.iter().filter(|o| **o != ours).collect();
    if !foreign.is_empty() && !state.is_empty() {
        bail!(
            "{} holds the forwarding state of another gateway, or of this one in another network namespace \
             ({}; this is gateway {gateway} here, {ours}). Choose another --pin-dir; if that gateway is gone \
             for good, remove the directory",
            dir.display(),
            foreign.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    // Foreign markers over no state are what a failed start left: nothing to protect.
    for o in foreign {
        let _ = std::fs::remove_dir(dir.join(o));
    }
    let marker = dir.join(&ours);
    if !marker.exists() {
        std::fs::create_dir(&marker).with_context(|| format!("marking {}", dir.display()))?;
    }
    Ok(PinClaim { dir: dir.to_path_buf(), marker, _lock: lock })
}

/// Released: when nothing but the marker is left (a full stop, or a failed start, removed the
/// pins), the marker and the directory go too; with state left (a keep-forwarding stop) the
/// marker stays, to say whose it is.
impl Drop for PinClaim {
    fn drop(&mut self) {
        let only_marker = std::fs::read_dir(&self.dir)
            .map(|d| d.flatten().all(|e| e.path() == self.marker))
            .unwrap_or(false);
        if only_marker {
            let _ = std::fs::remove_dir(&self.marker);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_one_gateways_and_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path().join("pins");
        let first = claim(&pins, "gw-a").unwrap();
        let e = claim(&pins, "gw-a").err().unwrap().to_string();
        assert!(e.contains("in use by another running gateway"), "{e}");
        // Some state, as a keep-forwarding stop leaves it: the marker stays with it.
        std::fs::create_dir(pins.join("layout-x")).unwrap();
        drop(first);
        let e = claim(&pins, "gw-b").err().unwrap().to_string();
        assert!(e.contains("another gateway"), "{e}");
        let again = claim(&pins, "gw-a").unwrap();
        // A full stop removes the state: the claim takes the marker and the directory along.
        std::fs::remove_dir(pins.join("layout-x")).unwrap();
        drop(again);
        assert!(!pins.exists(), "nothing but the marker was left: all gone");
        // A foreign marker over no state (a failed start of another gateway) is no reason to
        // refuse.
        std::fs::create_dir_all(pins.join("owner-0000000000000000")).unwrap();
        let c = claim(&pins, "gw-b").unwrap();
        let names: Vec<_> = std::fs::read_dir(&pins).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "only gw-b's marker: {names:?}");
        drop(c);
    }
}
