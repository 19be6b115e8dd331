//! ICMP errors through NAT with real Linux stacks: a closed UDP port's port-unreachable finds its
//! way back through NAPT to the right legacy host (RFC 5508), and a smaller MTU on the legacy
//! side makes the gateway answer DF traffic with fragmentation-needed, which the sender's TCP
//! stack uses to finish a bulk transfer (path-MTU discovery).

mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

#[test]
fn a_closed_udp_port_is_reported_back_through_napt() {
    closed_udp_port(&[]);
}

#[test]
fn a_closed_udp_port_is_reported_back_on_the_userspace_engine_too() {
    closed_udp_port(&["--engine", "userspace"]);
}

fn closed_udp_port(engine: &[&str]) {
    common::require_root("e2e_icmp");
    let site = common::Site::build(&common::napt_config("198.18.30.1/32"));
    let lab = &site.lab;
    let server = SocketAddr::new(lab.addrs.server.addr().into(), 9);
    let mut gw = site.start_gateway_with("gw", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    // A connected UDP socket on the legacy host: Linux reports an ICMP port-unreachable about
    // its own datagram as ECONNREFUSED on the next receive. Nothing listens on port 9.
    let refused = lab
        .legacy
        .run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.connect(server).unwrap();
            let mut kinds = Vec::new();
            for _ in 0..3 {
                s.send(b"anyone?").unwrap();
                let mut buf = [0u8; 64];
                kinds.push(s.recv(&mut buf).map_err(|e| e.kind()));
            }
            kinds
        })
        .unwrap();
    eprintln!("icmp_e2e: the legacy host's receives: {refused:?}");
    assert!(
        refused.contains(&Err(std::io::ErrorKind::ConnectionRefused)),
        "the port-unreachable came back translated to the legacy host: {refused:?}\n{}",
        gw.log_text()
    );
    gw.stop();
}

#[test]
fn path_mtu_discovery_works_across_the_gateway() {
    path_mtu_discovery_works_across_the_gateway_on(&[]);
}

/// The same with the userspace engine forwarding (and generating the ICMP) itself.
#[test]
fn path_mtu_discovery_on_the_userspace_engine() {
    path_mtu_discovery_works_across_the_gateway_on(&["--engine", "userspace"]);
}

fn path_mtu_discovery_works_across_the_gateway_on(engine: &[&str]) {
    common::require_root("e2e_icmp");
    let mut config = common::demo_config();
    // The legacy side takes at most 1400 bytes: the server's full-size segments must be
    // answered with fragmentation-needed, and its TCP must shrink them.
    let legacy = config.ports.iter_mut().find(|p| p.name == "legacy0").unwrap();
    legacy.mtu = 1400;
    config.validate().unwrap();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let mut gw = site.start_gateway_with("gw", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    let iperf_server = common::iperf3_server(lab);
    // -R: the server sends, in full-size segments, towards the legacy host.
    let out = common::iperf3_client(lab, &["-R"]).wait_with_output().unwrap();
    let _ = iperf_server.wait();
    let (received, report) = common::iperf3_received(&out);
    std::thread::sleep(Duration::from_millis(400)); // a counters refresh
    let stats = std::fs::read_to_string(&gw.stats).unwrap();
    let too_big: u64 =
        stats.lines().find_map(|l| l.strip_prefix("slow.drop_too_big ")).map_or(0, |v| v.parse().unwrap());
    eprintln!(
        "icmp_e2e: {:.1} MB received through a 1400-byte MTU; {too_big} frame(s) answered as too big",
        received / 1e6
    );
    assert!(out.status.success() && received > 1e6, "the transfer completed: {report}\n{}", gw.log_text());
    assert!(too_big >= 1, "fragmentation-needed was sent:\n{stats}");
}
