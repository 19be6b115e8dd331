//! Helpers shared by the system tests.
// Each test crate compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod fleet;

/// Kernel-level tests need root (XDP, network namespaces). Without it they fail loudly rather than
/// pass quietly: `make test` runs them as root, and CI is root.
pub fn require_root(test: &str) {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "{test} needs root (it loads XDP programs and creates network namespaces); run `sudo make test`"
        );
    }
}

/// The demo plan compiled for its gateway, exactly as `hutong plan compile` does.
pub fn demo_config() -> dataplane::Config {
    let lp = control::load_str(hutong::demo::DEMO_PLAN, std::path::Path::new("configs/demo/plan.yaml"))
        .expect("demo plan parses");
    control::validate(&lp).expect("demo plan is valid");
    control::compile(&lp, hutong::demo::DEMO_GATEWAY).expect("demo plan compiles")
}

/// The demo site in namespaces for one config, with a work directory holding that config: what
/// every end-to-end test starts from. Fields drop in order: the lab (namespaces) before the
/// runtime that built it, the work directory last.
pub struct Site {
    pub lab: hutong::lab::DemoLab,
    pub rt: tokio::runtime::Runtime,
    pub work: tempfile::TempDir,
    pub config_path: std::path::PathBuf,
}

impl Site {
    pub fn build(config: &dataplane::Config) -> Site {
        Site::build_with_queues(config, 1)
    }

    /// The same with `queues` queues on every veth.
    pub fn build_with_queues(config: &dataplane::Config, queues: u32) -> Site {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let lab = rt.block_on(hutong::lab::DemoLab::build_with_queues(config, queues)).unwrap();
        let work = tempfile::tempdir().unwrap();
        let config_path = work.path().join("gateway.json");
        std::fs::write(&config_path, config.to_json()).unwrap();
        Site { lab, rt, work, config_path }
    }

    /// Starts `hutong gateway run` on the site's config; `tag` names its log and counters.
    pub fn start_gateway(&self, tag: &str) -> hutong::lab::gateway::GatewayProcess {
        self.start_gateway_with(tag, &[])
    }

    /// The same, with more arguments (`--engine userspace`).
    pub fn start_gateway_with(&self, tag: &str, extra: &[&str]) -> hutong::lab::gateway::GatewayProcess {
        let hutong = std::path::Path::new(env!("CARGO_BIN_EXE_hutong"));
        hutong::lab::gateway::GatewayProcess::start(
            &self.lab.gateway,
            hutong,
            &self.config_path,
            self.work.path(),
            tag,
            extra,
        )
        .unwrap()
    }
}

/// Pings from `site`'s legacy host to its server, 50 ms apart; how many came back.
pub fn pings(site: &Site, count: u32) -> u32 {
    let out = site
        .lab
        .legacy
        .command("ping")
        .args(["-n", "-q", "-c", &count.to_string(), "-i", "0.05", "-W", "1"])
        .arg(site.lab.addrs.server.addr().to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(", ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A namespace holding one veth pair, `legacy0` and `uplink0` (the demo config's interface
/// names), for tests that run the XDP program on frames (BPF_PROG_TEST_RUN needs real ifindexes).
pub fn veth_pair(
    what: &str,
) -> (hutong::lab::Netns, dataplane::xdp::tables::PortHandle, dataplane::xdp::tables::PortHandle) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = hutong::lab::Netns::create(&format!("{}-{what}", hutong::lab::netns::lab_tag())).unwrap();
    let (legacy, uplink) = rt.block_on(async {
        let h = ns.netlink().unwrap();
        h.link().add(rtnetlink::LinkVeth::new("legacy0", "uplink0").build()).execute().await.unwrap();
        (
            dataplane::netlink::link(&h, "legacy0").await.unwrap(),
            dataplane::netlink::link(&h, "uplink0").await.unwrap(),
        )
    });
    (ns, legacy, uplink)
}

/// The demo site with NAPT of the legacy LAN onto `pool` (pool "city") instead of the netmap.
pub fn napt_config(pool: &str) -> dataplane::Config {
    let mut config = demo_config();
    config.netmaps.clear();
    config.nat_pools = vec![dataplane::config::NatPool {
        max_sessions: 10_000,
        ..dataplane::config::NatPool::defaults("city".into(), 1, 0, vec![pool.parse().unwrap()])
    }];
    config.policies = vec![dataplane::Rule {
        name: "city-hall-napt".into(),
        vrf: 1,
        src: Some("10.20.0.0/24".parse().unwrap()),
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: dataplane::Action::Napt { pool: "city".into() },
    }];
    config.validate().unwrap();
    config
}

/// `curl` from inside `ns`: the body, trimmed (empty if nothing came back in 3 s).
pub fn fetch(ns: &hutong::lab::Netns, url: &str) -> String {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "3", url])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A child process killed (and reaped) when dropped: a test that fails half-way must not leave
/// an iperf3 behind (an iperf3 client whose namespace is gone spins on a CPU).
pub struct Reaped(Option<std::process::Child>);

impl Reaped {
    /// Waits for it to end on its own, with its piped output.
    pub fn wait_with_output(mut self) -> std::io::Result<std::process::Output> {
        self.0.take().expect("not waited yet").wait_with_output()
    }

    pub fn wait(mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.take().expect("not waited yet").wait()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A one-shot iperf3 server on the demo's extranet server address.
pub fn iperf3_server(lab: &hutong::lab::DemoLab) -> Reaped {
    let child = lab
        .extranet
        .command("iperf3")
        .args(["-s", "-1", "-B", &lab.addrs.server.addr().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300)); // listening
    Reaped(Some(child))
}

/// An iperf3 client from the legacy host to that server for 2 s (`extra`: `-R` for the server
/// to send), JSON on its piped stdout.
pub fn iperf3_client(lab: &hutong::lab::DemoLab, extra: &[&str]) -> Reaped {
    let child = lab
        .legacy
        .command("iperf3")
        .args(["-c", &lab.addrs.server.addr().to_string(), "-t", "2", "-J"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    Reaped(Some(child))
}

/// Bytes the receiving side counted in an iperf3 JSON report (0 if there is none), and the report.
pub fn iperf3_received(out: &std::process::Output) -> (f64, serde_json::Value) {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (report["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0), report)
}

/// The gateway's metrics, scraped from inside `ns` (its agent API on 127.0.0.1:9180).
pub struct Metrics {
    pub text: String,
    pub scrape: prometheus_parse::Scrape,
}

impl Metrics {
    pub fn scrape(ns: &hutong::lab::Netns) -> Metrics {
        let out = ns.command("curl").args(["-s", "http://127.0.0.1:9180/metrics"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        Metrics { text, scrape }
    }

    /// The sum of the `name` samples carrying all of `labels`; `None` if there is none.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use prometheus_parse::Value::{Counter, Gauge, Untyped};
        let matching: Vec<f64> = self
            .scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Counter(v) | Gauge(v) | Untyped(v) => v,
                _ => f64::NAN,
            })
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

/// Runs `hutong bench` with `args` and `--out dir`, and asserts that it succeeded: its output
/// (printed, for the test's log) and its report.json.
pub fn hutong_bench(args: &[&str], dir: &std::path::Path) -> (String, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hutong"))
        .arg("bench")
        .args(args)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    (text, report)
}
