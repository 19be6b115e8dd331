//! Policy with real hosts: an isolated subnet inside a legacy network reaches nothing, the
//! program's deny counter and the rule's hit counter show it, and the rest of the network is
//! unaffected.

mod common;

use std::{net::SocketAddr, process::Stdio, time::Duration};

use dataplane::{Action, Counters, Drop, Rule};
use hutong::lab::http::HttpServer;

#[test]
fn an_isolated_subnet_reaches_nothing_and_is_counted() {
    isolated_subnet(&[]);
}

#[test]
fn an_isolated_subnet_reaches_nothing_on_the_userspace_engine_too() {
    isolated_subnet(&["--engine", "userspace"]);
}

fn isolated_subnet(engine: &[&str]) {
    common::require_root("e2e_policy");
    let mut config = common::demo_config();
    config.policies.insert(
        0,
        Rule {
            name: "isolated".into(),
            vrf: 1,
            src: Some("10.20.1.0/24".parse().unwrap()),
            dst: None,
            proto: None,
            src_ports: None,
            dst_ports: None,
            action: Action::Deny,
        },
    );
    config.validate().unwrap();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    assert!("10.20.1.0/24".parse::<ipnet::Ipv4Net>().unwrap().contains(&a.unmapped));
    let _server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway_with("gw", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    let ping = |from: &str| {
        let out = lab
            .legacy
            .command("ping")
            .args(["-n", "-q", "-c", "5", "-i", "0.05", "-W", "1", "-I", from, &a.server.addr().to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // One exchange first: a userspace engine drops the first packet towards a next hop it has
    // not learnt yet (it copies the neighbor table soon after).
    let _ = ping(&a.legacy_host.addr().to_string());
    assert!(ping(&a.legacy_host.addr().to_string()).contains("5 received"), "{}", gw.log_text());
    let isolated = ping(&a.unmapped.to_string());
    assert!(isolated.contains(" 0 received"), "{isolated}");
    std::thread::sleep(Duration::from_millis(400)); // a counters refresh
    let stats = std::fs::read_to_string(&gw.stats).unwrap();
    // Counted by whichever engine decided: the program's counter, or the slow path's.
    let program = Counters::from_text(&stats).drop(Drop::PolicyDeny);
    let slow: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("slow.drop_policy_deny "))
        .map_or(0, |v| v.parse().unwrap());
    assert!(program + slow >= 5, "the deny counter:\n{stats}");
    assert!(stats.lines().any(|l| l.starts_with("rule.isolated ") && l != "rule.isolated 0"), "{stats}");
    gw.stop();
}
