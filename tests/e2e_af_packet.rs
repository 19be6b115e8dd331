//! The userspace engine through packet sockets (AF_PACKET), the fallback where no XDP program
//! runs: no program on the interfaces, every frame read from a packet socket, and the kernel,
//! which sees every frame too, kept from forwarding them as well. IPv4 forwarding is switched
//! on in the gateway's namespace beforehand, so a kernel that forwarded alongside would show:
//! the server would see the legacy host's own address. One worker, and two in a fanout group.

mod common;

use std::{net::SocketAddr, process::Stdio};

use hutong::lab::http::HttpServer;

#[test]
fn the_userspace_engine_through_packet_sockets() {
    af_packet("gw-pkt", &[]);
}

#[test]
fn two_workers_through_a_packet_fanout() {
    af_packet("gw-pkt2", &["--workers", "2"]);
}

fn af_packet(tag: &str, extra: &[&str]) {
    common::require_root("e2e_af_packet");
    let config = common::napt_config("198.18.30.1/32");
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let sysctl = |port: &str, set: Option<&str>| {
        let path = format!("/proc/sys/net/ipv4/conf/{port}/forwarding");
        let out = match set {
            Some(v) => lab.gateway.command("sh").args(["-c", &format!("echo {v} > {path}")]).output(),
            None => lab.gateway.command("cat").arg(&path).output(),
        };
        String::from_utf8_lossy(&out.unwrap().stdout).trim().to_string()
    };
    let ports = [a.legacy_port.clone(), a.uplink_port.clone()];
    for p in &ports {
        sysctl(p, Some("1"));
        assert_eq!(sysctl(p, None), "1");
    }
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut args = vec!["--engine", "userspace", "--io", "af-packet"];
    args.extend_from_slice(extra);
    let mut gw = site.start_gateway_with(tag, &args);
    gw.wait_ready(&|| Ok(())).unwrap();
    let log = gw.log_text();
    for p in &ports {
        assert!(log.contains(&format!("{p} is read through a packet socket (AF_PACKET)")), "{log}");
        assert_eq!(sysctl(p, None), "0", "the kernel must not forward what arrives on {p}");
        let link = lab.gateway.command("ip").args(["-d", "link", "show", p]).output().unwrap();
        let link = String::from_utf8_lossy(&link.stdout).to_string();
        assert!(!link.contains("prog/xdp"), "no XDP program on {p}: {link}");
    }

    let url = format!("http://{}/", a.server.addr());
    for _ in 0..3 {
        assert_eq!(common::fetch(&lab.legacy, &url), "hello from the extranet server; you are 198.18.30.1");
    }
    let ping = |ns: &hutong::lab::Netns, dst: &str, n: u32| {
        let out = ns
            .command("ping")
            .args(["-n", "-c", &n.to_string(), "-i", "0.2", "-W", "1", dst])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // Through NAPT; to the gateway's own address (the kernel answers, and only it); to the
    // pool address (the host stack answers, and only it). No duplicates anywhere.
    for (ns, dst, what) in [
        (&lab.legacy, a.server.addr().to_string(), "through NAPT"),
        (&lab.legacy, a.legacy_gateway.to_string(), "the gateway's own address"),
        (&lab.extranet, "198.18.30.1".to_string(), "the pool address"),
    ] {
        let text = ping(ns, &dst, 5);
        assert!(
            text.contains("5 received") && !text.contains("DUP"),
            "ping {dst} ({what}):\n{text}\n{}",
            gw.log_text()
        );
    }
    let _iperf = common::iperf3_server(lab);
    let out = common::iperf3_client(lab, &["-b", "50M"]).wait_with_output().unwrap();
    let (received, report) = common::iperf3_received(&out);
    assert!(received > 1e6, "iperf3 through packet sockets moved {received} bytes:\n{report}");
    eprintln!(
        "af_packet_e2e {extra:?}: iperf3 moved {:.1} MB, 3 curls and 15 pings answered once each",
        received / 1e6
    );
    // Only ever as the pool address: the kernel forwarded nothing itself.
    assert!(
        server.seen().iter().all(|s| s.to_string() == "198.18.30.1"),
        "the server saw {:?}",
        server.seen()
    );
    gw.stop();
    for p in &ports {
        assert_eq!(sysctl(p, None), "1", "{p}'s forwarding setting is put back");
    }
}
