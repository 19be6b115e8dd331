//! Two legacy networks that both use 10.20.0.0/24, in different VRFs behind one gateway, with
//! real hosts at the same address: both reach the same extranet server, each as its own plan
//! address, and each gets its own replies.

mod common;

use std::net::{IpAddr, SocketAddr};

use dataplane::Config;
use hutong::lab::http::HttpServer;

/// The demo config plus a second legacy network: port `legacy1` in VRF 2 with the same
/// 10.20.0.1/24, netmapped onto 198.18.21.0/24.
fn overlapping() -> Config {
    let mut c = common::demo_config();
    let mut vrf = c.vrfs[1].clone();
    vrf.id = 2;
    vrf.name = "county-hall".into();
    c.vrfs.push(vrf);
    let mut port = c.ports[0].clone();
    port.name = "legacy1".into();
    port.vrf = 2;
    c.ports.push(port);
    let mut netmap = c.netmaps[0].clone();
    netmap.inside_vrf = 2;
    netmap.outside = "198.18.21.0/24".parse().unwrap();
    c.netmaps.push(netmap);
    let mut out = c.policies[0].clone();
    out.name = "county-hall-out".into();
    out.vrf = 2;
    let mut inbound = c.policies[1].clone();
    inbound.name = "county-hall-in".into();
    inbound.dst = Some("198.18.21.0/24".parse().unwrap());
    c.policies.extend([out, inbound]);
    c.validate().unwrap();
    c
}

#[test]
fn overlapping_legacy_networks_reach_the_same_server_as_themselves() {
    overlap(&[]);
}

#[test]
fn overlapping_legacy_networks_on_the_userspace_engine() {
    overlap(&["--engine", "userspace"]);
}

fn overlap(engine: &[&str]) {
    common::require_root("e2e_overlap");
    let site = common::Site::build(&overlapping());
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let second = lab.legacy2.as_ref().expect("the lab builds the second legacy network");
    assert_eq!(a.second_legacy.as_ref().unwrap().1, a.legacy_host, "the same address in both networks");
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway_with("gw", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    let url = format!("http://{}/", a.server.addr());
    let ping = |ns: &hutong::lab::Netns| {
        let out = ns
            .command("ping")
            .args(["-n", "-q", "-c", "3", "-i", "0.1", "-W", "1", &a.server.addr().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("3 received")
    };
    for _ in 0..2 {
        assert_eq!(
            common::fetch(&lab.legacy, &url),
            "hello from the extranet server; you are 198.18.20.10",
            "{}",
            gw.log_text()
        );
        assert_eq!(
            common::fetch(second, &url),
            "hello from the extranet server; you are 198.18.21.10",
            "{}",
            gw.log_text()
        );
    }
    assert!(ping(&lab.legacy) && ping(second), "both networks' pings come back to them");
    let seen = server.seen();
    for ip in ["198.18.20.10", "198.18.21.10"] {
        assert_eq!(seen.iter().filter(|s| **s == ip.parse::<IpAddr>().unwrap()).count(), 2, "{seen:?}");
    }
    gw.stop();
}
