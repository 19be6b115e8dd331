//! A pin directory holds a gateway's forwarding state, which a keep-forwarding restart adopts. It
//! must never be adopted by another gateway (another namespace's), nor written by a second
//! process of the same gateway; and pins left by a killed gateway over interfaces that were
//! since recreated must not keep the next start from forwarding.

mod common;

use std::time::Duration;

use nix::sys::signal::Signal;

fn state_files(site: &common::Site) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(site.work.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_pin_directory_belongs_to_one_gateway_in_one_namespace() {
    common::require_root("e2e_pin_dir");
    let config = common::demo_config();
    let a = common::Site::build(&config);
    let b = common::Site::build(&config);
    let mut gw_a = a.start_gateway("a");
    gw_a.wait_ready(&|| Ok(())).unwrap();
    assert_eq!(common::pings(&a, 3), 3, "{}", gw_a.log_text());
    let shared = gw_a.pin_dir.to_str().unwrap().to_string();

    // Another namespace's gateway naming A's pin directory, while A runs: refused at once.
    let mut gw_b = b.start_gateway_with("b", &["--pin-dir", &shared]);
    let err = gw_b.wait_ready(&|| Ok(())).unwrap_err().to_string();
    assert!(err.contains("in use by another running gateway"), "{err}");
    assert_eq!(common::pings(&a, 3), 3, "A forwards on");

    // The same gateway with another PID file: refused before it writes A's history.
    let before = state_files(&a);
    let mut changed = config.clone();
    changed.policies[0].name = "renamed".into();
    let other_config = a.work.path().join("other.json");
    std::fs::write(&other_config, changed.to_json()).unwrap();
    let other_pid = a.work.path().join("other.pid");
    let mut twin = hutong::lab::gateway::GatewayProcess::start(
        &a.lab.gateway,
        std::path::Path::new(env!("CARGO_BIN_EXE_hutong")),
        &other_config,
        a.work.path(),
        "twin",
        &["--pid-file", other_pid.to_str().unwrap()],
    )
    .unwrap();
    let err = twin.wait_ready(&|| Ok(())).unwrap_err().to_string();
    assert!(err.contains("in use by another running gateway"), "{err}");
    assert_eq!(state_files(&a), before, "the twin wrote nothing into A's state directory");
    assert_eq!(common::pings(&a, 3), 3, "A forwards on");

    // A stops but keeps forwarding from its pins: B may still not adopt them.
    assert!(gw_a.signal_and_wait(Signal::SIGUSR1).is_some_and(|s| s.success()));
    let mut gw_b = b.start_gateway_with("b2", &["--pin-dir", &shared]);
    let err = gw_b.wait_ready(&|| Ok(())).unwrap_err().to_string();
    assert!(err.contains("forwarding state of another gateway"), "{err}");
    assert_eq!(common::pings(&a, 3), 3, "A's program still forwards A's traffic");
    // A takes its pins back.
    let mut gw_a = a.start_gateway("a-again");
    gw_a.wait_ready(&|| Ok(())).unwrap();
    assert!(gw_a.log_text().contains("adopting the pinned maps"), "{}", gw_a.log_text());
    assert_eq!(common::pings(&a, 3), 3);
    gw_a.stop();
    assert!(!gw_a.pin_dir.exists(), "a full stop removes the pins, marker and all");
}

#[test]
fn pins_over_recreated_interfaces_are_replaced_not_fatal() {
    common::require_root("e2e_pin_dir");
    let config = common::demo_config();
    let site = common::Site::build(&config);
    let mut gw = site.start_gateway("first");
    gw.wait_ready(&|| Ok(())).unwrap();
    assert_eq!(common::pings(&site, 3), 3, "{}", gw.log_text());
    // Killed: the pins stay. Then the interfaces are deleted and created again, same names.
    assert!(gw.signal_and_wait(Signal::SIGKILL).is_some());
    site.rt.block_on(site.lab.recreate_links()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut gw = site.start_gateway("second");
    gw.wait_ready(&|| Ok(())).unwrap();
    let log = gw.log_text();
    assert!(log.contains("the interface was recreated"), "{log}");
    assert_eq!(common::pings(&site, 3), 3, "forwarding is back without anyone removing pins:\n{log}");
    gw.stop();
}
