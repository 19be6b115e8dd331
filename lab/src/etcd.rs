//! A real etcd (Debian's `etcd-server`), one member or a cluster, on loopback ports of its own,
//! in a temporary directory, for the fleet's tests, bench and demo. Dropping it kills every
//! member and removes the directory, also when a test fails.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

pub struct Etcd {
    members: Vec<Member>,
    dir: tempfile::TempDir,
    token: String,
    /// The network namespace it runs in (a duplicate of the lab's handle); `None`: this one,
    /// on loopback.
    ns: Option<std::fs::File>,
    tls: Option<Tls>,
}

/// TLS for clients: etcd's certificate and key, the CA it trusts for client certificates
/// (client certificates required), and a client's certificate for its own checks. PEM files.
#[derive(Clone, Debug)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A free loopback port (bound, read, released: etcd binds it a moment later).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `etcd` and `etcdctl` are installed (`scripts/setup.sh` installs them).
pub fn installed() -> bool {
    [("etcd", "--version"), ("etcdctl", "version")].iter().all(|(b, arg)| {
        Command::new(b)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

impl Etcd {
    /// Starts `n` members (1 or 3, say) on loopback here and waits until the cluster answers.
    pub fn start(n: usize) -> Result<Etcd> {
        let ports = (0..n).map(|_| Ok((free_port()?, free_port()?))).collect::<Result<Vec<_>>>()?;
        Etcd::start_with(ports, None, None)
    }

    /// One member on loopback serving clients over TLS only, client certificates required.
    pub fn start_tls(tls: Tls) -> Result<Etcd> {
        Etcd::start_with(vec![(free_port()?, free_port()?)], None, Some(tls))
    }

    /// Starts `n` members in `ns`, clients served on every address of the namespace (ports
    /// 2379, 2381, ...: the namespace is the lab's own), and waits until the cluster answers.
    pub fn start_in(n: usize, ns: &crate::Netns) -> Result<Etcd> {
        let ports = (0..n as u16).map(|i| (2379 + 2 * i, 2380 + 2 * i)).collect();
        Etcd::start_with(ports, Some(ns.file().try_clone()?), None)
    }

    fn start_with(ports: Vec<(u16, u16)>, ns: Option<std::fs::File>, tls: Option<Tls>) -> Result<Etcd> {
        if !installed() {
            bail!(
                "etcd is not installed: run scripts/setup.sh (it installs Debian's etcd-server and etcd-client)"
            );
        }
        let dir = tempfile::Builder::new().prefix("hutong-etcd-").tempdir()?;
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| Member {
                name: format!("m{i}"),
                client: *client,
                peer: *peer,
                child: None,
            })
            .collect();
        let token = format!("hutong-{}-{}", std::process::id(), dir.path().display());
        let n = ports.len();
        let mut etcd = Etcd { members, dir, token, ns, tls };
        for i in 0..n {
            etcd.spawn(i)?;
        }
        etcd.wait_healthy(Duration::from_secs(30))?;
        Ok(etcd)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let cluster: Vec<String> =
            self.members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect();
        let m = &self.members[i];
        let scheme = self.scheme();
        let client = format!("{scheme}://127.0.0.1:{}", m.client);
        // In a lab's namespace, on every address of it (the gateways reach it over veths).
        let listen =
            if self.ns.is_some() { format!("{scheme}://0.0.0.0:{}", m.client) } else { client.clone() };
        let mut tls_args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(t) = &self.tls {
            for (flag, path) in
                [("--cert-file", &t.cert), ("--key-file", &t.key), ("--trusted-ca-file", &t.ca)]
            {
                tls_args.push(flag.into());
                tls_args.push(path.into());
            }
            tls_args.push("--client-cert-auth".into());
        }
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name)))?;
        let child = self
            .command("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &listen, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // A province's push is one transaction: a few hundred operations, some MiB.
            .args(["--max-txn-ops", "100000", "--max-request-bytes", "67108864"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(&tls_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// A command in etcd's namespace.
    pub fn command(&self, program: &str) -> Command {
        match &self.ns {
            Some(f) => crate::netns::command_in(f, program),
            None => Command::new(program),
        }
    }

    /// The client URLs of every member, comma-separated (as `--fleet` takes them), as seen
    /// from etcd's own namespace.
    pub fn urls(&self) -> String {
        self.urls_via(std::net::Ipv4Addr::LOCALHOST)
    }

    /// The same, through `addr` (an address of etcd's namespace another namespace reaches).
    pub fn urls_via(&self, addr: std::net::Ipv4Addr) -> String {
        let scheme = self.scheme();
        self.members.iter().map(|m| format!("{scheme}://{addr}:{}", m.client)).collect::<Vec<_>>().join(",")
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// etcdctl's TLS flags (its own client certificate).
    fn ctl_tls(&self) -> Vec<std::ffi::OsString> {
        let Some(t) = &self.tls else { return Vec::new() };
        let mut v: Vec<std::ffi::OsString> = Vec::new();
        for (flag, path) in [("--cacert", &t.ca), ("--cert", &t.client_cert), ("--key", &t.client_key)] {
            v.push(flag.into());
            v.push(path.into());
        }
        v
    }

    /// The process ids of the members running now (the fleet bench samples their CPU time and
    /// memory in `/proc`).
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.child.as_ref().map(Child::id)).collect()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kills member `i` (SIGKILL: a crash, not a goodbye).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    pub fn restart_all(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            self.restart(i)?;
        }
        self.wait_healthy(Duration::from_secs(30))
    }

    fn etcdctl(&self, args: &[&str]) -> Result<std::process::Output> {
        let out = self
            .command("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.urls(), "--dial-timeout", "2s", "--command-timeout", "3s"])
            .args(self.ctl_tls())
            .args(args)
            .output()
            .context("running etcdctl")?;
        Ok(out)
    }

    /// Waits until every running member is healthy.
    pub fn wait_healthy(&self, within: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let running: Vec<String> = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client))
                .collect();
            let out = self
                .command("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &running.join(","), "--dial-timeout", "1s", "--command-timeout", "2s"])
                .args(self.ctl_tls())
                .args(["endpoint", "health"])
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            if start.elapsed() > within {
                bail!(
                    "etcd did not become healthy within {within:?}: {}{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the member that leads now, if one does.
    pub fn leader(&self) -> Option<usize> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        for (i, st) in v.as_array()?.iter().enumerate() {
            let me = st["Status"]["header"]["member_id"].as_u64()?;
            if st["Status"]["leader"].as_u64() == Some(me) {
                let ep = st["Endpoint"].as_str()?;
                return self.members.iter().position(|m| ep.ends_with(&format!(":{}", m.client))).or(Some(i));
            }
        }
        None
    }

    /// Puts a raw value (tests writing what no hutong command would).
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        let out = self.etcdctl(&["put", key, value])?;
        anyhow::ensure!(out.status.success(), "etcdctl put: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// Member `i`'s whole log so far (the fleet bench keeps it with its results).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.members[i].name)))
            .unwrap_or_default()
    }

    /// Every member's log so far (for a failing test's message).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for m in &self.members {
            let text =
                std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            s.push_str(&format!("\n--- etcd {} ---\n", m.name));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}
