//! NAPT across the gateway with real hosts: the XDP program leaves the NAPT VRFs to the slow path,
//! where the userspace engine translates; curl and ping from the legacy host reach the extranet
//! server from the pool address, and an address no rule publishes gets nowhere.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    process::Stdio,
};

use dataplane::{Action, Rule, Stat, config::PortRange};
use hutong::lab::http::HttpServer;

#[test]
fn legacy_hosts_reach_the_extranet_through_napt() {
    common::require_root("napt_e2e");
    let config = common::napt_config("198.18.30.1/32");

    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    assert_eq!(a.legacy_host_translated.to_string(), "198.18.30.1");
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway("gw");
    gw.wait_ready(&|| Ok(())).unwrap();
    let log = gw.log_text();
    // The pool's inside is the slow path's (there are no netmapped sources); its outside only
    // for NAT addresses and new sessions.
    assert!(
        log.contains("VRF 1 is a NAPT pool's inside") && !log.contains("VRF 0 takes the slow path"),
        "{log}"
    );
    assert!(log.contains("VRF 0: packets to NAT addresses"), "{log}");

    let url = format!("http://{}/", a.server.addr());
    let curl = |source: Option<&str>| {
        let mut c = lab.legacy.command("curl");
        c.args(["-sS", "--max-time", "3"]);
        if let Some(s) = source {
            c.args(["--interface", s]);
        }
        let out = c.arg(&url).stdin(Stdio::null()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        curl(None),
        "hello from the extranet server; you are 198.18.30.1",
        "gateway log:\n{}",
        gw.log_text()
    );
    let ping = lab
        .legacy
        .command("ping")
        .args(["-n", "-c", "3", "-i", "0.2", "-W", "1", &a.server.addr().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(text.contains("3 received"), "ICMP echo through NAPT:\n{text}");
    // The unmapped address is published by no rule.
    assert_eq!(curl(Some(&a.unmapped.to_string())), "");
    assert_eq!(server.seen(), vec![IpAddr::V4(a.legacy_host_translated)]);

    // An established session stays in the kernel: after its first exchange (decided by the
    // slow path), the program forwards it by the flows the slow path handed over.
    let before = flow_counters(&gw.stats);
    let ping = lab
        .legacy
        .command("ping")
        .args(["-n", "-c", "40", "-i", "0.02", "-W", "1", &a.server.addr().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(text.contains("40 received"), "ICMP echo through NAPT flows:\n{text}");
    std::thread::sleep(std::time::Duration::from_millis(500)); // one counters refresh
    let after = flow_counters(&gw.stats);
    let hits = after.flow_hit - before.flow_hit;
    let slow = after.slow_path - before.slow_path;
    eprintln!("napt_e2e: 40 echo exchanges: {hits} packets by flows in the program, {slow} by the slow path");
    assert!(hits >= 70, "established echo traffic must stay in the program: {hits} flow hits, {slow} slow");
    assert!(slow <= 10, "only the session's first packets take the slow path: {slow}");
    assert!(after.active >= 2, "both directions of the session are flows: {}", after.active);

    // The sessions, as an operator asks for them (GET /v1/sessions through the CLI).
    let hutong = env!("CARGO_BIN_EXE_hutong");
    let host = a.legacy_host.addr().to_string();
    let out = lab.gateway.command(hutong).args(["sessions", "--addr", &host, "--json"]).output().unwrap();
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = page["sessions"].as_array().unwrap();
    assert!(page["total"].as_u64().unwrap() >= 3, "curl, two pings: {page}");
    assert!(
        sessions.iter().all(|s| s["inside"].as_str().unwrap().starts_with(&format!("{host}:"))),
        "{page}"
    );
    assert!(sessions.iter().all(|s| s["outside"].as_str().unwrap().starts_with("198.18.30.1:")), "{page}");
    assert!(
        sessions.iter().any(|s| s["proto"] == "icmp" && s["kernel_flows"].as_u64() == Some(2)),
        "the long ping's session is forwarded by two flows in the program: {page}"
    );
    let out = lab.gateway.command(hutong).args(["sessions", "--proto", "tcp"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("tcp") && table.contains(":80"), "{table}");
    // Sessions and port blocks in use, as metrics.
    let out = lab.gateway.command("curl").args(["-s", "http://127.0.0.1:9180/metrics"]).output().unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout).to_string();
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let gauge = |name: &str, extra: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.get("pool") == Some("city")
                    && extra.is_none_or(|(k, v)| s.labels.get(k) == Some(v))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => -1.0,
            })
    };
    assert!(gauge("hutong_nat_sessions", None).is_some_and(|v| v >= 3.0), "{metrics}");
    assert!(
        gauge("hutong_nat_port_blocks", Some(("state", "used"))) == Some(1.0),
        "one host, one block: {metrics}"
    );
    let out = lab.gateway.command(hutong).args(["sessions", "--limit", "5000"]).output().unwrap();
    assert!(!out.status.success(), "a page larger than 1000 is refused");
    gw.stop();
}

struct FlowCounters {
    flow_hit: u64,
    slow_path: u64,
    active: u64,
}

/// The program's flow hits and slow-path hand-overs, and the flows in its map, from the
/// gateway's counters file.
fn flow_counters(path: &std::path::Path) -> FlowCounters {
    let text = std::fs::read_to_string(path).unwrap();
    let c = dataplane::Counters::from_text(&text);
    let active = text.lines().find_map(|l| l.strip_prefix("flows.active ")).map_or(0, |v| v.parse().unwrap());
    FlowCounters { flow_hit: c.stat(Stat::FlowHit), slow_path: c.stat(Stat::SlowPath), active }
}

#[test]
fn a_published_legacy_service_is_reachable_from_the_extranet() {
    a_published_legacy_service_is_reachable_from_the_extranet_on(&[]);
}

/// The same on the userspace engine.
#[test]
fn a_published_service_on_the_userspace_engine() {
    a_published_legacy_service_is_reachable_from_the_extranet_on(&["--engine", "userspace"]);
}

fn a_published_legacy_service_is_reachable_from_the_extranet_on(engine: &[&str]) {
    common::require_root("napt_e2e");
    let mut config = common::demo_config();
    config.services = vec![dataplane::config::Service {
        name: "city-portal".into(),
        proto: 6,
        outside_vrf: 0,
        outside: "198.18.40.80".parse().unwrap(),
        outside_port: 80,
        inside_vrf: 1,
        inside: "10.20.0.10".parse().unwrap(),
        inside_port: 8080,
    }];
    config.policies.push(Rule {
        name: "portal-in".into(),
        vrf: 0,
        src: None,
        dst: Some("198.18.40.80/32".parse().unwrap()),
        proto: Some(6),
        src_ports: None,
        dst_ports: Some(PortRange { first: 80, last: 80 }),
        action: Action::Dnat,
    });
    config.validate().unwrap();

    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    // The legacy service, listening on its legacy address; it never sent anything before.
    let portal = HttpServer::start(&lab.legacy, SocketAddr::new(a.legacy_host.addr().into(), 8080)).unwrap();
    let mut gw = site.start_gateway_with("gw", engine);
    gw.wait_ready(&|| Ok(())).unwrap();

    let fetch = |url: &str| {
        let out = lab
            .extranet
            .command("curl")
            .args(["-sS", "--max-time", "5", url])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let body = fetch("http://198.18.40.80/");
    assert_eq!(
        body,
        format!("hello from the extranet server; you are {}", a.server.addr()),
        "gateway log:\n{}",
        gw.log_text()
    );
    assert_eq!(portal.seen(), vec![IpAddr::V4(a.server.addr())], "DNAT keeps the client's address");
    // Another port of the published address is not published.
    assert_eq!(fetch("http://198.18.40.80:8080/"), "");
    gw.stop();
}

/// The same NAPT site on the userspace engine: every packet is decided in userspace, reached
/// through AF_XDP; nothing is forwarded by flows in the program.
#[test]
fn napt_on_the_userspace_engine() {
    common::require_root("napt_e2e");
    let config = common::napt_config("198.18.30.1/32");
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway_with("gw-user", &["--engine", "userspace"]);
    gw.wait_ready(&|| Ok(())).unwrap();
    let log = gw.log_text();
    assert!(
        log.contains("all traffic takes the slow path (--engine userspace)")
            && log.contains("(userspace engine,"),
        "{log}"
    );
    assert_eq!(
        common::fetch(&lab.legacy, &format!("http://{}/", a.server.addr())),
        "hello from the extranet server; you are 198.18.30.1"
    );
    let before = flow_counters(&gw.stats);
    let ping = lab
        .legacy
        .command("ping")
        .args(["-n", "-c", "20", "-i", "0.02", "-W", "1", &a.server.addr().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(text.contains("20 received"), "{text}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = flow_counters(&gw.stats);
    assert_eq!((after.flow_hit, after.active), (0, 0), "no flows on the userspace engine");
    assert!(after.slow_path - before.slow_path >= 40, "every packet went to the userspace engine");
    let hutong = env!("CARGO_BIN_EXE_hutong");
    let out = lab.gateway.command(hutong).args(["status", "--json"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["engine"], "userspace");
    assert_eq!(server.seen(), vec![IpAddr::V4(a.legacy_host_translated)]);
    gw.stop();
}

/// Deterministic NAT (RFC 7422) end to end: the legacy host leaves from the address and port
/// block the formula gives it, and its session says so.
#[test]
fn deterministic_nat_follows_its_formula_end_to_end() {
    deterministic_nat_follows_its_formula_end_to_end_on(&[]);
}

/// The same on the userspace engine.
#[test]
fn deterministic_nat_on_the_userspace_engine() {
    deterministic_nat_follows_its_formula_end_to_end_on(&["--engine", "userspace"]);
}

fn deterministic_nat_follows_its_formula_end_to_end_on(engine: &[&str]) {
    common::require_root("napt_e2e");
    let mut config = common::napt_config("198.18.30.0/31");
    config.nat_pools[0].mode =
        dataplane::config::PoolMode::Deterministic { inside: "10.20.0.0/24".parse().unwrap() };
    config.validate().unwrap();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway_with("gw-det", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    // Host 10 of 10.20.0.0/24, 252 blocks of 256 ports per address: 198.18.30.0, block 10.
    assert_eq!(
        common::fetch(&lab.legacy, &format!("http://{}/", a.server.addr())),
        "hello from the extranet server; you are 198.18.30.0"
    );
    assert_eq!(server.seen(), vec![IpAddr::V4("198.18.30.0".parse().unwrap())]);
    let hutong = env!("CARGO_BIN_EXE_hutong");
    let out = lab.gateway.command(hutong).args(["sessions", "--proto", "tcp", "--json"]).output().unwrap();
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outside = page["sessions"][0]["outside"].as_str().unwrap().to_string();
    let port: u16 = outside.rsplit(':').next().unwrap().parse().unwrap();
    assert!(outside.starts_with("198.18.30.0:") && (3584..3840).contains(&port), "{page}");
    gw.stop();
}
