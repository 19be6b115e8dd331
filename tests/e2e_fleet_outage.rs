//! The fleet through etcd's outages, with a real 3-member etcd cluster and three real gateways
//! in namespaces (`common::fleet`): the leader dies during a push, and the push lands whole or
//! not at all; every member dies, and the gateways forward on (no ping lost); the members
//! return, and the gateways take the next push; a gateway cut off from etcd misses a push, and
//! takes it when it can reach etcd again.

mod common;

use std::time::Duration;

use common::fleet::{Fleet, GATEWAYS, example, no_ping_at, no_ping_at_changsha};

#[test]
fn gateways_forward_through_etcd_outages_and_reconcile_when_it_returns() {
    let mut f = Fleet::build(3);
    assert!(f.push(&example(), &["--no-wait"]).status.success());
    f.start_all();
    f.wait_acked(&GATEWAYS, 1);

    // --- the leader dies during a push: it lands whole, or not at all ------------------------
    let leader = f.lab.etcd.leader().expect("the cluster has a leader");
    let file = f.plans.path().join("no-ping.yaml");
    std::fs::write(&file, no_ping_at_changsha()).unwrap();
    let push = f
        .lab
        .hutong(common::fleet::hutong_bin(), &["push", file.to_str().unwrap(), "--settle", "1"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    f.lab.etcd.kill(leader);
    let out = push.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("push with the leader (member {leader}) killed: {}\n{said}", out.status);
    let st = f.status();
    let desired: Vec<u64> = ["gw-changsha", "gw-furong"]
        .iter()
        .map(|id| {
            st["gateways"].as_array().unwrap().iter().find(|r| r["gateway"] == *id).unwrap()["desired"]
                .as_u64()
                .unwrap()
        })
        .collect();
    if out.status.success() {
        assert_eq!(desired, [2, 2], "a push that says it landed is in the store: {st:#}");
    } else {
        // Not landed, or landed without the command seeing it: never half.
        assert!(desired == [1, 1] || desired == [2, 2], "half a push in the store: {st:#}");
        assert!(!said.trim().is_empty(), "a failed push says why");
    }
    let pushed = st["push"].as_u64().unwrap();
    f.wait_acked(&["gw-changsha", "gw-furong"], pushed);
    f.lab.etcd.restart(leader).unwrap();
    f.lab.etcd.wait_healthy(Duration::from_secs(30)).unwrap();

    // --- every member down: forwarding goes on ---------------------------------------------
    f.lab.etcd.kill_all();
    std::thread::sleep(Duration::from_secs(3));
    let zhuzhou = f.pings(2, 20);
    assert_eq!(zhuzhou, 20, "no ping lost through gw-zhuzhou with etcd down:\n{}", f.lab.log(2));
    let expect_changsha = if pushed >= 2 { 0 } else { 20 };
    assert_eq!(f.pings(0, 20), expect_changsha, "gw-changsha keeps its config with etcd down");
    for k in 0..3 {
        let log = f.lab.log(k);
        assert!(log.contains("the fleet store is unreachable"), "the agent says so once:\n{log}");
        assert_eq!(log.matches("the fleet store is unreachable").count(), 1, "said once per outage:\n{log}");
    }

    // --- they return: the gateways take the next push ---------------------------------------
    f.lab.etcd.restart_all().unwrap();
    // (Changsha and Furong as before, Zhuzhou denies ICMP now.)
    let next = no_ping_at(&no_ping_at_changsha(), "Zhuzhou");
    let out = f.push(&next, &["--settle", "1", "--ack-timeout", "90"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    f.wait_acked(&["gw-zhuzhou"], pushed + 1);
    assert_eq!(f.pings(2, 3), 0, "gw-zhuzhou took the push made after etcd came back");

    // --- one gateway cut off misses a push, then catches up ----------------------------------
    let gw_ns = &f.lab.sites[1].lab.gateway;
    let mgmt0 = f.lab_link_down(1);
    let out = f.push(&example(), &["--no-wait"]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(f.row("gw-furong")["applied"].as_u64(), Some(pushed + 2), "cut off, it cannot have it yet");
    let _ = gw_ns;
    f.lab_link_up(1, mgmt0);
    f.wait_acked(&GATEWAYS, pushed + 2);
    for k in 0..3 {
        assert_eq!(f.pings(k, 3), 3, "push {} allows ICMP everywhere again", pushed + 2);
    }
}
