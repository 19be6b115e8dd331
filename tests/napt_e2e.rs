//! NAPT across the gateway with real hosts: the XDP program leaves the NAPT VRFs to the slow path,
//! where the userspace engine translates; curl and ping from the legacy host reach the extranet
//! server from the pool address, and an address no rule publishes gets nowhere.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    process::Stdio,
};

use dataplane::{
    Action, Rule,
    config::{NatPool, PortRange},
};
use hutong::lab::http::HttpServer;

#[test]
fn legacy_hosts_reach_the_extranet_through_napt() {
    common::require_root("napt_e2e");
    let mut config = common::demo_config();
    config.netmaps.clear();
    config.nat_pools = vec![NatPool {
        max_sessions: 10_000,
        ..NatPool::defaults("city".into(), 1, 0, vec!["198.18.30.1/32".parse().unwrap()])
    }];
    config.policies = vec![Rule {
        name: "city-hall-napt".into(),
        vrf: 1,
        src: Some("10.20.0.0/24".parse().unwrap()),
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Napt { pool: "city".into() },
    }];
    config.validate().unwrap();

    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    assert_eq!(a.legacy_host_translated.to_string(), "198.18.30.1");
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway("gw");
    gw.wait_ready(&|| Ok(())).unwrap();
    let log = gw.log_text();
    assert!(log.contains("VRF 0 takes the slow path") && log.contains("VRF 1 takes the slow path"), "{log}");

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
    gw.stop();
}

#[test]
fn a_published_legacy_service_is_reachable_from_the_extranet() {
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
    let mut gw = site.start_gateway("gw");
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
