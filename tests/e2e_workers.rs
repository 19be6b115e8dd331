//! The userspace engine on two workers, with real hosts. Every veth has two queues, so the
//! hosts' flows spread over both; each worker owns one queue of each port and its share of the
//! pool's port blocks. Eight legacy hosts (addresses of one namespace) reach the extranet
//! server through NAPT: their sessions land on both workers, answers that arrive on the other
//! worker's queue are handed to the owner, and every connection completes. The session list
//! the API gives is both workers' together. Also: the XDP engine's slow path on two-queue
//! ports (one worker, both queues), and the refusals.

mod common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    process::Stdio,
};

use hutong::lab::http::HttpServer;

const HOSTS: u8 = 8;

fn pool_config() -> dataplane::Config {
    common::napt_config("198.18.30.0/30")
}

/// Adds legacy hosts .10 .. .10 + HOSTS - 1 (the first exists) to the legacy namespace.
fn add_hosts(lab: &hutong::lab::DemoLab) -> Vec<String> {
    let base = lab.addrs.legacy_host.addr().octets();
    (0..HOSTS)
        .map(|i| {
            let a = format!("{}.{}.{}.{}", base[0], base[1], base[2], base[3] + i);
            if i > 0 {
                let out = lab
                    .legacy
                    .command("ip")
                    .args(["addr", "add", &format!("{a}/32"), "dev", "eth0"])
                    .output();
                assert!(out.unwrap().status.success(), "adding {a}");
            }
            a
        })
        .collect()
}

fn curl_from(lab: &hutong::lab::DemoLab, source: &str, url: &str) -> String {
    let out = lab
        .legacy
        .command("curl")
        .args(["-sS", "--max-time", "5", "--interface", source, url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Sends one UDP datagram from each of 8 ports of each host to the extranet server, which
/// answers each: how many arrived there, and how many answers came back.
fn udp_exchanges(lab: &hutong::lab::DemoLab, hosts: &[String]) -> (usize, usize) {
    use std::net::UdpSocket;
    use std::time::Duration;
    let to = SocketAddr::new(lab.addrs.server.addr().into(), 7777);
    let server = lab.extranet.run(|| UdpSocket::bind(to)).unwrap().unwrap();
    server.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let clients: Vec<UdpSocket> = lab
        .legacy
        .run(|| {
            hosts
                .iter()
                .flat_map(|h| {
                    (0..8).map(move |_| UdpSocket::bind((h.parse::<IpAddr>().unwrap(), 0)).unwrap())
                })
                .collect()
        })
        .unwrap();
    for c in &clients {
        c.send_to(b"one datagram", to).unwrap();
    }
    let mut arrived = 0;
    let mut buf = [0u8; 64];
    while let Ok((_, from)) = server.recv_from(&mut buf) {
        arrived += 1;
        server.send_to(b"one answer", from).unwrap();
    }
    let answered = clients
        .iter()
        .filter(|c| {
            c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            c.recv(&mut buf).is_ok()
        })
        .count();
    (arrived, answered)
}

fn metric(lab: &hutong::lab::DemoLab, name: &str, worker: &str) -> f64 {
    let m = common::Metrics::scrape(&lab.gateway);
    m.get(name, &[("worker", worker)]).unwrap_or_else(|| panic!("no {name}{{worker={worker}}}:\n{}", m.text))
}

#[test]
fn two_workers_share_the_sessions_and_hand_each_other_their_packets() {
    common::require_root("e2e_workers");
    let config = pool_config();
    let site = common::Site::build_with_queues(&config, 2);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway_with("gw-workers", &["--engine", "userspace", "--workers", "2"]);
    gw.wait_ready(&|| Ok(())).unwrap();
    assert!(gw.log_text().contains("(userspace engine, 2 slow-path worker(s))"), "{}", gw.log_text());
    let hosts = add_hosts(lab);
    let url = format!("http://{}/", a.server.addr());
    let (arrived, answered) = udp_exchanges(lab, &hosts);
    assert_eq!((arrived, answered), (64, 64), "every datagram crossed, both ways");
    for round in 0..3 {
        for h in &hosts {
            let body = curl_from(lab, h, &url);
            assert!(
                body.starts_with("hello from the extranet server; you are 198.18.30."),
                "round {round}, host {h}: {body:?}\n{}",
                gw.log_text()
            );
        }
    }
    let seen: BTreeSet<IpAddr> = server.seen().into_iter().collect();
    assert!(!seen.is_empty() && seen.iter().all(|s| s.to_string().starts_with("198.18.30.")), "{seen:?}");

    // A bulk TCP stream through NAPT, its segments and ACKs over both queues.
    let _iperf_server = common::iperf3_server(lab);
    let out = common::iperf3_client(lab, &["-b", "50M", "-B", &hosts[3]]).wait_with_output().unwrap();
    let (received, report) = common::iperf3_received(&out);
    assert!(received > 1e6, "iperf3 through two workers moved {received} bytes:\n{report}");
    eprintln!("workers_e2e: iperf3 moved {:.1} MB through NAPT on two workers", received / 1e6);

    // The sessions, both workers' in one list.
    let hutong = env!("CARGO_BIN_EXE_hutong");
    let out = lab
        .gateway
        .command(hutong)
        .args(["sessions", "--proto", "tcp", "--json", "--limit", "1000"])
        .output()
        .unwrap();
    let page: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let inside: BTreeSet<String> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["inside"].as_str().unwrap().split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(inside, hosts.iter().cloned().collect(), "every host's sessions, from both workers: {page}");
    let keys: Vec<u64> =
        page["sessions"].as_array().unwrap().iter().map(|s| s["key"].as_u64().unwrap_or(0)).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "one order, as one engine gives it");

    std::thread::sleep(std::time::Duration::from_millis(500)); // one counters refresh
    let (p0, p1) =
        (metric(lab, "hutong_worker_packets_total", "0"), metric(lab, "hutong_worker_packets_total", "1"));
    let handed =
        metric(lab, "hutong_worker_handoffs_total", "0") + metric(lab, "hutong_worker_handoffs_total", "1");
    eprintln!("workers_e2e: worker 0 processed {p0} packets, worker 1 {p1}; {handed} handed to the other");
    assert!(p0 > 0.0 && p1 > 0.0, "both workers worked: {p0} and {p1}");
    assert!(handed > 0.0, "some answers arrived on the other worker's queue and were handed over");
    gw.stop();
}

#[test]
fn the_xdp_engines_slow_path_serves_every_queue() {
    // Before, only queue 0 had a socket: a new session whose first packet came in on queue 1
    // went to the kernel instead, and got nowhere.
    common::require_root("e2e_workers");
    let config = pool_config();
    let site = common::Site::build_with_queues(&config, 2);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let _server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway("gw-queues");
    gw.wait_ready(&|| Ok(())).unwrap();
    let url = format!("http://{}/", a.server.addr());
    let hosts = add_hosts(lab);
    for h in &hosts {
        let body = curl_from(lab, h, &url);
        assert!(body.starts_with("hello from the extranet server; you are 198.18.30."), "host {h}: {body:?}");
    }
    // Flows that never retry (a TCP connection whose SYN is lost tries again, often on the
    // other queue): 64 UDP exchanges, one datagram each way.
    let (arrived, answered) = udp_exchanges(lab, &hosts);
    assert_eq!((arrived, answered), (64, 64), "every datagram crossed, both ways");
    gw.stop();
}

#[test]
fn workers_are_refused_where_they_cannot_run() {
    common::require_root("e2e_workers");
    let site = common::Site::build(&pool_config());
    // One queue per port, two workers.
    let mut gw = site.start_gateway_with("gw-1q", &["--engine", "userspace", "--workers", "2"]);
    let err = gw.wait_ready(&|| Ok(())).expect_err("two workers need two queues");
    assert!(format!("{err:#}").contains("has 1 receive queue(s); 2 workers need 2"), "{err:#}");
    // A refused start undoes itself: nothing left attached or pinned, and nothing recorded as
    // the running config (a later rollback would apply a version that never ran).
    assert!(!gw.pin_dir.exists(), "{} left behind by a refused start", gw.pin_dir.display());
    let current = site.work.path().join("state").join("current");
    assert!(
        !current.exists(),
        "a refused start recorded its config as {:?}",
        std::fs::read_to_string(&current)
    );
    // The XDP engine's slow path is one worker.
    let mut gw = site.start_gateway_with("gw-xdp2", &["--workers", "2"]);
    let err = gw.wait_ready(&|| Ok(())).expect_err("--workers is for the userspace engine");
    assert!(format!("{err:#}").contains("--workers is for --engine userspace"), "{err:#}");
}
