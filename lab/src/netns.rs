//! Named network namespaces, compatible with `ip netns` (bind-mounted under /run/netns), so an
//! engineer can look inside a running lab with `ip netns exec`.

use std::{
    fs::File,
    io,
    os::{fd::AsFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
};

const NETNS_DIR: &str = "/run/netns";
/// Prefix of every namespace a lab creates: `ht<pid>x<n>-<role>`.
pub const PREFIX: &str = "ht";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A unique tag for one lab in this process: `ht<pid>x<n>`.
pub fn lab_tag() -> String {
    format!("{PREFIX}{}x{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed))
}

pub struct Netns {
    name: String,
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    pub fn create(name: &str) -> io::Result<Netns> {
        std::fs::create_dir_all(NETNS_DIR)?;
        let path = Path::new(NETNS_DIR).join(name);
        File::options().write(true).create_new(true).open(&path)?;
        let target = path.clone();
        // unshare() moves only the calling thread, so a scratch thread does it and pins the new
        // namespace by bind-mounting its nsfs file, as `ip netns add` does.
        let made = std::thread::spawn(move || -> nix::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?;
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(io::Error::other(format!("creating network namespace {name}: {e}")));
        }
        let file = File::open(&path)?;
        Ok(Netns { name: name.to_string(), path, file })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` on a thread that entered this namespace (sockets it opens stay in it).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io::Error::other(format!("entering {}: {e}", self.name)))?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?
        })
    }

    /// A route-netlink handle whose socket lives in this namespace, driven by the current runtime.
    pub fn netlink(&self) -> io::Result<rtnetlink::Handle> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = self.run(move || {
            let _guard = rt.enter();
            rtnetlink::new_connection()
        })??;
        tokio::spawn(conn);
        Ok(handle)
    }

    /// A command that will run inside this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(&self.file, program)
    }
}

/// A command that runs in the network namespace `file` refers to (a `Netns`'s file, or a
/// duplicate of it held by something that outlives the borrow).
pub fn command_in(file: &File, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    let fd = file.try_clone().expect("dup of the namespace fd");
    // SAFETY: between fork and exec the child only calls setns(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
    }
    cmd
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Detach rather than fail if something still has it open; the kernel frees the namespace
        // (and the veths in it) when the last reference goes.
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes namespaces, and their gateways' bpffs pins, left by labs whose process died without
/// cleaning up (SIGKILL, power loss).
pub fn sweep_stale() -> usize {
    let mut removed = 0;
    for dir in [NETNS_DIR, super::gateway::PIN_ROOT] {
        removed += sweep_dir(Path::new(dir));
    }
    removed
}

fn sweep_dir(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) =
            name.strip_prefix(PREFIX).and_then(|r| r.split('x').next()).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            // A pin directory: pinned maps and links are files, the layout stamp a directory.
            if std::fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
            continue;
        }
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        if std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether `pid` runs; a zombie (killed, not yet reaped) counts as dead.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_processes() {
        assert!(process_alive(std::process::id()));
        // Above the kernel's pid_max limit (4M), so it can never exist.
        assert!(!process_alive(u32::MAX - 1));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Exited but not reaped yet: a zombie, which must count as dead.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!process_alive(child.id()));
        child.wait().unwrap();
    }
}
