//! `hutong bench`'s netmap series as a smoke test: every device under test (the raw XDP
//! ceiling, Linux forwarding with an nftables netmap, hutong's XDP and userspace engines) forwards frames from
//! the live-frames generator to the sink, translated as expected, and nothing wrongly
//! translated arrives. Rates are reported, never asserted (this machine is small and noisy).

mod common;

#[test]
fn every_device_forwards_correctly_translated_frames() {
    common::require_root("bench_smoke");
    let hutong = std::path::Path::new(env!("CARGO_BIN_EXE_hutong"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rows = rt
        .block_on(hutong::bench::netmap_series(hutong, 100_000, &[60, 1514], &|m| {
            eprintln!("bench_smoke: {m}")
        }))
        .unwrap();
    eprintln!("{}", hutong::bench::table(&rows));
    assert_eq!(rows.len(), 8, "four devices, two frame sizes");
    for r in &rows {
        assert!(r.good > 0, "{}: nothing arrived translated as expected: {r:?}", r.dut);
        assert_eq!(r.bad, 0, "{}: wrongly translated frames arrived: {r:?}", r.dut);
    }
}
