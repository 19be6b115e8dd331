//! `hutong demo`'s showcase (`configs/demo/showcase.yaml`): two legacy networks that both use
//! 10.0.0.0/16, in their own VRFs behind one gateway; one netmapped with an isolated subnet,
//! the other on NAPT with a published archive; a central-department server on the extranet.
//! Real hosts in network namespaces send ping, HTTP and iperf3 both ways, and the demo ends in
//! a table: who reached what, as which address, and what was refused.
//!
//! [`collect`] returns the table; `hutong demo` prints it and `tests/e2e_showcase.rs` asserts
//! every row, so both run exactly the same path.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use dataplane::{Config, Counters, Drop as DropReason};

use crate::{DemoLab, Netns, demo::PINGS, gateway::GatewayProcess, http::HttpServer};

/// The embedded showcase plan, so `hutong demo` needs no files.
pub const SHOWCASE_PLAN: &str = include_str!("../../configs/demo/showcase.yaml");
pub const SHOWCASE_GATEWAY: &str = "gw-changsha";
const ARCHIVE_PORT: u16 = 8080;
/// Seconds of each iperf3 run.
const IPERF_SECONDS: u32 = 2;

/// One line of the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub from: String,
    pub to: String,
    pub traffic: String,
    /// What happened: "5/5 replies", "200 OK", "1.2 Gbit/s", "refused (0/5)".
    pub result: String,
    /// How the far end saw the sender (or the counter that refused it).
    pub seen_as: String,
    /// Whether that is what the plan says should happen.
    pub ok: bool,
}

/// Replies to `PINGS` pings from `ns` (from `source`, if given).
fn ping(ns: &Netns, dst: IpAddr, source: Option<IpAddr>) -> Result<u32> {
    Ok(crate::demo::ping(ns, dst, source)?.received)
}

/// `curl` from `ns`: the body, if the request succeeded.
fn curl(ns: &Netns, url: &str) -> Result<Option<String>> {
    crate::demo::curl(ns, url, None, 5)
}

/// The client address in one of the lab servers' greetings ("...; you are X").
fn seen_in(body: &Option<String>) -> String {
    body.as_deref().and_then(|b| b.rsplit("you are ").next()).unwrap_or("-").to_string()
}

/// An iperf3 run from `ns` to `server` (`-R`: the server sends): Mbit/s received, 0 if none.
fn iperf3(ns: &Netns, server: IpAddr, reverse: bool) -> Result<f64> {
    let mut cmd = ns.command("iperf3");
    cmd.args(["-c", &server.to_string(), "-t", &IPERF_SECONDS.to_string(), "-J"]);
    if reverse {
        cmd.arg("-R");
    }
    let out = cmd.stdin(Stdio::null()).output().context("running iperf3")?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6)
}

fn rate(mbit: f64) -> String {
    if mbit >= 1000.0 { format!("{:.1} Gbit/s", mbit / 1000.0) } else { format!("{mbit:.0} Mbit/s") }
}

/// Kills its child (an iperf3 server) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the lab for the showcase `config`, runs the gateway binary `hutong` in it, sends the
/// traffic and returns the summary. Everything is removed before this returns, whatever happens.
pub async fn collect(
    config: &Config,
    hutong: &Path,
    progress: &dyn Fn(&str),
    interrupted: &dyn Fn() -> Result<()>,
) -> Result<Vec<Row>> {
    progress("building namespaces and veths (two legacy networks, the gateway, the extranet)");
    let lab = DemoLab::build(config).await?;
    let a = lab.addrs.clone();
    let Some((_, county_host, _)) = a.second_legacy.clone() else {
        bail!("the showcase needs a second legacy network");
    };
    let county = lab.legacy2.as_ref().context("the lab has no second legacy network")?;
    let vrf_of = |port: &str| config.ports.iter().find(|p| p.name == port).map_or(0, |p| p.vrf);
    let county_port = a.second_legacy.as_ref().map(|(p, _, _)| p.clone()).unwrap_or_default();
    let pool = config
        .nat_pools
        .iter()
        .find(|p| p.inside_vrf == vrf_of(&county_port))
        .and_then(|p| p.addresses.first())
        .map(|n| n.network())
        .context("the showcase's second network needs a NAPT pool")?;
    let archive = config
        .services
        .iter()
        .find(|s| s.inside_vrf == vrf_of(&county_port))
        .context("the showcase's second network needs a published service")?;
    let work = tempfile::Builder::new().prefix("hutong-demo-").tempdir()?;
    let config_path = work.path().join("gateway.json");
    std::fs::write(&config_path, config.to_json())?;

    let server_ip = IpAddr::V4(a.server.addr());
    let _server =
        HttpServer::start_as(&lab.extranet, SocketAddr::new(server_ip, 80), "the central department")?;
    let _archive = HttpServer::start_as(
        county,
        SocketAddr::new(IpAddr::V4(county_host.addr()), ARCHIVE_PORT),
        "the county-hall archive",
    )?;
    let _iperf = Reaped(
        lab.extranet
            .command("iperf3")
            .args(["-s", "-B", &server_ip.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("running iperf3 (install iperf3)")?,
    );
    progress(&format!(
        "central-department server on {server_ip} (HTTP, iperf3); archive on {}:{ARCHIVE_PORT}",
        county_host.addr()
    ));

    progress(&format!("starting `hutong gateway run` in {}", lab.gateway.name()));
    let mut gw = GatewayProcess::start(&lab.gateway, hutong, &config_path, work.path(), "gateway", &[])?;
    gw.wait_ready(interrupted)?;
    let counters = || Counters::from_text(&std::fs::read_to_string(&gw.stats).unwrap_or_default());
    let slow_drop = |name: &str| -> u64 {
        let text = std::fs::read_to_string(&gw.stats).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("slow.drop_{name} ")))
            .map_or(0, |v| v.parse().unwrap_or(0))
    };
    let dropped = |d: DropReason| counters().drop(d) + slow_drop(d.name());

    let mut rows = Vec::new();
    let city = format!("city-hall {}", a.legacy_host.addr());
    let county_name = format!("county-hall {}", county_host.addr());
    let server_name = format!("central server {server_ip}");
    let city_seen = a.legacy_host_translated.to_string();
    let url = format!("http://{server_ip}/");

    // The first packet towards a next hop nobody asked for yet may be the one that asks.
    ping(&lab.legacy, server_ip, None)?;
    progress("city-hall (netmap): ping, HTTP, iperf3 both ways");
    let n = ping(&lab.legacy, server_ip, None)?;
    rows.push(Row {
        from: city.clone(),
        to: server_name.clone(),
        traffic: "ping".into(),
        result: format!("{n}/{PINGS} replies"),
        seen_as: city_seen.clone(),
        ok: n == PINGS,
    });
    let body = curl(&lab.legacy, &url)?;
    rows.push(Row {
        from: city.clone(),
        to: server_name.clone(),
        traffic: "HTTP".into(),
        result: if body.is_some() { "200 OK".into() } else { "failed".into() },
        seen_as: seen_in(&body),
        ok: seen_in(&body) == city_seen,
    });
    interrupted()?;
    let up = iperf3(&lab.legacy, server_ip, false)?;
    rows.push(Row {
        from: city.clone(),
        to: server_name.clone(),
        traffic: "iperf3 upload".into(),
        result: rate(up),
        seen_as: city_seen.clone(),
        ok: up > 0.0,
    });
    let down = iperf3(&lab.legacy, server_ip, true)?;
    rows.push(Row {
        from: server_name.clone(),
        to: city.clone(),
        traffic: "iperf3 download".into(),
        result: rate(down),
        seen_as: city_seen.clone(),
        ok: down > 0.0,
    });
    interrupted()?;
    let n = ping(&lab.extranet, IpAddr::V4(a.legacy_host_translated), None)?;
    rows.push(Row {
        from: server_name.clone(),
        to: format!("city-hall at {city_seen}"),
        traffic: "ping".into(),
        result: format!("{n}/{PINGS} replies"),
        seen_as: server_ip.to_string(),
        ok: n == PINGS,
    });

    progress("county-hall (NAPT, the same 10.0.0.0/16): ping, HTTP, iperf3; its published archive");
    ping(county, server_ip, None)?;
    let n = ping(county, server_ip, None)?;
    let pool_seen = pool.to_string();
    rows.push(Row {
        from: county_name.clone(),
        to: server_name.clone(),
        traffic: "ping".into(),
        result: format!("{n}/{PINGS} replies"),
        seen_as: pool_seen.clone(),
        ok: n == PINGS,
    });
    let body = curl(county, &url)?;
    rows.push(Row {
        from: county_name.clone(),
        to: server_name.clone(),
        traffic: "HTTP".into(),
        result: if body.is_some() { "200 OK".into() } else { "failed".into() },
        seen_as: seen_in(&body),
        ok: seen_in(&body) == pool_seen,
    });
    interrupted()?;
    let up = iperf3(county, server_ip, false)?;
    rows.push(Row {
        from: county_name.clone(),
        to: server_name.clone(),
        traffic: "iperf3 upload".into(),
        result: rate(up),
        seen_as: pool_seen.clone(),
        ok: up > 0.0,
    });
    let down = iperf3(county, server_ip, true)?;
    rows.push(Row {
        from: server_name.clone(),
        to: county_name.clone(),
        traffic: "iperf3 download".into(),
        result: rate(down),
        seen_as: pool_seen.clone(),
        ok: down > 0.0,
    });
    let outside = format!("http://{}:{}/", archive.outside, archive.outside_port);
    let body = curl(&lab.extranet, &outside)?;
    let served = body.as_deref().is_some_and(|b| b.contains("archive"));
    rows.push(Row {
        from: server_name.clone(),
        to: format!("archive at {}:{}", archive.outside, archive.outside_port),
        traffic: "HTTP".into(),
        result: if served {
            format!("200 OK from {}:{ARCHIVE_PORT}", county_host.addr())
        } else {
            "failed".into()
        },
        seen_as: seen_in(&body),
        ok: served && seen_in(&body) == server_ip.to_string(),
    });
    interrupted()?;

    progress("what the plan refuses: the isolated subnet, an address no translation covers");
    if let Some(isolated) = a.isolated {
        std::thread::sleep(Duration::from_millis(400)); // a counters refresh
        let before = dropped(DropReason::PolicyDeny);
        let n = ping(&lab.legacy, server_ip, Some(IpAddr::V4(isolated)))?;
        std::thread::sleep(Duration::from_millis(400));
        let moved = dropped(DropReason::PolicyDeny) - before;
        rows.push(Row {
            from: format!("city-hall isolated {isolated}"),
            to: server_name.clone(),
            traffic: "ping".into(),
            result: format!("refused ({n}/{PINGS})"),
            seen_as: format!("policy_deny +{moved}"),
            ok: n == 0 && moved >= PINGS as u64,
        });
    }
    let before = dropped(DropReason::NoTranslation);
    let n = ping(&lab.legacy, server_ip, Some(IpAddr::V4(a.unmapped)))?;
    std::thread::sleep(Duration::from_millis(400));
    let moved = dropped(DropReason::NoTranslation) - before;
    rows.push(Row {
        from: format!("city-hall unmapped {}", a.unmapped),
        to: server_name,
        traffic: "ping".into(),
        result: format!("refused ({n}/{PINGS})"),
        seen_as: format!("no_translation +{moved}"),
        ok: n == 0 && moved >= PINGS as u64,
    });

    gw.stop();
    progress("removing the lab");
    Ok(rows)
}

/// The summary as aligned text.
pub fn table(rows: &[Row]) -> String {
    let head = Row {
        from: "from".into(),
        to: "to".into(),
        traffic: "traffic".into(),
        result: "result".into(),
        seen_as: "seen as / counted".into(),
        ok: true,
    };
    let all: Vec<&Row> = std::iter::once(&head).chain(rows).collect();
    let w = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let (a, b, c, d) = (w(|r| &r.from), w(|r| &r.to), w(|r| &r.traffic), w(|r| &r.result));
    let mut out = String::new();
    for (i, r) in all.iter().enumerate() {
        let mark = if i == 0 {
            "    "
        } else if r.ok {
            " ok "
        } else {
            "FAIL"
        };
        out.push_str(&format!(
            "[{mark}] {:a$}  {:b$}  {:c$}  {:d$}  {}\n",
            r.from, r.to, r.traffic, r.result, r.seen_as
        ));
    }
    out
}

/// The showcase's config, from the embedded plan.
pub fn config() -> Result<Config> {
    let lp = control::load_str(SHOWCASE_PLAN, Path::new("configs/demo/showcase.yaml"))
        .and_then(|lp| control::validate(&lp).map(|()| lp))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    control::compile(&lp, SHOWCASE_GATEWAY).map_err(|d| anyhow::anyhow!("{d}"))
}
