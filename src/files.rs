//! Writing the gateway's files so that no other local user can read them or bend them.
//!
//! A file is written to a new temporary file beside its name (created exclusively, so a symlink
//! planted at the temporary name is never followed) with its mode set explicitly (whatever the
//! umask), then renamed over its name: a reader sees the old file or the new one, never half of
//! one, and a symlink planted at the name itself is replaced, not followed.

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// Configs, history, counters, the PID file: root's alone.
pub const PRIVATE: u32 = 0o600;
/// The state directory.
pub const PRIVATE_DIR: u32 = 0o700;
/// What `plan compile -o` writes for operators to read.
pub const PUBLIC: u32 = 0o644;

/// Writes `text` to `path` as described above, with `mode`.
pub fn write_replacing(path: &Path, text: &str, mode: u32) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new().prefix(".hutong-").tempfile_in(parent(path))?;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
        tmp.write_all(text.as_bytes())?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Creates `dir` (and what leads to it) if need be, and makes it root's alone.
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))
        .with_context(|| format!("making {} private", dir.display()))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_file_is_written_with_its_mode_replacing_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root's").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("current");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_replacing(&path, "7\n", PRIVATE).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's", "the symlink was followed");
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_file());
        assert_eq!((std::fs::read_to_string(&path).unwrap().as_str(), mode(&path)), ("7\n", 0o600));
        write_replacing(&path, "8\n", PUBLIC).unwrap();
        assert_eq!(mode(&path), 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "a temporary file was left behind: {names:?}");
    }

    #[test]
    fn the_state_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&state).unwrap();
        assert_eq!(mode(&state), 0o700, "an existing directory is made private too");
    }
}
