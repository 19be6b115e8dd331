//! The userspace engine keeps forwarding after an overload: offered the live-frames generator's
//! full rate (several times what one worker takes), it drops the excess, and a modest paced
//! load right afterwards arrives whole. Before the AF_XDP port gave every spare frame back to
//! the fill ring, each overload left a few frames out of it for good, until the kernel had
//! none to receive into and dropped nearly everything, at any rate. The frames lost are counted
//! in `hutong_socket_drops_total`.

mod common;

use hutong::bench::instruments::Pace;
use hutong::{
    bench::{BenchLab, Scenario},
    lab::gateway::GatewayProcess,
};

#[test]
fn the_userspace_engine_forwards_a_modest_load_whole_after_overloads() {
    common::require_root("e2e_overload");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let lab = rt.block_on(BenchLab::build(1)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("gateway.json");
    std::fs::write(&config, Scenario::Netmap.gateway_config().to_json()).unwrap();
    let hutong = std::path::Path::new(env!("CARGO_BIN_EXE_hutong"));
    let args = ["--engine", "userspace"];
    let mut gw = GatewayProcess::start(&lab.dut, hutong, &config, work.path(), "overload", &args).unwrap();
    gw.wait_ready(&|| Ok(())).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let modest = Pace { frames: 20_000, rate: Some(50_000.0), ..Pace::full(0) };
    // As the bench's search goes: full rate, then paced near and under what it delivered, and
    // one frame per batch, three times over.
    let near = |rate: f64, batch| Pace { frames: 100_000, rate: Some(rate), batch, ..Pace::full(0) };
    let mut paces = Vec::new();
    for _ in 0..3 {
        paces.extend([
            Pace::full(1_000_000),
            near(600e3, 64),
            near(300e3, 64),
            near(450e3, 64),
            near(200e3, 1),
        ]);
    }
    paces.extend([modest, modest]);
    let trials = lab.offer(Scenario::Netmap, 60, &paces).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400)); // the counters published
    let metrics = common::Metrics::scrape(&lab.dut);
    gw.stop();
    let text = &metrics.text;
    let dropped =
        metrics.get("hutong_socket_drops_total", &[]).unwrap_or_else(|| panic!("no socket drops:\n{text}"));
    for t in &trials {
        eprintln!(
            "overload_e2e: offered {} at {:.0}/s, {} arrived translated, {} wrong",
            t.sent,
            t.offered(),
            t.good,
            t.bad
        );
    }
    assert!(trials.iter().all(|t| t.bad == 0), "{trials:?}");
    let overloads: Vec<_> = trials.iter().step_by(5).take(3).collect();
    assert!(
        overloads.iter().all(|t| t.good > 0 && t.good < t.sent * 9 / 10),
        "each full-rate run overloads the one worker and still gets some through: {overloads:?}"
    );
    // What the one worker could not take, the kernel dropped at its sockets, and says so.
    let lost: u64 = trials.iter().map(|t| t.sent - t.good).sum();
    eprintln!("overload_e2e: {lost} frames lost, hutong_socket_drops_total {dropped}");
    assert!(
        dropped >= lost as f64 * 0.9 && dropped <= lost as f64,
        "{lost} lost, {dropped} counted:\n{text}"
    );
    for t in &trials[15..] {
        assert!(t.good * 1000 >= t.sent * 999, "a modest load after overloads arrives whole: {t:?}");
    }
}
