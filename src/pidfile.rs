//! The gateway's PID file, locked (flock) for as long as the process runs. The lock, not the
//! file's existence, says a gateway is running: a file left by a killed process is not locked and
//! is simply taken over, while a second `hutong gateway run` for a running gateway is refused
//! before it touches an interface. The lock dies with the process, so there is nothing to clean
//! up after a crash.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

/// The default PID file of a gateway.
pub fn default_path(gateway: &str) -> PathBuf {
    Path::new("/run/hutong").join(format!("{gateway}.pid"))
}

/// A claimed PID file; dropping it removes the file.
pub struct PidFile {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PidFile {
    /// Locks `path` and writes this process's id into it, or says who holds it.
    pub fn claim(path: &Path) -> Result<PidFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Root's alone, and never through a symlink planted at its name.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::files::PRIVATE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("opening the PID file {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                bail!(
                    "this gateway is already running (pid {}, holding {}); stop it first",
                    pid.trim(),
                    path.display()
                );
            }
            Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        };
        // A file left from before may have had another mode.
        lock.set_permissions(std::fs::Permissions::from_mode(crate::files::PRIVATE))?;
        lock.set_len(0)?;
        lock.rewind()?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(PidFile { path: path.to_path_buf(), _lock: lock })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so no second gateway can have claimed it in between.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_pid_file_is_refused_and_a_stale_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("gw.pid");
        let held = PidFile::claim(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // flock locks belong to the open file description: a second open is a second claimant.
        let err = PidFile::claim(&path).err().unwrap().to_string();
        assert!(err.contains("already running") && err.contains(text.trim()), "{err}");
        drop(held);
        assert!(!path.exists(), "the file goes with its owner");
        // A stale file (its process killed): unlocked, so it is taken over.
        std::fs::write(&path, "999999\n").unwrap();
        let again = PidFile::claim(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        drop(again);
    }

    #[test]
    fn the_pid_file_is_private_and_never_reached_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.pid");
        std::fs::write(&path, "999999\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let held = PidFile::claim(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(held);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root's").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(PidFile::claim(&path).is_err(), "a planted symlink was followed");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's");
    }
}
