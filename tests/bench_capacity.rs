//! Session capacity (RFC 9693) in `hutong bench`'s lab, for real. hutong's engines, their pool
//! bounded to 3,000 sessions, hold exactly 3,000: every reply reaches exactly the host and port
//! of its flow, the sessions beyond the bound are dropped and counted, and the search finds the
//! bound from a first trial of 5,000. `hutong bench --scenario napt-capacity` runs every device
//! (Linux emptied with `conntrack -F` between trials), each holding all it is offered.

mod common;

use hutong::bench::{BenchLab, Scenario, search::Search};

const BOUND: u32 = 3000;

/// One at a time: every reply must arrive, and two labs at once on a two-core machine starve
/// each other's slow paths.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn each_engine_holds_exactly_its_configured_sessions() {
    common::require_root("bench_capacity");
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let hutong = std::path::Path::new(env!("CARGO_BIN_EXE_hutong"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let lab = rt.block_on(BenchLab::build(1)).unwrap();
    let mut config = Scenario::NaptCapacity.gateway_config();
    config.nat_pools[0].max_sessions = BOUND;
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("gateway.json");
    std::fs::write(&path, config.to_json()).unwrap();
    let search = Search { threshold: 0.0, resolution: 0.01, max_trials: 8 };
    for (engine, args) in [("XDP", vec![]), ("userspace", vec!["--engine", "userspace"])] {
        let start = || {
            let mut gw = hutong::lab::gateway::GatewayProcess::start(
                &lab.dut,
                hutong,
                &path,
                work.path(),
                "capacity",
                &args,
            )
            .unwrap();
            gw.wait_ready(&|| Ok(())).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            gw
        };
        let mut gw = start();
        // The first trial, on its own, with the gateway's counts of it.
        let first = lab.hold(5000, 5000).unwrap();
        // The gateway publishes its counters every 200 ms.
        let mut metrics = common::Metrics::scrape(&lab.dut);
        let held = |m: &common::Metrics| m.get("hutong_nat_sessions", &[]).unwrap_or(0.0);
        let dropped =
            |m: &common::Metrics, reason| m.get("hutong_drops_total", &[("reason", reason)]).unwrap_or(0.0);
        for _ in 0..20 {
            if held(&metrics) >= f64::from(BOUND) && dropped(&metrics, "sessions_full") > 0.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            metrics = common::Metrics::scrape(&lab.dut);
        }
        let drops = |reason| dropped(&metrics, reason);
        eprintln!(
            "bench_capacity: {engine} engine, 5000 sessions offered: {first:?}; the gateway holds {} sessions; \
             dropped as sessions_full {}, ports_exhausted {}, filtered {}",
            held(&metrics),
            drops("sessions_full"),
            drops("ports_exhausted"),
            drops("filtered"),
        );
        assert_eq!(first.bad, 0, "{engine}: wrongly translated frames");
        assert_eq!(first.set_up, u64::from(BOUND), "{engine}: sessions set up beyond the bound");
        assert_eq!(
            first.held,
            u64::from(BOUND),
            "{engine}: replies lost or not going back to their own flow"
        );
        assert_eq!(held(&metrics), f64::from(BOUND), "{engine}: the gateway's own count of its sessions");
        // Refused in every set-up round (a second one at least: it is the round that finds
        // the device refusing), each refusal counted; never more than the frames refused.
        assert!(first.rounds[0] >= 2, "{engine}: {first:?}");
        let refused = drops("sessions_full");
        assert!(
            refused >= f64::from(5000 - BOUND) && refused <= f64::from((5000 - BOUND) * first.rounds[0]),
            "{engine}: {refused} sessions_full drops of {} frames refused in {} rounds",
            5000 - BOUND,
            first.rounds[0]
        );

        let mut restart = || {
            gw.stop();
            gw = start();
            Ok(())
        };
        restart().unwrap();
        let found = lab.capacity(engine, 5000, &search, &mut restart).unwrap();
        eprintln!("bench_capacity: {engine} engine: {:?}", found.found);
        assert_eq!(found.found.sessions(), u64::from(BOUND), "{engine}: {:?}", found.found);
        assert_eq!(found.found.failed_at(), Some(u64::from(BOUND) + 30), "{engine}: {:?}", found.found);
        assert_eq!(found.found.bad(), 0);
        gw.stop();
    }
}

#[test]
fn hutong_bench_measures_every_devices_session_capacity() {
    common::require_root("bench_capacity");
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (text, report) =
        common::hutong_bench(&["--quick", "--scenario", "napt-capacity", "--sessions", "5000"], dir.path());
    assert!(text.contains("snat to 198.18.30.0-198.18.30.63"), "the Linux device's rules are printed");
    let results = report["capacity"]["results"].as_array().unwrap();
    let duts: Vec<&str> = results.iter().map(|r| r["dut"].as_str().unwrap()).collect();
    assert_eq!(duts, ["Linux forwarding + nftables", "hutong XDP engine", "hutong userspace engine"]);
    for r in results {
        // Far below every device's bound: each holds everything offered, in one trial.
        assert_eq!(r["sessions"], 5000, "{r}");
        assert_eq!(r["offer_bound"], true, "{r}");
        assert_eq!(r["bad"], 0, "{r}");
        assert_eq!(r["trials"][0]["held"], 5000, "{r}");
        assert!(r["trials"][0]["rounds"][0].as_u64().is_some_and(|n| (1..=4).contains(&n)), "{r}");
    }
    let page = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(page.contains("## Session capacity"), "{page}");
    assert!(page.contains("| hutong XDP engine | ≥5000 |"), "{page}");
}
