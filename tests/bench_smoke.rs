//! `hutong bench --quick` as CI's smoke test: every device under test (the raw XDP ceiling,
//! Linux forwarding with an nftables netmap, hutong's XDP and userspace engines) forwards frames
//! from the live-frames generator to the sink, translated as expected, and nothing wrongly
//! translated arrives (the command exits non-zero otherwise). The same series with 1518-byte
//! frames through the library. Rates are reported, never asserted (this machine is small and
//! noisy).

mod common;

#[test]
fn hutong_bench_quick_finds_every_device_forwarding_correctly() {
    common::require_root("bench_smoke");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hutong"))
        .args(["bench", "--quick", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for device in [
        "raw XDP ceiling",
        "Linux forwarding + nftables netmap",
        "hutong XDP engine",
        "hutong userspace engine",
    ] {
        assert!(text.lines().any(|l| l.starts_with(device) && l.contains("64B")), "{device} in the table");
    }
    assert!(text.contains("snat ip prefix to ip saddr map"), "the Linux device's rules are printed");
    // The report: the same rows as JSON, the page, the chart.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{report}");
    assert!(results.iter().all(|r| r["good"].as_u64() > Some(0) && r["bad"] == 0), "{report}");
    assert!(report["machine"]["kernel"].as_str().unwrap().starts_with("Linux"), "{report}");
    let page = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(page.contains("| hutong XDP engine | 64 B |") && page.contains("nftables"), "{page}");
    let png = std::fs::read(dir.path().join("throughput.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn full_size_frames_are_forwarded_correctly_too() {
    common::require_root("bench_smoke");
    let hutong = std::path::Path::new(env!("CARGO_BIN_EXE_hutong"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rows = rt
        .block_on(hutong::bench::netmap_series(hutong, 50_000, &[1514], &|m| eprintln!("bench_smoke: {m}")))
        .unwrap();
    eprintln!("{}", hutong::bench::table(&rows));
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert!(r.good > 0, "{}: nothing arrived translated as expected: {r:?}", r.dut);
        assert_eq!(r.bad, 0, "{}: wrongly translated frames arrived: {r:?}", r.dut);
    }
}
