//! Hitless restart, with real hosts: a continuous ping crosses the XDP gateway while
//! `hutong gateway run` is stopped with SIGUSR1 ("keep forwarding") and started again over the
//! same pins. The flow must not lose packets and must still be translated the same way.

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    process::Stdio,
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
    common::require_root("restart");
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

    // A full stop removes the pins and detaches.
    second.stop();
    assert!(!pins.exists(), "{} left behind", pins.display());
    drop(first);
    drop(site);
}
