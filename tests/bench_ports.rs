//! `hutong bench` on real ports (`--gen --dut-in --dut-out --sink`), stood in for by two veth
//! pairs in a namespace the test owns; the bench runs there, so that is where the ports come
//! from and must go back to. A port with an address is refused before anything moves; a run
//! measures every device through the borrowed ports, translated as expected; afterwards, and
//! after a run stopped half-way by SIGTERM, every port is back with its own name, up or down as
//! it was.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags};

/// Every link in the test's namespace but loopback: (name, administratively up), sorted.
fn links(rt: &tokio::runtime::Runtime, ns: &hutong::lab::Netns) -> Vec<(String, bool)> {
    rt.block_on(async {
        let h = ns.netlink().unwrap();
        let mut all = Vec::new();
        let mut msgs = h.link().get().execute();
        while let Some(m) = msgs.try_next().await.unwrap() {
            let name = m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            if let Some(name) = name.filter(|n| n != "lo") {
                all.push((name, m.header.flags.contains(LinkFlags::Up)));
            }
        }
        all.sort();
        all
    })
}

#[test]
fn the_bench_borrows_real_ports_and_gives_them_back() {
    common::require_root("bench_ports");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = hutong::lab::Netns::create(&format!("{}-ports", hutong::lab::netns::lab_tag())).unwrap();
    let tout = rt.block_on(async {
        let h = ns.netlink().unwrap();
        for (a, b) in [("tgen", "tin"), ("tout", "tsink")] {
            h.link().add(rtnetlink::LinkVeth::new(a, b).build()).execute().await.unwrap();
        }
        let tgen = dataplane::netlink::link(&h, "tgen").await.unwrap();
        dataplane::netlink::set_up(&h, tgen.ifindex).await.unwrap();
        let tout = dataplane::netlink::link(&h, "tout").await.unwrap().ifindex;
        dataplane::netlink::add_address(&h, tout, "192.0.2.1/24".parse().unwrap()).await.unwrap();
        tout
    });
    let before = links(&rt, &ns);
    assert_eq!(
        before,
        [("tgen".into(), true), ("tin".into(), false), ("tout".into(), false), ("tsink".into(), false)]
    );
    let dir = tempfile::tempdir().unwrap();
    let bench = || {
        let mut c = ns.command(env!("CARGO_BIN_EXE_hutong"));
        c.args(["bench", "--quick", "--scenario", "netmap"])
            .args(["--gen", "tgen", "--dut-in", "tin", "--dut-out", "tout", "--sink", "tsink", "--out"])
            .arg(dir.path())
            .stdin(Stdio::null());
        c
    };

    // A port with an address carries someone's traffic: refused, nothing moved.
    let out = bench().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--dut-out tout: it has addresses (192.0.2.1/24)"), "{err}");
    assert_eq!(links(&rt, &ns), before, "nothing moved");
    rt.block_on(async {
        let h = ns.netlink().unwrap();
        let mut addrs = h.address().get().set_link_index_filter(tout).execute();
        while let Some(a) = addrs.try_next().await.unwrap() {
            h.address().del(a).execute().await.unwrap();
        }
    });

    // Every device measured through the borrowed ports.
    let out = bench().output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("On real ports: generator tgen → device under test tin … tout → sink tsink"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "the ceiling, Linux and both engines: {report}");
    assert!(rows.iter().all(|r| r["good"].as_u64() > Some(0) && r["bad"] == 0), "{report}");
    assert_eq!(links(&rt, &ns), before, "every port back, named and up or down as it was");

    // Stopped half-way: the ports come back all the same.
    let mut child = bench().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let running = line.contains("hutong XDP engine: netmap");
        seen.push(line);
        if running {
            break;
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("bench_ports: stopped after {:?}; {err}", seen.last());
    assert!(!out.status.success(), "a stopped bench does not report success");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(links(&rt, &ns), before, "every port back after SIGTERM");
}
