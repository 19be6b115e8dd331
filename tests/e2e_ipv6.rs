//! IPv6 through a running gateway with real Linux hosts: the legacy network fd20::/64 reaches
//! the extranet server through NPTv6 (RFC 6296) as 2001:db8:20::/48, by ping and by HTTP, and
//! the server reaches the legacy host back at its translated address. Neighbor discovery is
//! the kernel's on every side, the gateway's included: the program hands it NDP, and the
//! resolver copies what the kernel learns into the program's IPv6 neighbor table.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use dataplane::{Action, Config, Counters, Rule, Stat};
use hutong::lab::http::HttpServer;

/// The demo config with IPv6: fd20::1/64 on the legacy port, 2001:db8:19::1/64 on the uplink,
/// NPTv6 between fd20::/48 and 2001:db8:20::/48, and a default route via the server.
fn with_ipv6() -> Config {
    let mut c = common::demo_config();
    c.ports[0].addresses.push("fd20::1/64".parse().unwrap());
    c.ports[1].addresses.push("2001:db8:19::1/64".parse().unwrap());
    c.nptv6.push(dataplane::Nptv6 {
        inside_vrf: 1,
        inside: "fd20::/48".parse().unwrap(),
        outside_vrf: 0,
        outside: "2001:db8:20::/48".parse().unwrap(),
    });
    c.routes.push(dataplane::RouteConfig {
        vrf: 0,
        prefix: "::/0".parse().unwrap(),
        port: "uplink0".into(),
        via: Some("2001:db8:19::2".parse().unwrap()),
    });
    let rule = |name: &str, vrf: u32, src: Option<&str>, dst: Option<&str>| Rule {
        name: name.into(),
        vrf,
        src: src.map(|s| s.parse().unwrap()),
        dst: dst.map(|d| d.parse().unwrap()),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Nptv6,
    };
    c.policies.push(rule("npt-out", 1, Some("fd20::/48"), None));
    c.policies.push(rule("npt-in", 0, None, Some("2001:db8:20::/48")));
    c.validate().unwrap();
    c
}

#[test]
fn ipv6_through_nptv6_on_the_xdp_engine() {
    ipv6(&[]);
}

#[test]
fn ipv6_through_nptv6_on_the_userspace_engine() {
    ipv6(&["--engine", "userspace"]);
}

fn ipv6(engine: &[&str]) {
    common::require_root("e2e_ipv6");
    let site = common::Site::build(&with_ipv6());
    let lab = &site.lab;
    let six = lab.addrs.ipv6.clone().expect("the lab builds IPv6 hosts");
    let translated = six.legacy_host_translated.expect("NPTv6 covers the legacy host");
    let server =
        HttpServer::start(&lab.extranet, SocketAddr::new(IpAddr::V6(six.server.addr()), 80)).unwrap();
    let mut gw = site.start_gateway_with("gw6", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    let ping = |ns: &hutong::lab::Netns, to: String, n: u32| {
        let out = ns
            .command("ping")
            .args(["-6", "-n", "-q", "-c", &n.to_string(), "-i", "0.05", "-W", "1", &to])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // The first packet towards a neighbor nobody asked for yet may be the one that asks.
    ping(&lab.legacy, six.server.addr().to_string(), 1);
    ping(&lab.extranet, translated.to_string(), 1);
    let before = Counters::from_text(&std::fs::read_to_string(&gw.stats).unwrap_or_default());

    let out = ping(&lab.legacy, six.server.addr().to_string(), 20);
    assert!(out.contains("20 received"), "legacy -> server: {out}\n{}", gw.log_text());
    let body = common::fetch(&lab.legacy, &format!("http://[{}]/", six.server.addr()));
    assert_eq!(body, format!("hello from the extranet server; you are {translated}"), "{}", gw.log_text());
    assert_eq!(server.seen().last(), Some(&IpAddr::V6(translated)));
    // And back in: the extranet reaches the legacy host at its translated address.
    let out = ping(&lab.extranet, translated.to_string(), 20);
    assert!(out.contains("20 received"), "server -> legacy: {out}\n{}", gw.log_text());

    std::thread::sleep(Duration::from_millis(400)); // a counters refresh
    let after = Counters::from_text(&std::fs::read_to_string(&gw.stats).unwrap());
    let moved = |s: Stat| after.stat(s) - before.stat(s);
    eprintln!(
        "ipv6 e2e {engine:?}: program forwarded {}, slow path {}, to host {}",
        moved(Stat::Forwarded),
        moved(Stat::SlowPath),
        moved(Stat::ToHost)
    );
    if engine.is_empty() {
        // 80 echo packets and a TCP connection: all of them the program's.
        assert!(moved(Stat::Forwarded) >= 80, "the program forwards IPv6 itself");
        assert!(moved(Stat::SlowPath) < 10, "IPv6 stays off the slow path");
    } else {
        assert_eq!(moved(Stat::Forwarded), 0, "the userspace engine forwards everything");
        assert!(moved(Stat::SlowPath) >= 80);
    }
    gw.stop();
}
