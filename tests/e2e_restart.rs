//! Hitless restart, with real hosts: a continuous ping crosses the XDP gateway while
//! `hutong gateway run` is stopped with SIGUSR1 ("keep forwarding") and started again over the
//! same pins. The flow must not lose packets and must still be translated the same way. Through
//! NAPT, an established TCP connection must go on across the restart with the same mapping.

mod common;

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use hutong::lab::http::HttpServer;
use nix::sys::signal::Signal;

/// Pings in the flow, 10 ms apart: about 4 s of traffic around the restart.
const PINGS: u32 = 400;
/// Packets the flow may lose across the restart. The pinned program keeps forwarding while no
/// process runs, so none should be lost; one is allowed for a reply crossing the link swap.
const MAX_LOST: u32 = 1;

#[test]
fn a_flow_survives_a_keep_forwarding_restart() {
    common::require_root("e2e_restart");
    let config = common::demo_config();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let server = HttpServer::start(&lab.extranet, SocketAddr::new(IpAddr::V4(a.server.addr()), 80)).unwrap();
    let url = format!("http://{}/", a.server.addr());
    let fetch = || {
        let out = lab
            .legacy
            .command("curl")
            .args(["-sS", "--max-time", "5", &url])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let no_interrupt = || Ok(());

    // An address that was on a port before the gateway started (an engineer's, a lab's) is
    // not the gateway's to take off.
    let uplink = config.ports.iter().find(|p| p.name == "uplink0").unwrap();
    let before_us = uplink.addresses[0].to_string();
    let ip = |args: &[&str]| lab.gateway.command("ip").args(args).output().unwrap();
    assert!(ip(&["addr", "add", &before_us, "dev", "uplink0"]).status.success());
    let mut first = site.start_gateway("first");
    first.wait_ready(&no_interrupt).unwrap();
    // A second run of the same gateway (same PID file) is refused before it touches anything.
    let mut duplicate = site.start_gateway("duplicate");
    let err = duplicate.wait_ready(&no_interrupt).unwrap_err().to_string();
    assert!(err.contains("this gateway is already running"), "{err}");
    let before = fetch();
    assert_eq!(before, format!("hello from the extranet server; you are {}", a.legacy_host_translated));

    // The flow: one ping every 10 ms, counted at the end.
    let ping = lab
        .legacy
        .command("ping")
        .args(["-n", "-q", "-i", "0.01", "-W", "1", "-c", &PINGS.to_string(), &a.server.addr().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));

    // Stop for an upgrade: the process exits, the program keeps forwarding from its pins.
    let status = first.signal_and_wait(Signal::SIGUSR1).expect("the gateway exits on SIGUSR1");
    assert!(status.success(), "exit status {status}:\n{}", first.log_text());
    assert!(first.log_text().contains("keeps forwarding"), "{}", first.log_text());
    assert!(!first.pid_file.exists(), "the PID file goes with the process");
    let pins = first.pin_dir.clone();
    assert!(pins.join("link-legacy0").exists() && pins.join("link-uplink0").exists(), "links stay pinned");
    eprintln!(
        "restart: gateway stopped with SIGUSR1; forwarding from {} for 1 s without a process",
        pins.display()
    );
    std::thread::sleep(Duration::from_secs(1));

    // Start again: it adopts the pinned maps and swaps its program into the pinned links.
    let mut second = site.start_gateway("second");
    second.wait_ready(&no_interrupt).unwrap();
    let log = second.log_text();
    assert!(log.contains("adopting the pinned maps"), "{log}");
    assert!(log.contains("took over the running program on legacy0"), "{log}");

    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("ping said: {text}"));
    let nums: Vec<u32> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    let (sent, received) = (nums[0], nums[1]);
    eprintln!("restart: {line}");
    assert_eq!(sent, PINGS);
    assert!(sent - received <= MAX_LOST, "lost {} of {sent} across the restart", sent - received);

    // Still translated the same way.
    assert_eq!(fetch(), before);
    assert!(
        server.seen().iter().all(|ip| *ip == IpAddr::V4(a.legacy_host_translated)),
        "{:?}",
        server.seen()
    );

    // A full stop removes the pins, detaches, and takes off the addresses it put on the ports
    // (also those the first process put there: the record is in the state directory), and
    // only those.
    second.stop();
    assert!(!pins.exists(), "{} left behind", pins.display());
    let on =
        |port: &str| String::from_utf8_lossy(&ip(&["-o", "addr", "show", "dev", port]).stdout).to_string();
    for port in config.ports.iter().filter(|p| p.vlan.is_none()) {
        for a in &port.addresses {
            let there = on(&port.name).contains(&format!(" {a} "));
            let expected = a.to_string() == before_us;
            assert_eq!(there, expected, "{a} on {} after a full stop:\n{}", port.name, on(&port.name));
        }
    }
    drop(first);
    drop(site);
}

/// Round trips of the NAPT test's TCP connection, 10 ms apart.
const ROUND_TRIPS: u32 = 300;

#[test]
fn an_established_napt_connection_survives_a_keep_forwarding_restart() {
    common::require_root("e2e_restart");
    let config = common::napt_config("198.18.30.0/31");
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let server_addr = SocketAddr::new(IpAddr::V4(lab.addrs.server.addr()), 7000);
    let no_interrupt = || Ok(());
    let mut first = site.start_gateway("napt-first");
    first.wait_ready(&no_interrupt).unwrap();

    // An echo server in the extranet: it records who connected and echoes one byte at a time.
    let listener = lab.extranet.run(|| TcpListener::bind(server_addr)).unwrap().unwrap();
    // It stops when the client goes quiet (its last FIN may not cross a stopped gateway).
    let echo = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 1];
        while conn.read_exact(&mut b).is_ok() && conn.write_all(&b).is_ok() {}
        peer
    });
    // A refused connection first takes the host's first outside port, so the one under test
    // gets another: a new process that forgot the sessions would map it to the first port again,
    // and the server would answer that with a reset.
    let refused = SocketAddr::new(server_addr.ip(), 7001);
    let r = lab.legacy.run(|| TcpStream::connect_timeout(&refused, Duration::from_secs(2))).unwrap();
    assert!(r.is_err(), "nothing listens on {refused}");
    let mut client =
        lab.legacy.run(|| TcpStream::connect_timeout(&server_addr, Duration::from_secs(3))).unwrap().unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let local = client.local_addr().unwrap();

    // One byte out and back every 10 ms, around the restart.
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU32::new(0));
    let (flag, count) = (done.clone(), answered.clone());
    let talker = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        for i in 0..ROUND_TRIPS {
            b[0] = i as u8;
            client.write_all(&b).map_err(|e| format!("write {i}: {e}"))?;
            client.read_exact(&mut b).map_err(|e| format!("read {i}: {e}"))?;
            if b[0] != i as u8 {
                return Err(format!("round trip {i} came back as {}", b[0]));
            }
            count.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
        flag.store(true, Ordering::Relaxed);
        Ok::<_, String>(())
    });
    std::thread::sleep(Duration::from_millis(600));
    let status = first.signal_and_wait(Signal::SIGUSR1).expect("the gateway exits on SIGUSR1");
    assert!(status.success(), "exit status {status}:\n{}", first.log_text());
    let during_gap = answered.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(700));
    let after_gap = answered.load(Ordering::Relaxed);
    eprintln!("restart (NAPT): {} round trips while no process ran", after_gap - during_gap);
    assert!(
        after_gap > during_gap + 20,
        "the program forwards the session with no process: {during_gap} -> {after_gap}"
    );

    let mut second = site.start_gateway("napt-second");
    second.wait_ready(&no_interrupt).unwrap();
    let log = second.log_text();
    assert!(log.contains("adopted 2 flow(s) of established NAT sessions"), "{log}");
    let result = talker.join().unwrap();
    assert!(result.is_ok() && done.load(Ordering::Relaxed), "the connection broke: {result:?}\n{log}");
    let peer = echo.join().unwrap();
    eprintln!(
        "restart (NAPT): {ROUND_TRIPS}/{ROUND_TRIPS} round trips of {local} across the restart, one connection from {peer}"
    );
    let pool: ipnet::Ipv4Net = "198.18.30.0/31".parse().unwrap();
    assert!(matches!(peer.ip(), IpAddr::V4(a) if pool.contains(&a)) && peer.port() != 1024, "{peer}");
    let stats = std::fs::read_to_string(&second.stats).unwrap();
    assert!(stats.lines().any(|l| l.starts_with("flows.active ") && l != "flows.active 0"), "{stats}");
    second.stop();
    drop(first);
    drop(site);
}

/// A netmapped host in a legacy network that also uses NAPT (the shipped conversions.yaml's
/// shape: netmap for part of the network, NAPT for all of it) stays in the program: its flow
/// crosses a keep-forwarding restart, when no slow path runs, without loss. Before, the NAPT
/// rule sent the whole network through the slow path, and about half the pings of every
/// restart were lost.
#[test]
fn a_netmapped_host_beside_napt_keeps_its_flow_across_a_restart() {
    common::require_root("e2e_restart");
    let mut config = common::demo_config();
    let napt = common::napt_config("198.18.30.0/30");
    config.nat_pools = napt.nat_pools.clone();
    // After the netmap rules, as the plan compiler orders them: NAPT for the whole network.
    let at = config.policies.iter().rposition(|r| r.vrf == 1).unwrap() + 1;
    let mut rule = napt.policies[0].clone();
    rule.src = Some("10.20.0.0/16".parse().unwrap());
    config.policies.insert(at, rule);
    config.validate().unwrap();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let mut first = site.start_gateway("first");
    first.wait_ready(&|| Ok(())).unwrap();
    let log = first.log_text();
    assert!(
        !log.contains("VRF 1 takes the slow path") && log.contains("VRF 1 is a NAPT pool's inside"),
        "{log}"
    );
    let ping = lab
        .legacy
        .command("ping")
        .args(["-n", "-q", "-i", "0.01", "-W", "1", "-c", "300", &lab.addrs.server.addr().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let status = first.signal_and_wait(Signal::SIGUSR1).expect("the gateway exits on SIGUSR1");
    assert!(status.success(), "{}", first.log_text());
    std::thread::sleep(Duration::from_secs(1));
    let mut second = site.start_gateway("second");
    second.wait_ready(&|| Ok(())).unwrap();
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("packets transmitted")).unwrap_or_else(|| panic!("{text}"));
    let nums: Vec<u32> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
    eprintln!("restart (netmap beside NAPT): {line}");
    assert!(nums[0] - nums[1] <= MAX_LOST, "lost {} of {} across the restart", nums[0] - nums[1], nums[0]);
    second.stop();
}
