//! `hutong gateway run` as a child process in a lab's gateway namespace: started with its config,
//! counters file, log and its own pin directory, ready once it publishes counters, and stopped
//! (SIGTERM, then SIGKILL) when dropped.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::Netns;

/// Where lab gateways pin their maps and links: one directory per lab, named after it, so labs
/// never share pins and stale ones are recognisable (see `netns::sweep_stale`).
pub const PIN_ROOT: &str = "/sys/fs/bpf/hutong";

pub struct GatewayProcess {
    child: Child,
    pub log: PathBuf,
    pub stats: PathBuf,
    pub pin_dir: PathBuf,
    /// Shared by every gateway process of one `work` directory: they are the same gateway.
    pub pid_file: PathBuf,
}

impl GatewayProcess {
    /// Starts `hutong gateway run` in `ns`. `work` holds the config file, and receives the log and
    /// counters; `tag` names the pin directory.
    pub fn start(
        ns: &Netns,
        hutong: &Path,
        config: &Path,
        work: &Path,
        tag: &str,
        extra: &[&str],
    ) -> Result<GatewayProcess> {
        GatewayProcess::start_from(ns, hutong, &["--config".as_ref(), config.as_os_str()], work, tag, extra)
    }

    /// Starts a fleet gateway (`--fleet URLS --gateway ID`): its config comes from etcd, or
    /// from its state directory in `work` when it ran before.
    pub fn start_fleet(
        ns: &Netns,
        hutong: &Path,
        (urls, id): (&str, &str),
        work: &Path,
        tag: &str,
        extra: &[&str],
    ) -> Result<GatewayProcess> {
        let source = ["--fleet".as_ref(), urls.as_ref(), "--gateway".as_ref(), id.as_ref()];
        GatewayProcess::start_from(ns, hutong, &source, work, tag, extra)
    }

    fn start_from(
        ns: &Netns,
        hutong: &Path,
        source: &[&std::ffi::OsStr],
        work: &Path,
        tag: &str,
        extra: &[&str],
    ) -> Result<GatewayProcess> {
        let log = work.join(format!("{tag}.log"));
        let stats = work.join(format!("{tag}.counters"));
        let _ = std::fs::remove_file(&stats);
        // `extra` may name its own (a test of what sharing them does).
        let given = |flag: &str| {
            extra.iter().position(|a| *a == flag).and_then(|i| extra.get(i + 1)).map(PathBuf::from)
        };
        let pin_dir = given("--pin-dir").unwrap_or_else(|| Path::new(PIN_ROOT).join(ns.name()));
        let pid_file = given("--pid-file").unwrap_or_else(|| work.join("gateway.pid"));
        let mut cmd = ns.command(hutong);
        // If the lab's owner is killed (SIGKILL skips its cleanup), the gateway must not live on
        // in a namespace nobody can reach; the next lab sweeps the namespace and pins.
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from));
        }
        cmd.args(["gateway", "run"]).args(source).arg("--stats-file").arg(&stats);
        let state_dir = work.join("state");
        for (flag, value) in [("--pin-dir", &pin_dir), ("--pid-file", &pid_file), ("--state-dir", &state_dir)]
        {
            if !extra.contains(&flag) {
                cmd.arg(flag).arg(value);
            }
        }
        let child = cmd
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", hutong.display()))?;
        Ok(GatewayProcess { child, log, stats, pin_dir, pid_file })
    }

    /// Waits until the gateway publishes counters: it is attached and forwarding.
    pub fn wait_ready(&mut self, interrupted: &dyn Fn() -> Result<()>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            interrupted()?;
            if let Some(status) = self.child.try_wait()? {
                bail!("the gateway exited ({status}) before it was ready:\n{}", self.log_text());
            }
            if self.stats.exists() {
                let pid = std::fs::read_to_string(&self.pid_file).unwrap_or_default();
                if pid.trim() != self.child.id().to_string() {
                    bail!("the gateway runs but its PID file {} says {pid:?}", self.pid_file.display());
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the gateway did not become ready in 20 s:\n{}", self.log_text())
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `sig` and waits up to 5 s for the process to exit.
    pub fn signal_and_wait(&mut self, sig: Signal) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        let _ = nix::sys::signal::kill(self.pid(), sig);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A full stop (SIGTERM), killing the process if it does not exit in time.
    pub fn stop(&mut self) {
        if self.signal_and_wait(Signal::SIGTERM).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
