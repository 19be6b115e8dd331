//! `hutong demo`: the whole slice on one machine. It compiles the demo plan, builds a legacy
//! host, the gateway and an extranet server in network namespaces, runs `hutong gateway run` in
//! the gateway's namespace, sends real traffic (ping, HTTP) and shows what the server saw and what
//! the gateway counted. Everything is removed afterwards, also on failure or Ctrl-C.
//!
//! [`collect`] does the work and returns the evidence; the demo prints it and the system test
//! asserts on it, so both exercise exactly the same path.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{ExitCode, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use dataplane::{Config, Counters, Drop as DropReason, Stat};

use crate::{DemoAddresses, DemoLab, Netns, gateway::GatewayProcess, http::HttpServer};

/// The embedded demo plan, so `hutong demo` needs no files.
pub const DEMO_PLAN: &str = include_str!("../../configs/demo/plan.yaml");
pub const DEMO_GATEWAY: &str = "gw-changsha";
const HTTP_PORT: u16 = 80;
/// Packets in each ping run.
pub const PINGS: u32 = 5;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted; removing the lab");
    }
    Ok(())
}

#[derive(Clone, Debug, Default)]
pub struct Ping {
    pub sent: u32,
    pub received: u32,
}

/// What the demo observed.
#[derive(Debug)]
pub struct Evidence {
    pub addrs: DemoAddresses,
    pub ping: Ping,
    /// The server's answer to the legacy host's HTTP request, if it came.
    pub http_body: Option<String>,
    pub unmapped_ping: Ping,
    pub unmapped_http_ok: bool,
    /// Client addresses the server accepted connections from.
    pub server_saw: Vec<IpAddr>,
    /// Counters after the allowed traffic, and at the end.
    pub counters_allowed: Counters,
    pub counters: Counters,
}

/// Runs `ping` in `ns` and counts replies.
pub(crate) fn ping(ns: &Netns, dst: IpAddr, source: Option<IpAddr>) -> Result<Ping> {
    ping_n(ns, dst, source, PINGS)
}

/// The same with `count` pings (0.2 s apart, 1 s for each reply).
pub(crate) fn ping_n(ns: &Netns, dst: IpAddr, source: Option<IpAddr>, count: u32) -> Result<Ping> {
    let mut cmd = ns.command("ping");
    cmd.args(["-n", "-q", "-c", &count.to_string(), "-i", "0.2", "-W", "1"]);
    if let Some(s) = source {
        cmd.args(["-I", &s.to_string()]);
    }
    let out = cmd
        .arg(dst.to_string())
        .stdin(Stdio::null())
        .output()
        .context("running ping (install iputils-ping)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "5 packets transmitted, 5 received, 0% packet loss, time 804ms"
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("unexpected ping output: {text}"))?;
    let nums: Vec<u32> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    Ok(Ping { sent: nums.first().copied().unwrap_or(0), received: nums.get(1).copied().unwrap_or(0) })
}

/// Runs `curl` in `ns`; the body on success.
pub(crate) fn curl(ns: &Netns, url: &str, source: Option<IpAddr>, timeout_s: u32) -> Result<Option<String>> {
    let mut cmd = ns.command("curl");
    cmd.args(["-sS", "--max-time", &timeout_s.to_string()]);
    if let Some(s) = source {
        cmd.args(["--interface", &s.to_string()]);
    }
    let out = cmd.arg(url).stdin(Stdio::null()).output().context("running curl (install curl)")?;
    Ok(out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

fn read_counters(path: &Path) -> Counters {
    Counters::from_text(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Builds the lab for `config`, runs the gateway binary `hutong` in it, sends the traffic and
/// returns what was observed. Everything is removed before this returns, whatever happens.
pub async fn collect(config: &Config, hutong: &Path, progress: &dyn Fn(&str)) -> Result<Evidence> {
    progress("building namespaces and veths (legacy host, gateway, extranet server)");
    let lab = DemoLab::build(config).await?;
    let a = lab.addrs.clone();
    let work = tempfile::Builder::new().prefix("hutong-demo-").tempdir()?;
    let config_path = work.path().join("gateway.json");
    std::fs::write(&config_path, config.to_json())?;

    let server = HttpServer::start(&lab.extranet, SocketAddr::new(IpAddr::V4(a.server.addr()), HTTP_PORT))?;
    progress(&format!("extranet server listening on {}:{HTTP_PORT}", a.server.addr()));

    progress(&format!("starting `hutong gateway run` in {}", lab.gateway.name()));
    let mut gw = GatewayProcess::start(&lab.gateway, hutong, &config_path, work.path(), "gateway", &[])?;
    gw.wait_ready(&check_interrupted)?;
    let stats = gw.stats.clone();

    let server_ip = IpAddr::V4(a.server.addr());
    let url = format!("http://{server_ip}:{HTTP_PORT}/");
    progress(&format!("legacy host {} pings the extranet server {server_ip}", a.legacy_host.addr()));
    let ping_ok = ping(&lab.legacy, server_ip, None)?;
    check_interrupted()?;
    progress(&format!("legacy host fetches {url}"));
    let http_body = curl(&lab.legacy, &url, None, 5)?;
    check_interrupted()?;
    // Let one more counters refresh land before reading them.
    std::thread::sleep(Duration::from_millis(400));
    let counters_allowed = read_counters(&stats);

    progress(&format!("unmapped legacy address {} tries the same (must be refused)", a.unmapped));
    let unmapped_ping = ping(&lab.legacy, server_ip, Some(IpAddr::V4(a.unmapped)))?;
    check_interrupted()?;
    let unmapped_http_ok = curl(&lab.legacy, &url, Some(IpAddr::V4(a.unmapped)), 2)?.is_some();

    gw.stop();
    let counters = read_counters(&stats);
    if counters.stat(Stat::Received) == 0 {
        bail!("the gateway published no counters:\n{}", gw.log_text());
    }
    let server_saw = server.seen();
    progress("removing the lab");
    drop(server);
    drop(gw);
    drop(lab);
    Ok(Evidence {
        addrs: a,
        ping: ping_ok,
        http_body,
        unmapped_ping,
        unmapped_http_ok,
        server_saw,
        counters_allowed,
        counters,
    })
}

/// A verdict on the evidence: each check with whether it held.
pub fn checks(e: &Evidence) -> Vec<(String, bool)> {
    let translated = IpAddr::V4(e.addrs.legacy_host_translated);
    let untranslated = IpAddr::V4(e.addrs.legacy_host.addr());
    let unmapped = IpAddr::V4(e.addrs.unmapped);
    let refused =
        e.counters.drop(DropReason::NoTranslation) - e.counters_allowed.drop(DropReason::NoTranslation);
    vec![
        (
            format!("server saw the legacy host as its plan address {translated}"),
            e.server_saw.contains(&translated),
        ),
        (
            format!("server never saw the legacy address {untranslated} or {unmapped}"),
            !e.server_saw.iter().any(|s| *s == untranslated || *s == unmapped),
        ),
        (
            format!("ping replies reached the legacy host ({}/{})", e.ping.received, e.ping.sent),
            e.ping.sent > 0 && e.ping.received == e.ping.sent,
        ),
        (
            "HTTP reply reached the legacy host".into(),
            e.http_body.as_deref().is_some_and(|b| b.contains(&translated.to_string())),
        ),
        (
            format!(
                "unmapped {unmapped} got no ping replies ({}/{})",
                e.unmapped_ping.received, e.unmapped_ping.sent
            ),
            e.unmapped_ping.sent > 0 && e.unmapped_ping.received == 0,
        ),
        (format!("unmapped {unmapped} got no HTTP reply"), !e.unmapped_http_ok),
        (
            format!("gateway counted the refusals as drop_no_translation (+{refused})"),
            refused >= e.unmapped_ping.sent as u64,
        ),
    ]
}

/// A runtime whose Ctrl-C or SIGTERM sets [`INTERRUPTED`], so the demo stops at its next step
/// and removes the lab.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.spawn(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        INTERRUPTED.store(true, Ordering::Relaxed);
    });
    Ok(rt)
}

/// Numbered progress lines.
pub(crate) fn progress() -> impl Fn(&str) {
    let step = std::sync::atomic::AtomicU32::new(0);
    move |msg: &str| {
        let n = step.fetch_add(1, Ordering::Relaxed) + 1;
        println!("[{n}] {msg}");
    }
}

/// `hutong demo`: the showcase, or with `simple` (or a `plan`) the one-network demo.
pub fn run(plan: Option<&Path>, gateway: &str, simple: bool) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo creates network namespaces and attaches XDP programs: run it as root");
    }
    if plan.is_none() && !simple {
        return showcase();
    }
    let lp = match plan {
        Some(p) => control::check_file(p),
        None => control::load_str(DEMO_PLAN, Path::new("configs/demo/plan.yaml"))
            .and_then(|lp| control::validate(&lp).map(|()| lp)),
    }
    .map_err(|d| anyhow::anyhow!("{d}"))?;
    let config = control::compile(&lp, gateway).map_err(|d| anyhow::anyhow!("{d}"))?;
    println!("hutong demo: plan {:?}, gateway {}", lp.plan.plan, config.gateway);
    for n in &config.netmaps {
        println!("  netmap {} (VRF {}) <-> {} (extranet)", n.inside, n.inside_vrf, n.outside);
    }

    let rt = runtime()?;
    let exe = std::env::current_exe()?;
    let evidence = rt.block_on(collect(&config, &exe, &progress()))?;

    println!();
    println!("What the extranet server saw:");
    for ip in &evidence.server_saw {
        println!("  a connection from {ip}");
    }
    if let Some(body) = &evidence.http_body {
        println!("The legacy host got back: {body:?}");
    }
    println!();
    println!("Gateway counters:");
    for (name, v) in evidence.counters.stats.iter().chain(evidence.counters.drops.iter()) {
        if *v > 0 {
            println!("  {name:<22} {v}");
        }
    }
    println!();
    let checks = checks(&evidence);
    for (what, ok) in &checks {
        println!("  [{}] {what}", if *ok { " ok " } else { "FAIL" });
    }
    let failed = checks.iter().filter(|(_, ok)| !ok).count();
    println!();
    if failed == 0 {
        println!(
            "demo passed: the legacy host reached the extranet as its plan address; the unmapped address was refused and counted."
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo FAILED: {failed} check(s) did not hold");
        Ok(ExitCode::FAILURE)
    }
}

/// The showcase (see `crate::showcase`).
fn showcase() -> Result<ExitCode> {
    let config = crate::showcase::config()?;
    println!("hutong demo: the showcase plan (configs/demo/showcase.yaml), gateway {}", config.gateway);
    println!("  city-hall   10.0.0.0/16: 10.0.0.0/24 netmapped onto 198.18.20.0/24, 10.0.200.0/24 isolated");
    println!("  county-hall 10.0.0.0/16 (the same addresses, another VRF): NAPT onto 198.18.21.0/28,");
    println!("              its archive 10.0.0.10:8080 published at 198.18.21.80:80");
    let rt = runtime()?;
    let exe = std::env::current_exe()?;
    let rows = rt.block_on(crate::showcase::collect(&config, &exe, &progress(), &check_interrupted))?;
    println!();
    print!("{}", crate::showcase::table(&rows));
    let failed = rows.iter().filter(|r| !r.ok).count();
    println!();
    if failed == 0 {
        println!(
            "demo passed: both networks reached the extranet as their plan addresses, the archive was reached at \
             its published address, and what the plan does not publish was refused and counted."
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo FAILED: {failed} row(s) are not what the plan says");
        Ok(ExitCode::FAILURE)
    }
}
