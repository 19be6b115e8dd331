//! End to end, with real Linux hosts: the demo plan compiled, `hutong gateway run` (the real
//! binary) attached with XDP in its own namespace, a legacy host and an extranet server exchanging
//! ping and HTTP across it. This is the demo's own code path, asserted item by item.

mod common;

use std::{net::IpAddr, path::Path};

use dataplane::{Drop, Stat};

#[test]
fn legacy_host_reaches_the_extranet_as_its_plan_address() {
    common::require_root("e2e_demo");
    let config = common::demo_config();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let hutong = Path::new(env!("CARGO_BIN_EXE_hutong"));
    let e = rt.block_on(hutong::demo::collect(&config, hutong, &|m| eprintln!("demo_e2e: {m}"))).unwrap();
    eprintln!("demo_e2e: evidence {e:#?}");

    let plan_addr = IpAddr::V4(e.addrs.legacy_host_translated);
    assert_eq!(plan_addr.to_string(), "198.18.20.10", "the demo plan maps 10.20.0.10 to 198.18.20.10");
    // The server sees the plan address, and only it.
    assert_eq!(
        e.server_saw,
        vec![plan_addr],
        "the server must see exactly one connection, from the plan address"
    );
    // Replies reach the legacy host: every ping, and the HTTP body naming the plan address.
    assert_eq!((e.ping.sent, e.ping.received), (hutong::demo::PINGS, hutong::demo::PINGS));
    assert_eq!(e.http_body.as_deref(), Some("hello from the extranet server; you are 198.18.20.10"));
    // The gateway forwarded both directions of all of that.
    assert!(
        e.counters_allowed.stat(Stat::Forwarded) >= 2 * hutong::demo::PINGS as u64,
        "{:?}",
        e.counters_allowed
    );

    // The unmapped legacy address never got through, and the right drop counter moved.
    assert_eq!(e.unmapped_ping.received, 0);
    assert!(!e.unmapped_http_ok);
    let refused = e.counters.drop(Drop::NoTranslation) - e.counters_allowed.drop(Drop::NoTranslation);
    assert!(refused >= hutong::demo::PINGS as u64, "drop_no_translation moved by {refused}");
    assert_eq!(e.counters_allowed.drop(Drop::NoTranslation), 0, "nothing of the allowed traffic was refused");

    for (what, ok) in hutong::demo::checks(&e) {
        assert!(ok, "demo check failed: {what}");
    }

    // Nothing of the lab is left behind.
    let prefix = format!("ht{}x", std::process::id());
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
