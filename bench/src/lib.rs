//! `hutong bench`: the acceptance benchmark. In namespaces it builds itself:
//!
//! ```text
//!  [gen] gen0 ── in0 [dut] out0 ── sink0 [sink]
//!  live-frames      the device      XDP sink: counts frames
//!  XDP generator    under test      translated as expected
//! ```
//! Devices: the raw XDP ceiling (a redirect, no translation), Linux forwarding with the
//! scenario's nftables rules, and hutong's XDP and userspace engines (`hutong gateway run`).
//! Scenarios ([`Scenario`]): netmap, the netmap behind 63 deny rules, NAPT with 1,000 and with
//! 100,000 established flows, and NAPT's new-session rate. Each row is an RFC 2544 throughput
//! ([`search`]: the highest rate with loss under a threshold, by binary search over paced
//! trials) with latency percentiles at half that rate; the new-session row is RFC 9693's
//! connection establishment rate (every frame of every trial a session never seen before), and
//! NAPT's session capacity is RFC 9693's connection tracking table capacity ([`capacity`]). The
//! report (Markdown, JSON, a PNG chart) is [`report`]'s. With `cores` > 1 the generator sends
//! from that many CPUs, each into its own veth queue ([`Options::cores`]). On target hardware
//! the four veth ends are real ports instead, borrowed for the run ([`ports`]).

pub mod capacity;
pub mod instruments;
mod lab;
pub mod ports;
pub mod report;
mod scenario;
pub mod search;

pub use lab::BenchLab;
pub use scenario::Scenario;

use std::{path::Path, time::Duration};

use crate::instruments::Ceiling;
use anyhow::{Context, Result, bail};

use dataplane::ethtool;

use hutong_lab::gateway::GatewayProcess;

/// Flows of the established scenarios (250 hosts × 4 ports, and × 400).
const FLOWS: u32 = 1000;
const FLOWS_100K: u32 = 100_000;
const HOSTS: u32 = 250;
/// The new-session scenario's flows: source ports from 2048 up (the established flows use 1024
/// to 1423), so a session is new however many flows the same lab has established. Each trial
/// takes the next unused flows; 150,000 in all keeps every host within its 1,024 pool ports.
const NEW_SPORT: u16 = 2048;
const NEW_SPACE: u32 = 150_000;
/// The server behind the sink, and the gateway's addresses.
const SERVER: [u8; 4] = [198, 19, 0, 2];
/// The rate at which established scenarios set up their sessions before they are measured, a
/// rate every device's new-session path keeps up with (their first packets are the slow
/// path's, as new connections are Linux's conntrack's).
const WARM_UP_RATE: f64 = 100_000.0;
/// Frames the generator makes before it transmits them (`xdp_live_frames`) in latency trials:
/// one, so a frame never waits for the rest of its batch to be made (the search's trials use
/// [`Pace::full`](crate::instruments::Pace::full)'s batch).
const LATENCY_BATCH: u32 = 1;

/// How much the bench measures: `--quick` for CI's smoke test, the default for a report.
#[derive(Clone, Debug)]
pub struct Options {
    /// Frames in each full-rate trial (at least every flow once).
    pub frames: u64,
    /// New sessions in the new-session scenario's full-rate trial, and in each paced one.
    pub new_sessions: (u64, u64),
    /// The most sessions the capacity search offers (its first trial).
    pub sessions: u64,
    /// How long each paced trial offers frames.
    pub trial: Duration,
    /// Passes over an established scenario's flows before it is measured.
    pub warm_up_passes: u32,
    /// Cores the generator sends from, each into its own queue of the device's veth, so the
    /// device's work spreads over as many (the userspace engine runs as many workers).
    pub cores: u32,
    /// Real ports to run on instead of veths (`--gen`, `--dut-in`, `--dut-out`, `--sink`).
    pub ports: Option<ports::Ports>,
    pub search: search::Search,
    /// Frame lengths, without the FCS (60 is 64 bytes on the wire).
    pub sizes: Vec<usize>,
    pub scenarios: Vec<Scenario>,
}

impl Options {
    /// Every scenario and size, 500,000 frames at full rate and paced trials of 0.2 s, the
    /// rate within 2%, 0.1% loss allowed.
    pub fn full() -> Options {
        Options {
            frames: 500_000,
            new_sessions: (50_000, 10_000),
            sessions: 300_000,
            trial: Duration::from_millis(200),
            warm_up_passes: 2,
            cores: 1,
            ports: None,
            search: search::Search { threshold: 0.001, resolution: 0.02, max_trials: 8 },
            sizes: SIZES.to_vec(),
            scenarios: Scenario::ALL.to_vec(),
        }
    }

    /// Every throughput scenario at 64 bytes, short trials, a coarse search: a smoke test
    /// within CI's 30 s (session capacity adds some 9 s, mostly three gateway starts; it runs
    /// when asked for, with 20,000 sessions).
    pub fn quick() -> Options {
        Options {
            frames: 100_000,
            new_sessions: (20_000, 5_000),
            sessions: 20_000,
            trial: Duration::from_millis(40),
            warm_up_passes: 1,
            search: search::Search { threshold: 0.001, resolution: 0.1, max_trials: 3 },
            sizes: SIZES[..1].to_vec(),
            scenarios: Scenario::ALL.into_iter().filter(|&s| s != Scenario::NaptCapacity).collect(),
            ..Options::full()
        }
    }
}

/// What a series measured: throughput rows, and session capacity per device.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub rows: Vec<Outcome>,
    pub capacity: Vec<capacity::Sessions>,
}

/// What one device under test did in one scenario at one frame size.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What the devices were asked to do ([`Scenario::name`]).
    pub scenario: &'static str,
    pub dut: String,
    /// Frame length, without the FCS (60 is a 64-byte frame on the wire).
    pub len: usize,
    /// The throughput search: its full-rate trial, every trial, the best passing one.
    pub found: search::Found,
    /// Latency percentiles at half the throughput (none for new sessions, or no throughput).
    pub latency: Option<search::Latency>,
}

impl Outcome {
    /// The throughput in millions of frames a second: the highest rate offered with loss
    /// within the threshold (for new sessions: sessions set up, their first frame delivered).
    pub fn mpps(&self) -> f64 {
        self.found.rate() / 1e6
    }

    /// Its figures as the table and the report print them: throughput (with "≥" where the
    /// generator was the limit), the full-rate trial's delivered rate and share, latency p50 /
    /// p99 in µs, wrongly translated frames, × Linux and × ceiling (see [`ratio_to`]; "–" where
    /// there is nothing to compare with).
    pub fn figures(&self, rows: &[Outcome]) -> [String; 6] {
        let ratio = |base| ratio_to(rows, self, base).map_or("–".into(), |v| format!("{v:.2}"));
        let full = self.found.full;
        [
            format!("{}{:.3}", if self.found.generator_bound() { "≥" } else { "" }, self.mpps()),
            format!("{:.3} ({:.1}%)", full.delivered() / 1e6, 100.0 - full.loss() * 100.0),
            self.latency
                .map_or("–".into(), |l| format!("{:.1} / {:.1}", l.p50 as f64 / 1e3, l.p99 as f64 / 1e3)),
            self.found.bad().to_string(),
            ratio("Linux"),
            ratio("raw XDP"),
        ]
    }
}

/// Set when SIGINT or SIGTERM arrives during `hutong bench` ([`run`]).
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// An error once the bench was told to stop: its next step fails, and unwinding gives borrowed
/// ports back and removes the namespaces (a signal's default action would leave them).
pub fn interrupted() -> Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        bail!("interrupted: stopped at the next step, borrowed ports given back");
    }
    Ok(())
}

const NFT_MISSING: &str = "Linux forwarding + nftables SKIPPED: `nft` is not installed on this machine";
const CONNTRACK_MISSING: &str = "Linux forwarding + nftables SKIPPED in session capacity: `conntrack` (to empty \
     its table between trials) is not installed on this machine (scripts/setup.sh installs it)";

/// Whether `program --version` runs here.
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The netmap scenario's gateway config (the bench's tests use it).
pub fn gateway_config() -> dataplane::Config {
    Scenario::Netmap.gateway_config()
}

/// Frame lengths of the full series: 64, 512 and 1518 bytes on the wire.
pub const SIZES: [usize; 3] = [60, 508, 1514];

/// Runs the devices on each scenario; `hutong` is the binary the gateway runs from. Scenarios
/// with different rules run on fresh labs (no connection-tracking or session state carried
/// over); the three NAPT throughput ones share a lab and each device's setup, the new sessions
/// from source ports the established flows do not use. The raw XDP ceiling, which translates
/// nothing, runs once, in the first lab with a throughput scenario. Session capacity empties
/// each device before every trial after its first: `conntrack -F` for Linux, a restart for
/// hutong.
pub async fn series(hutong: &Path, opts: &Options, progress: &dyn Fn(&str)) -> Result<Series> {
    let mut out = Series::default();
    // Scenarios with the same rules share a lab and each device's setup (NAPT's three).
    let mut groups: Vec<Vec<Scenario>> = Vec::new();
    for &s in &opts.scenarios {
        match groups.iter_mut().find(|g| g[0].gateway_config() == s.gateway_config()) {
            Some(g) => g.push(s),
            None => groups.push(vec![s]),
        }
    }
    let sizes = &opts.sizes[..];
    // New sessions are new once: that scenario runs at the smallest frame size only.
    let smallest = [sizes.iter().copied().min().unwrap_or(60)];
    let sizes_of = |s: Scenario| if s == Scenario::NaptNew { &smallest[..] } else { sizes };
    let mut ceiling_done = false;
    for group in &groups {
        interrupted()?;
        let name = group.iter().map(|s| s.name()).collect::<Vec<_>>().join(" / ");
        progress(&format!("{name}: building the bench namespaces (generator, device under test, sink)"));
        let lab = BenchLab::build_on(opts.cores, opts.ports.as_ref()).await?;
        if !ceiling_done && group[0] != Scenario::NaptCapacity {
            ceiling_done = true;
            progress("raw XDP ceiling: a redirect from in0 to out0, nothing translated");
            let _ceiling = lab.dut.run(|| Ceiling::attach(lab.in0.ifindex, lab.out0.ifindex))??;
            for &len in sizes {
                let untranslated = ([10, 20, 0, 0], [255, 255, 255, 0]);
                out.rows.push(lab.measure(
                    (group[0], "raw XDP ceiling (redirect only)"),
                    len,
                    untranslated,
                    opts,
                )?);
            }
        }
        // Every scenario of the group on the device set up; `empty` restarts it with no
        // sessions (session capacity).
        let measure_all =
            |dut: &str, empty: &mut dyn FnMut() -> Result<()>, out: &mut Series| -> Result<()> {
                for &scenario in group {
                    if scenario == Scenario::NaptCapacity {
                        progress(&format!("{dut}: {}, up to {} sessions", scenario.name(), opts.sessions));
                        out.capacity.push(lab.capacity(dut, opts.sessions, &opts.search, empty)?);
                        continue;
                    }
                    if matches!(scenario, Scenario::Napt | Scenario::Napt100k) {
                        progress(&format!("{dut}: setting up the {} sessions", scenario.name()));
                        lab.warm_up(scenario, opts.warm_up_passes)?;
                    }
                    for &len in sizes_of(scenario) {
                        progress(&format!("{dut}: {}, {} B frames", scenario.name(), len + 4));
                        out.rows.push(lab.measure((scenario, dut), len, scenario.expect_src(), opts)?);
                    }
                }
                Ok(())
            };

        // A machine without nftables (the device machine has none) runs the rest; the Linux
        // rows are missing from the table and the skip is said out loud.
        match linux_missing(group) {
            Some(why) => progress(&format!("{name}: {why}")),
            None => {
                progress(&format!("{name}: Linux forwarding with nftables"));
                lab.address_dut().await?;
                lab.dut.run(|| -> std::io::Result<()> {
                    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
                    // A veth takes frames transmitted into it by XDP only when it runs NAPI
                    // (the server's replies come in on out0).
                    ethtool::set_gro("in0", true)?;
                    ethtool::set_gro("out0", true)
                })??;
                let mut nft = lab
                    .dut
                    .command("nft")
                    .args(["-f", "-"])
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .context("running nft (install nftables)")?;
                std::io::Write::write_all(
                    nft.stdin.as_mut().context("nft stdin")?,
                    group[0].nft().as_bytes(),
                )?;
                drop(nft.stdin.take());
                if !nft.wait()?.success() {
                    bail!("nft refused the {name} rules");
                }
                let mut flush = || -> Result<()> {
                    let status = lab
                        .dut
                        .command("conntrack")
                        .arg("-F")
                        .stderr(std::process::Stdio::null())
                        .status()?;
                    anyhow::ensure!(status.success(), "conntrack -F failed ({status})");
                    Ok(())
                };
                measure_all("Linux forwarding + nftables", &mut flush, &mut out)?;
                lab.dut.command("nft").args(["delete", "table", "ip", "hutong_bench"]).status()?;
                lab.dut.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "0"))??;
            }
        }

        let work = tempfile::Builder::new().prefix("hutong-bench-").tempdir()?;
        let config_path = work.path().join("gateway.json");
        std::fs::write(&config_path, group[0].gateway_config().to_json())?;
        let workers = opts.cores.to_string();
        for (dut, args, what) in [
            ("hutong XDP engine", vec![], "hutong's XDP engine (`hutong gateway run`)"),
            (
                "hutong userspace engine",
                vec!["--engine", "userspace", "--workers", &workers],
                "hutong's userspace engine (`--engine userspace`, a worker per core, AF_XDP in copy mode)",
            ),
        ] {
            progress(&format!("{name}: {what}"));
            let start = || -> Result<GatewayProcess> {
                let mut gw =
                    GatewayProcess::start(&lab.dut, hutong, &config_path, work.path(), "bench", &args)?;
                gw.wait_ready(&interrupted)?;
                std::thread::sleep(Duration::from_millis(300)); // the neighbor table copied into the program
                Ok(gw)
            };
            let mut gw = start()?;
            let mut restart = || -> Result<()> {
                gw.stop();
                gw = start()?;
                Ok(())
            };
            measure_all(dut, &mut restart, &mut out)?;
            gw.stop();
        }
    }
    // Back in scenario order (the NAPT group ran device by device).
    out.rows.sort_by_key(|r| opts.scenarios.iter().position(|s| s.name() == r.scenario));
    Ok(out)
}

/// Why Linux cannot run `group` here, if it cannot: `nft` missing, or `conntrack` (to empty
/// its table between session-capacity trials).
fn linux_missing(group: &[Scenario]) -> Option<&'static str> {
    if !installed("nft") {
        Some(NFT_MISSING)
    } else if group.contains(&Scenario::NaptCapacity) && !installed("conntrack") {
        Some(CONNTRACK_MISSING)
    } else {
        None
    }
}

/// `r`'s rate as a ratio to device `base`'s at the same frame size: Linux's in the same
/// scenario, the raw XDP ceiling's (which translates nothing) in any.
pub fn ratio_to(rows: &[Outcome], r: &Outcome, base: &str) -> Option<f64> {
    let b = rows
        .iter()
        .find(|x| {
            x.dut.starts_with(base) && x.len == r.len && (base == "raw XDP" || x.scenario == r.scenario)
        })?
        .mpps();
    (b > 0.0).then(|| r.mpps() / b)
}

/// The results as a table, with ratios to Linux and to the ceiling.
pub fn table(rows: &[Outcome]) -> String {
    let mut s = format!(
        "{:<30} {:<32} {:>6} {:>10} {:>16} {:>13} {:>6} {:>8} {:>9}\n",
        "scenario",
        "device under test",
        "frame",
        "Mpps",
        "at full rate",
        "p50/p99 µs",
        "wrong",
        "× Linux",
        "× ceiling"
    );
    for r in rows {
        let [mpps, full, latency, wrong, linux, ceiling] = r.figures(rows);
        s.push_str(&format!(
            "{:<30} {:<32} {:>5}B {mpps:>10} {full:>16} {latency:>13} {wrong:>6} {linux:>8} {ceiling:>9}\n",
            r.scenario,
            r.dut,
            r.len + 4,
        ));
    }
    s
}

/// Each device's rules in each scenario, as the report prints them.
fn rules(scenarios: &[Scenario]) -> Vec<(String, String)> {
    let mut all = vec![(
        "raw XDP ceiling".to_string(),
        "an XDP program on in0: redirect every frame to out0, nothing else".to_string(),
    )];
    for s in scenarios {
        all.push((
            format!("{}: Linux forwarding + nftables", s.name()),
            format!("net.ipv4.ip_forward=1, a static neighbor for 198.19.0.2, and nft -f:\n{}", s.nft()),
        ));
        all.push((
            format!("{}: hutong (both engines)", s.name()),
            format!("`hutong gateway run` with this config:\n{}", s.gateway_config().to_json()),
        ));
    }
    all
}

/// How the figures were measured, in a sentence for the table's heading and the report.
pub fn method(opts: &Options) -> String {
    let topology = opts.ports.as_ref().map_or("veths".into(), ports::Ports::describe);
    format!(
        "On {topology}; {} core(s), the generator sending from each into its own queue. RFC 2544 throughput: \
         the highest rate at which at most {}% of the frames are lost or wrongly translated, by binary search (to within {}%, at most {} paced trials of {} ms, \
         each offering every flow at least once where that takes under a second) from a trial \
         of {} frames at the generator's full rate; latency percentiles at half that rate, one \
         frame per generator batch. Established flows' sessions are set up first, {} passes at \
         {} a second. The new-session rate offers {} new sessions at full rate, then {} per \
         trial, each a flow never seen before. Only frames that reach the sink translated as \
         expected count",
        opts.cores,
        opts.search.threshold * 100.0,
        opts.search.resolution * 100.0,
        opts.search.max_trials,
        opts.trial.as_millis(),
        opts.frames,
        opts.warm_up_passes,
        WARM_UP_RATE,
        opts.new_sessions.0,
        opts.new_sessions.1,
    )
}

/// How session capacity was measured, in a sentence.
pub fn capacity_method(opts: &Options) -> String {
    format!(
        "Session capacity (RFC 9693): the most NAPT sessions held at once, every one answered. A \
         trial sets up n sessions (a frame of a new flow each, {} a second) on a device emptied \
         first, then the server replies to each at the same rate, to the address and port the \
         sink saw the flow translated to; a session counts as held when its reply reaches \
         exactly its host and port. A frame lost on the way is not a session refused: each way \
         runs in rounds over all the flows (at most {}, each counted apart from the others' \
         late frames), until all came through or a round that every known flow came through \
         again adds none; the rounds are in the report. Binary search over n (to within {}%, at most {} more trials) \
         from a trial of {} sessions, starting at what that one held. Wrong: frames translated \
         otherwise than their session says, either way (a reply reaching another flow's host: \
         the device evicted a session and gave its address and port to a new one)",
        capacity::RATE,
        capacity::ROUNDS,
        opts.search.resolution * 100.0,
        opts.search.max_trials,
        opts.sessions,
    )
}

/// `hutong bench`: the series, the rules each device ran, the table, and the report (Markdown,
/// JSON, chart) in `out`.
pub fn run(opts: &Options, out: &Path, command: &str) -> Result<std::process::ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench creates network namespaces and attaches XDP programs: run it as root");
    }
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    if opts.cores as usize > online {
        bail!("--cores {}: this machine has {online} CPUs to run on", opts.cores);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("hutong bench: interrupted; stopping at the next step");
            INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        std::io::Result::Ok(())
    })?;
    let exe = std::env::current_exe()?;
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // A line per step where nobody watches (CI, a pipe); a spinner with the step on a terminal.
    let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = |m: &str| match &spinner {
        Some(bar) => {
            bar.println(format!("[bench] {m}"));
            bar.set_message(m.to_string());
        }
        None => println!("[bench] {m}"),
    };
    let Series { rows, capacity } = rt.block_on(series(&exe, opts, &progress))?;
    if let Some(bar) = &spinner {
        bar.finish_and_clear();
    }
    println!();
    println!("Rules of each device in each scenario:");
    for (dut, rules) in rules(&opts.scenarios) {
        println!("  {dut}:");
        for l in rules.lines() {
            println!("    {l}");
        }
    }
    println!();
    if !rows.is_empty() {
        println!("{}:", method(opts));
        print!("{}", table(&rows));
    }
    if !capacity.is_empty() {
        println!();
        println!("{}:", capacity_method(opts));
        print!("{}", capacity::table(&capacity));
    }
    let report = report::Report {
        date,
        machine: report::Machine::here(),
        method: method(opts),
        notes: linux_missing(&opts.scenarios).into_iter().map(String::from).collect(),
        rows,
        capacity,
        capacity_method: capacity_method(opts),
        rules: rules(&opts.scenarios),
        command: command.to_string(),
    };
    for n in &report.notes {
        println!("NOTE: {n}");
    }
    for path in report.write(out)? {
        println!("wrote {}", path.display());
    }
    // Capacity's trials beyond a device's bound may be wrong (a device that evicts sessions
    // hands their mappings to new ones): a finding, reported; holding nothing is a failure.
    let wrong = report.rows.iter().any(|r| r.found.full.good == 0 || r.found.bad() > 0)
        || report.capacity.iter().any(|c| c.found.sessions() == 0);
    Ok(if wrong { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS })
}
