//! `hutong bench --quick` as CI's smoke test: in every scenario (netmap, deny-heavy, NAPT with
//! 1k and 100k established flows, NAPT's new-session rate) every device under test (the raw XDP
//! ceiling, Linux forwarding with nftables, hutong's XDP and userspace engines) forwards frames
//! from the live-frames generator to the sink, translated as expected, and nothing wrongly
//! translated arrives (the command exits non-zero otherwise); its report is written, every row
//! a throughput search. The netmap series with 1518-byte frames through the library, on two
//! cores where there are two, each row with a rate found and latency measured. Rates are
//! reported, never asserted (this machine is small and noisy).

mod common;

#[test]
fn hutong_bench_quick_finds_every_device_forwarding_correctly() {
    common::require_root("bench_smoke");
    let dir = tempfile::tempdir().unwrap();
    let (text, report) = common::hutong_bench(&["--quick"], dir.path());
    for scenario in [
        "netmap",
        "deny-heavy policy",
        "NAPT, 1k established flows",
        "NAPT, 100k established flows",
        "NAPT, new-session rate",
    ] {
        for device in ["Linux forwarding + nftables", "hutong XDP engine", "hutong userspace engine"] {
            assert!(
                text.lines().any(|l| l.starts_with(scenario) && l.contains(device) && l.contains("64B")),
                "{scenario}: {device} in the table"
            );
        }
    }
    assert!(
        text.lines().any(|l| l.contains("raw XDP ceiling") && l.contains("64B")),
        "the ceiling in the table"
    );
    for rule in
        ["snat ip prefix to ip saddr map", "ip saddr 172.16.62.0/24 drop", "snat to 198.18.30.0-198.18.30.3"]
    {
        assert!(text.contains(rule), "the Linux device's rules are printed: {rule}");
    }
    // The report: the same rows as JSON, the page, the chart.
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 16, "the ceiling, and three devices in five scenarios: {report}");
    assert!(results.iter().all(|r| r["good"].as_u64() > Some(0) && r["bad"] == 0), "{report}");
    // Every row is a search: a full-rate trial first, every trial's frames accounted for.
    for r in results {
        let trials = r["trials"].as_array().unwrap();
        assert!(trials[0]["asked_pps"].is_null(), "{r}");
        assert!(trials.iter().all(|t| t["good"].as_u64() <= t["sent"].as_u64()), "{r}");
    }
    assert!(report["machine"]["kernel"].as_str().unwrap().starts_with("Linux"), "{report}");
    let page = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(page.contains("| NAPT, 1k established flows | hutong XDP engine | 64 B |"), "{page}");
    let png = std::fs::read(dir.path().join("throughput.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn full_size_frames_are_forwarded_correctly_too() {
    common::require_root("bench_smoke");
    let hutong = std::path::Path::new(env!("CARGO_BIN_EXE_hutong"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Two cores where there are two (CI has): the generator sends from both, into a queue
    // each, and the userspace engine runs two workers.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2) as u32;
    eprintln!("bench_smoke: 1518-byte netmap series on {cores} core(s)");
    let opts = hutong::bench::Options {
        sizes: vec![1514],
        scenarios: vec![hutong::bench::Scenario::Netmap],
        cores,
        ..hutong::bench::Options::quick()
    };
    let rows =
        rt.block_on(hutong::bench::series(hutong, &opts, &|m| eprintln!("bench_smoke: {m}"))).unwrap().rows;
    eprintln!("{}", hutong::bench::table(&rows));
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert!(r.found.full.good > 0, "{}: nothing arrived translated as expected: {r:?}", r.dut);
        assert_eq!(r.found.bad(), 0, "{}: wrongly translated frames arrived: {r:?}", r.dut);
        assert!(r.mpps() > 0.0, "{}: no rate passed the search: {r:?}", r.dut);
        assert!(r.latency.is_some_and(|l| l.samples > 0), "{}: no latency measured: {r:?}", r.dut);
    }
}
