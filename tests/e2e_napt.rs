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
    common::require_root("e2e_napt");
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
    common::require_root("e2e_napt");
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
    common::require_root("e2e_napt");
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
    common::require_root("e2e_napt");
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

#[test]
fn fragments_out_of_order_cross_napt_both_ways() {
    fragments_out_of_order(&[]);
}

#[test]
fn fragments_out_of_order_on_the_userspace_engine() {
    fragments_out_of_order(&["--engine", "userspace"]);
}

/// A UDP datagram as two IPv4 fragments, `(first, later)`: the first carries the UDP header and
/// 16 bytes, the later one the rest (offset 24 bytes).
fn two_fragments(
    macs: ([u8; 6], [u8; 6]),
    (src, sport): (std::net::Ipv4Addr, u16),
    (dst, dport): (std::net::Ipv4Addr, u16),
    id: u16,
    payload: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let mut whole = Vec::new();
    etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport)
        .write(&mut whole, payload)
        .unwrap();
    let udp = &whole[20..];
    let frame = |offset: usize, part: &[u8], more: bool| {
        let mut h = etherparse::Ipv4Header::new(
            part.len() as u16,
            64,
            etherparse::IpNumber::UDP,
            src.octets(),
            dst.octets(),
        )
        .unwrap();
        h.identification = id;
        h.more_fragments = more;
        h.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut v = Vec::new();
        etherparse::Ethernet2Header {
            destination: macs.1,
            source: macs.0,
            ether_type: etherparse::EtherType::IPV4,
        }
        .write(&mut v)
        .unwrap();
        h.write(&mut v).unwrap();
        v.extend_from_slice(part);
        v
    };
    (frame(0, &udp[..24], true), frame(24, &udp[24..], false))
}

/// RFC 4787 REQ-14 with real hosts: a datagram whose later fragment is sent before its first
/// crosses NAPT outbound, and the server's answer, fragmented the same way, crosses back. The
/// receivers' kernels reassemble each: a datagram arrives whole or not at all. The gateway
/// counts the fragments it held.
fn fragments_out_of_order(engine: &[&str]) {
    use std::net::{Ipv4Addr, UdpSocket};
    common::require_root("e2e_napt");
    let config = common::napt_config("198.18.30.1/32");
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let mut gw = site.start_gateway_with("gw", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    let (host, server) = (a.legacy_host.addr(), a.server.addr());
    let timeout = Some(std::time::Duration::from_secs(3));
    let listener = lab.extranet.run(|| UdpSocket::bind((server, 9999))).unwrap().unwrap();
    listener.set_read_timeout(timeout).unwrap();
    let client = lab.legacy.run(|| UdpSocket::bind((host, 40000))).unwrap().unwrap();
    client.set_read_timeout(timeout).unwrap();
    let mac = |ns: &hutong::lab::Netns, name: &str| {
        site.rt.block_on(async {
            let h = ns.netlink().unwrap();
            dataplane::netlink::link(&h, name).await.unwrap()
        })
    };
    let (legacy_eth, gw_legacy) = (mac(&lab.legacy, "eth0"), mac(&lab.gateway, &a.legacy_port));
    let (ext_eth, gw_uplink) = (mac(&lab.extranet, "eth0"), mac(&lab.gateway, &a.uplink_port));
    let send = |ns: &hutong::lab::Netns, port: dataplane::xdp::tables::PortHandle, frames: [&[u8]; 2]| {
        ns.run(|| {
            let mut p = dataplane::port::af_packet::AfPacketPort::open("eth0", port.ifindex, None).unwrap();
            for f in frames {
                assert!(p.send(f), "sent");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
        .unwrap();
    };
    // Warm the neighbors (the gateway's ARP for the server and the host), so no fragment waits
    // for a MAC: one whole datagram each way.
    client.send_to(b"hello", (server, 9999)).unwrap();
    let mut buf = [0u8; 256];
    let (_, mapping) = listener.recv_from(&mut buf).expect("a whole datagram crosses first");
    assert_eq!(mapping.ip(), IpAddr::V4(Ipv4Addr::new(198, 18, 30, 1)));
    listener.send_to(b"hi", mapping).unwrap();
    client.recv_from(&mut buf).expect("and back");

    let out: Vec<u8> = (0..64u8).collect();
    let (first, later) =
        two_fragments((legacy_eth.mac, gw_legacy.mac), (host, 40000), (server, 9999), 0x4242, &out);
    send(&lab.legacy, legacy_eth, [&later, &first]);
    let (n, from) =
        listener.recv_from(&mut buf).expect("the datagram sent later fragment first arrives whole");
    assert_eq!((&buf[..n], from), (&out[..], mapping), "{}", gw.log_text());

    let back: Vec<u8> = (100..164u8).collect();
    let std::net::SocketAddr::V4(m) = mapping else { unreachable!() };
    let (first, later) =
        two_fragments((ext_eth.mac, gw_uplink.mac), (server, 9999), (*m.ip(), m.port()), 0x5353, &back);
    send(&lab.extranet, ext_eth, [&later, &first]);
    let (n, from) = client.recv_from(&mut buf).expect("the answer, later fragment first, arrives whole");
    assert_eq!((&buf[..n], from), (&back[..], std::net::SocketAddr::from((server, 9999))));
    std::thread::sleep(std::time::Duration::from_millis(400)); // a counters refresh
    let m = common::Metrics::scrape(&lab.gateway);
    let held = m.get("hutong_packets_total", &[("stat", "fragments_held")]).unwrap_or(0.0);
    assert!(held >= 2.0, "the gateway held both early fragments: {held}");
    gw.stop();
}
