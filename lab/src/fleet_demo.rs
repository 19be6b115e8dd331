//! `hutong demo --fleet`: one plan driving three gateways through etcd. A local etcd in a
//! management namespace, the three gateways of the fleet example (configs/examples/fleet.yaml)
//! each in its own namespaces with a legacy host and an extranet server, a push, the ACK
//! table, traffic through each, then a change (Changsha denies ICMP, for itself and Furong
//! below it) rolled out in two waves, and the traffic again. Everything is removed afterwards,
//! also on failure or Ctrl-C; the exit code is non-zero if anything is not what the plan says.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, ExitCode},
};

use anyhow::{Context, Result, bail};

use crate::{
    demo::{check_interrupted, curl, progress, runtime},
    fleet::FleetLab,
    http::HttpServer,
};

/// The fleet example, embedded.
pub const FLEET_PLAN: &str = include_str!("../../configs/examples/fleet.yaml");
const GATEWAYS: [&str; 3] = ["gw-changsha", "gw-furong", "gw-zhuzhou"];
const PINGS: u32 = 3;

/// Runs a command, echoing it and what it printed; its output.
fn shown(mut cmd: Command, what: &str) -> Result<(bool, String)> {
    println!("$ {what}");
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    for line in text.lines() {
        println!("    {line}");
    }
    Ok((out.status.success(), text))
}

/// A row of the traffic table.
struct Row {
    gateway: &'static str,
    what: String,
    result: String,
    ok: bool,
}

/// Pings and fetches a page through each gateway; `icmp_denied`: which gateways the plan has
/// deny ICMP now.
fn traffic(lab: &FleetLab, servers: &[HttpServer], icmp_denied: &[&str]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (k, site) in lab.sites.iter().enumerate() {
        check_interrupted()?;
        let id = GATEWAYS[k];
        let a = &site.lab.addrs;
        let replies = site.pings(PINGS);
        let denied = icmp_denied.contains(&id);
        rows.push(Row {
            gateway: id,
            what: format!("ping {} -> {}", a.legacy_host.addr(), a.server.addr()),
            result: if denied {
                format!("refused ({replies}/{PINGS}), as the plan says")
            } else {
                format!("{replies}/{PINGS} replies")
            },
            ok: if denied { replies == 0 } else { replies == PINGS },
        });
        let url = format!("http://{}/", a.server.addr());
        let body = curl(&site.lab.legacy, &url, None, 5)?;
        let seen = servers[k].seen().last().map(|ip| ip.to_string()).unwrap_or_else(|| "-".into());
        let want = a.legacy_host_translated.to_string();
        rows.push(Row {
            gateway: id,
            what: format!("HTTP {} -> {}", a.legacy_host.addr(), a.server.addr()),
            result: match &body {
                Some(_) => format!("200 OK, seen as {seen}"),
                None => "no answer".into(),
            },
            ok: body.is_some() && seen == want,
        });
    }
    Ok(rows)
}

fn print_rows(rows: &[Row]) {
    for r in rows {
        println!("  [{}] {:<12} {:<36} {}", if r.ok { " ok " } else { "FAIL" }, r.gateway, r.what, r.result);
    }
}

pub fn run() -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo creates network namespaces and attaches XDP programs: run it as root");
    }
    if !crate::etcd::installed() {
        bail!(
            "the fleet demo needs etcd: run scripts/setup.sh (it installs Debian's etcd-server and etcd-client)"
        );
    }
    let lp = control::load_str(FLEET_PLAN, Path::new("configs/examples/fleet.yaml"))
        .and_then(|lp| control::validate(&lp).map(|()| lp))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    println!(
        "hutong demo --fleet: plan {:?} (configs/examples/fleet.yaml), gateways {}",
        lp.plan.plan,
        GATEWAYS.join(", ")
    );
    let step = progress();
    let rt = runtime()?;
    let exe = std::env::current_exe()?;
    step("building three sites in network namespaces, and etcd in a management namespace");
    let mut lab = rt.block_on(FleetLab::build(&lp, &GATEWAYS, 1))?;
    check_interrupted()?;
    let work = tempfile::tempdir()?;
    let plan_file = work.path().join("fleet.yaml");
    std::fs::write(&plan_file, FLEET_PLAN)?;
    let plan_arg = plan_file.to_str().context("a UTF-8 temporary path")?;

    step("pushing the plan to etcd (no gateway runs yet)");
    let (ok, _) =
        shown(lab.hutong(&exe, &["push", plan_arg, "--no-wait"]), "hutong push fleet.yaml --no-wait")?;
    if !ok {
        bail!("the first push failed");
    }
    step(
        "starting the three gateways: each takes its config from etcd (hutong gateway run --fleet URLS --gateway ID)",
    );
    for k in 0..GATEWAYS.len() {
        lab.start(k, &exe)?;
    }
    for s in &mut lab.sites {
        s.gateway.as_mut().expect("started").wait_ready(&check_interrupted)?;
    }
    lab.wait_acked(&exe, &GATEWAYS, 1, &check_interrupted)?;
    shown(lab.hutong(&exe, &["fleet", "status"]), "hutong fleet status")?;

    let servers = lab
        .sites
        .iter()
        .map(|s| HttpServer::start(&s.lab.extranet, SocketAddr::new(s.lab.addrs.server.addr().into(), 80)))
        .collect::<std::io::Result<Vec<_>>>()?;
    step("traffic through each gateway on push 1");
    let mut rows = traffic(&lab, &servers, &[])?;
    print_rows(&rows);

    step("Changsha's operator denies ICMP at node 430100 (its gateway and Furong's below it), in two waves");
    let changed = FLEET_PLAN.replacen(
        "        name: Changsha\n        level: prefecture\n",
        "        name: Changsha\n        level: prefecture\n        policies: [{ name: no-ping, protocol: icmp, action: deny }]\n",
        1,
    );
    std::fs::write(&plan_file, changed)?;
    let (ok, _) = shown(
        lab.hutong(
            &exe,
            &["push", plan_arg, "--scope", "430100", "--wave", "1", "--wave", "rest", "--settle", "2"],
        ),
        "hutong push fleet.yaml --scope 430100 --wave 1 --wave rest --settle 2",
    )?;
    if !ok {
        bail!("the rollout did not finish");
    }
    shown(lab.hutong(&exe, &["fleet", "status"]), "hutong fleet status")?;
    step("traffic through each gateway on push 2");
    let after = traffic(&lab, &servers, &["gw-changsha", "gw-furong"])?;
    print_rows(&after);
    rows.extend(after);
    let failed = rows.iter().filter(|r| !r.ok).count();
    println!();
    if failed == 0 {
        println!(
            "demo passed: one push reached three gateways, each ACKed; the second went out in two waves, and \
             the traffic changed as the plan says, at Changsha and Furong and not at Zhuzhou."
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo FAILED: {failed} row(s) are not what the plan says");
        Ok(ExitCode::FAILURE)
    }
}
