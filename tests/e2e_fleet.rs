//! The fleet with real gateways: three `hutong gateway run --fleet` processes of the fleet
//! example (configs/examples/fleet.yaml), each in its own namespaces with its legacy host and
//! extranet server, and a real etcd in a management namespace (`hutong::lab::fleet`). Pushes go
//! through the `hutong push` command; what the gateways do is checked with real pings.
//!
//! Here: a push reaches all three and their traffic changes as the plan says, in two waves; a
//! gateway that cannot apply NACKs and the next wave waits; an agent SIGKILLed mid-apply
//! converges once restarted. etcd's outages: `e2e_fleet_outage.rs`.

mod common;

use std::time::Duration;

use common::fleet::{Fleet, GATEWAYS, example, hutong_bin, no_ping_at_changsha};
use nix::sys::signal::Signal;

#[test]
fn a_push_reaches_three_gateways_and_their_traffic_follows_the_plan_wave_by_wave() {
    let mut f = Fleet::build(1);
    assert!(f.push(&example(), &["--no-wait"]).status.success());
    // First start: each gateway takes its config from the fleet.
    f.start_all();
    f.wait_acked(&GATEWAYS, 1);
    for (k, id) in GATEWAYS.iter().enumerate() {
        assert_eq!(f.pings(k, 3), 3, "{id} forwards on push 1:\n{}", f.lab.log(k));
    }
    // Changsha denies ICMP (for itself and Furong below it), in two waves: a canary, the rest.
    let out = f.push(&no_ping_at_changsha(), &["--wave", "1", "--wave", "rest", "--settle", "1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("wave 1: gw-changsha") && text.contains("wave 2: gw-furong"), "{text}");
    assert!(text.contains("rollout of push 2: done (2 of 2 wave(s) written)"), "{text}");
    f.wait_acked(&["gw-changsha", "gw-furong"], 2);
    assert_eq!(f.pings(0, 3), 0, "gw-changsha denies ICMP now");
    assert_eq!(f.pings(1, 3), 0, "gw-furong, below Changsha, denies ICMP now");
    assert_eq!(f.pings(2, 3), 3, "gw-zhuzhou is not under Changsha");
    let row = f.row("gw-zhuzhou");
    assert_eq!((row["desired"].as_u64(), row["applied"].as_u64()), (Some(1), Some(1)), "{row}");
    // The table an operator reads.
    let out = f.hutong(&["fleet", "status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    for id in GATEWAYS {
        assert!(
            table.lines().any(|l| l.starts_with(id) && l.contains("ack") && l.contains("in-sync")),
            "{table}"
        );
    }
}

#[test]
fn a_gateway_that_cannot_apply_nacks_with_the_reason_and_the_next_wave_waits() {
    let mut f = Fleet::build(1);
    assert!(f.push(&example(), &["--no-wait"]).status.success());
    f.start_all();
    f.wait_acked(&GATEWAYS, 1);
    // Zhuzhou's uplink renamed: that gateway has no such interface. Furong's netmap moves.
    let text = example()
        .replacen(
            "name: uplink0, role: extranet, address: 198.19.1.1/24",
            "name: uplink9, role: extranet, address: 198.19.1.1/24",
            1,
        )
        .replacen("to: 198.18.70.0/24", "to: 198.18.72.0/24", 1);
    let out = f.push(&text, &["--wave", "prefecture", "--wave", "rest", "--settle", "1"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a halted rollout fails the push: {said}");
    assert!(
        said.contains("halted") && said.contains("gw-zhuzhou") && said.contains("ports cannot change"),
        "{said}"
    );
    let z = f.row("gw-zhuzhou");
    assert_eq!(z["state"], "nack", "{z}");
    assert_eq!(z["applied"].as_u64(), Some(1), "it runs on push 1: {z}");
    let fu = f.row("gw-furong");
    assert_eq!((fu["desired"].as_u64(), fu["staged"].as_u64()), (Some(1), Some(2)), "wave 2 waits: {fu}");
    assert_eq!(f.pings(2, 3), 3, "the NACKing gateway forwards on its old config");
    // Abort, then push the fix: every gateway takes it.
    assert!(f.hutong(&["rollout", "abort"]).status.success());
    let fixed = example().replacen("to: 198.18.70.0/24", "to: 198.18.72.0/24", 1);
    assert!(f.push(&fixed, &["--settle", "1"]).status.success());
    // Furong gets its netmap, Zhuzhou its old uplink back; Changsha had no change.
    f.wait_acked(&["gw-furong", "gw-zhuzhou"], 3);
    f.wait_acked(&["gw-changsha"], 1);
}

#[test]
fn an_agent_killed_mid_apply_converges_once_restarted() {
    let mut f = Fleet::build(1);
    assert!(f.push(&example(), &["--no-wait"]).status.success());
    f.start_all();
    f.wait_acked(&GATEWAYS, 1);
    // Push, and SIGKILL gw-changsha while it applies (the push is written; its agent is told).
    assert!(f.push(&no_ping_at_changsha(), &["--no-wait"]).status.success());
    std::thread::sleep(Duration::from_millis(30));
    let gw = f.lab.sites[0].gateway.as_mut().unwrap();
    gw.signal_and_wait(Signal::SIGKILL).expect("SIGKILL ends it");
    // Restarted: it starts from its state directory (whatever it had recorded) and reconciles.
    f.lab.start(0, hutong_bin()).unwrap();
    f.lab.sites[0].gateway.as_mut().unwrap().wait_ready(&|| Ok(())).unwrap();
    f.wait_acked(&GATEWAYS[..2], 2);
    assert_eq!(f.pings(0, 3), 0, "the restarted gateway runs push 2 (no ICMP)");
    let log = f.lab.log(0);
    assert!(log.contains("starting on config version") || log.contains("first start"), "{log}");
}

#[test]
fn the_fleet_demo_passes() {
    common::require_root("e2e_fleet");
    let out =
        std::process::Command::new(common::fleet::hutong_bin()).args(["demo", "--fleet"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    assert!(out.status.success(), "hutong demo --fleet failed");
    assert!(text.contains("demo passed"), "{text}");
    // Both waves were shown, and every row of the traffic table held.
    assert!(text.contains("wave 1: gw-changsha") && text.contains("wave 2: gw-furong"), "{text}");
    assert_eq!(text.matches("[ ok ]").count(), 12, "{text}");
}
