//! Push to ACK with many agents against a real etcd on this machine (issue 18's benchmark).
//!
//! For each fleet size N: a fresh etcd (`Etcd::start(1)`), a generated plan of N county gateways
//! pushed with the library (`push::prepare` + `push::commit`), N agents in this process
//! (`agent::run`, as written, each with its own etcd connection and an in-memory gateway doing
//! the real decode, validate, table build and swap), all ACKing push 1; then pushes that change
//! every gateway's config (a policy at the root node). For each gateway and push it records when
//! its apply went through (in-process) and when etcd showed its status with the push applied
//! (a watch of its own on every status key); both from the moment the push's transaction was
//! sent. It samples etcd's CPU time and memory in `/proc`, this process's memory before and
//! after the agents start (the cost per agent), and both processes' CPU with the fleet idle.
//!
//! ```text
//! cargo bench --bench fleet [-- --gateways 100,1000,3000] [--rounds 3] [--quick] [--out DIR]
//! ```
//!
//! Each size runs in a process of its own (the bench runs itself), so that memory one size
//! freed does not hide the next one's. `--out DIR` writes `fleet-bench.json`, `fleet-bench.md`
//! (the tables: pooled, and push by push), `push-to-ack.png`, and per size the agents' log
//! (their stderr, with the bench's steps timed in it: one line per apply, and every session
//! lost) and etcd's. Without `--bench` (`cargo test --benches`) it is the quick run, a smoke
//! test. Needs Debian's `etcd-server` (`scripts/setup.sh`). Results: docs/fleet.md, "Benchmark:
//! push to ACK". Beside this file: `pushes` (the plans and the timed pushes), `observe` (the
//! bench's own watch of the ACKs), `measure` (/proc), `report` (tables, files, chart).

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use control::generate::{Scale, generate};
use etcd_client::{EventType, WatchOptions};
use hutong::{bench::report::Machine, fleet::memory::MemoryGateway, lab::etcd::Etcd};
use hutong_fleet::{
    Client, Endpoints,
    agent::{self, AgentOptions, Applied, Gateway},
    keys::{self, GatewayKey},
    push::{self, Prepared, PushError, PushOptions},
    records::{Desired, Health, PushRecord, Rollout, RolloutState, Status, Verdict},
    store,
};
use serde::{Deserialize, Serialize};

mod measure;
mod observe;
mod pushes;
mod report;

use measure::*;
use observe::*;
use pushes::*;
use report::{chart, secs, table, write_out};

#[derive(Parser, Debug)]
#[command(about = "Push to ACK with many in-process fleet agents against a real etcd")]
struct Args {
    /// Fleet sizes, comma-separated [default: 100,1000,3000; --quick: 100].
    #[arg(long, value_delimiter = ',')]
    gateways: Option<Vec<usize>>,
    /// Measured pushes per size, each changing every gateway [default: 3; --quick: 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// A short run: 100 gateways, one push, a 3 s idle window (each overridable).
    #[arg(long)]
    quick: bool,
    /// Seconds of idle fleet (lease keep-alives only) measured after the pushes [default: 10; --quick: 3].
    #[arg(long)]
    idle: Option<f64>,
    /// The agents' status lease (`AgentOptions::lease_ttl`), seconds; renewed every third.
    #[arg(long, default_value_t = 30.0)]
    lease_ttl: f64,
    /// How long every gateway has to report a push applied, seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Writes fleet-bench.json, fleet-bench.md, push-to-ack.png and the agents' logs here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draws the chart and the tables again from a `fleet-bench.json`, beside it; runs nothing.
    #[arg(long)]
    replot: Option<PathBuf>,
    /// Internal: run this one size and write its row, as JSON, to `--row` (each size runs in
    /// a process of its own, so that one size's freed memory does not hide the next one's).
    #[arg(long, hide = true, requires = "row")]
    one: Option<usize>,
    #[arg(long, hide = true)]
    row: Option<PathBuf>,
    /// `cargo bench` passes it; `cargo test --benches` does not, and gets the quick run.
    #[arg(long, hide = true)]
    bench: bool,
}

struct Settings {
    sizes: Vec<usize>,
    rounds: usize,
    idle: Duration,
    lease_ttl: Duration,
    timeout: Duration,
}

impl Args {
    fn settings(&self) -> Settings {
        // Without `--bench` it runs under `cargo test --benches`: the quick run, a smoke test.
        let quick = self.quick || !self.bench;
        Settings {
            sizes: self.gateways.clone().unwrap_or(if quick { vec![100] } else { vec![100, 1000, 3000] }),
            rounds: self.rounds.unwrap_or(if quick { 1 } else { 3 }).max(1),
            idle: Duration::from_secs_f64(self.idle.unwrap_or(if quick { 3.0 } else { 10.0 })),
            lease_ttl: Duration::from_secs_f64(self.lease_ttl),
            timeout: Duration::from_secs_f64(self.timeout),
        }
    }
}

/// A transaction's size and how long it took to work out and to write.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct PushSize {
    ops: usize,
    bytes: usize,
    /// Read the store, merge, validate, compile every gateway, diff (before the clock starts).
    prepare_s: f64,
    /// The transaction, sent to answered.
    commit_s: f64,
}

impl PushSize {
    fn line(&self) -> String {
        format!(
            "{} ops, {:.1} MiB; prepared in {:.2} s, committed in {:.2} s",
            self.ops,
            self.bytes as f64 / 1048576.0,
            self.prepare_s,
            self.commit_s
        )
    }
}

/// p50, p99 and max of a set of seconds; `None`: some gateways never got there in time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stats {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

/// One measured push.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Round {
    push: u64,
    commit_s: f64,
    push_to_applied: Stats,
    push_to_ack: Stats,
    /// Agent sessions lost from this push's prepare to its last ACK.
    outages: usize,
}

/// One fleet size's results.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Row {
    gateways: usize,
    /// provinces × prefectures × counties of the generated plan.
    shape: String,
    first_push: PushSize,
    /// The measured pushes (mean over rounds).
    push: PushSize,
    rounds: usize,
    /// Agents started to every one's status showing push 1.
    startup_s: f64,
    /// Agent sessions lost while starting (each agent logs "unreachable" once per outage, then
    /// reconnects with a new lease and watch).
    startup_outages: usize,
    /// The same during the measured pushes and the idle window.
    outages: usize,
    /// Transaction sent → the gateway's apply returned (in this process).
    push_to_applied: Stats,
    /// Transaction sent → etcd showed the gateway's status with the push applied (a watch).
    push_to_ack: Stats,
    /// The gateway's apply alone (validate, table build, swap), without the agent's decode.
    apply: Stats,
    /// Each measured push on its own.
    per_push: Vec<Round>,
    /// Pushes × gateways that did not report within the timeout.
    missing: usize,
    /// What went wrong for the pusher (a prepare tried again, a commit's answer lost) in the
    /// measured pushes.
    push_errors: Vec<String>,
    /// etcd's CPU seconds per measured push, transaction sent → last ACK seen.
    etcd_cpu_per_push_s: f64,
    /// This process's (agents, pusher, watcher) CPU seconds per measured push, the same window.
    bench_cpu_per_push_s: f64,
    etcd_rss_peak_mib: f64,
    etcd_rss_end_mib: f64,
    /// CPU with the fleet idle (status writes and lease keep-alives only), % of one core.
    idle_etcd_cpu_pct: f64,
    idle_bench_cpu_pct: f64,
    /// Store revisions per second with the fleet idle (every status write is one).
    idle_revisions_per_s: f64,
    etcd_db_mib: f64,
    /// One read of the whole fleet (`store::read`), as a push's prepare and each 250 ms poll of
    /// the rollout driver do.
    read_s: f64,
    /// This process's memory growth from starting the agents, per agent.
    agent_kib: f64,
    /// The same from building the in-memory gateways, per gateway.
    gateway_kib: f64,
    /// etcd's memory growth from the agents connecting, per agent.
    etcd_kib_per_agent: f64,
    /// One gateway's desired value written as `push::commit` writes it, and read back as the
    /// agent reads it (JSON to a value, to text, to a config), ms each, on one core.
    encode_ms: f64,
    decode_ms: f64,
}

fn main() -> Result<()> {
    START.get_or_init(Instant::now);
    let args = Args::parse();
    let settings = args.settings();
    if let (Some(n), Some(row)) = (args.one, &args.row) {
        return one_size(n, &settings, row);
    }
    if let Some(json) = &args.replot {
        return replot(json);
    }
    ensure!(hutong::lab::etcd::installed(), "etcd is not installed: run scripts/setup.sh");
    let logs = match &args.out {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            LogDir::Kept(d.clone())
        }
        None => LogDir::Temp(tempfile::tempdir()?),
    };
    let machine = Machine::here();
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut rows = Vec::new();
    for &n in &settings.sizes {
        let row = logs.path().join(format!("row-{n}.json"));
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(["--one", &n.to_string(), "--row"])
            .arg(&row)
            .args(["--rounds", &settings.rounds.to_string()])
            .args(["--idle", &settings.idle.as_secs_f64().to_string()])
            .args(["--lease-ttl", &settings.lease_ttl.as_secs_f64().to_string()])
            .args(["--timeout", &settings.timeout.as_secs_f64().to_string()])
            .status()?;
        ensure!(status.success(), "the run of {n} gateways failed ({status})");
        rows.push(serde_json::from_slice::<Row>(&std::fs::read(&row)?)?);
    }
    let table = table(&rows, &date, &machine);
    println!("\n{table}");
    if let Some(dir) = &args.out {
        write_out(dir, &rows, &settings, &date, &machine, &table)?;
    }
    Ok(())
}

/// The chart and tables of an earlier run, from its JSON.
fn replot(json: &Path) -> Result<()> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json)?)?;
    let rows: Vec<Row> = serde_json::from_value(v["results"].clone())?;
    let m = &v["machine"];
    let machine = Machine {
        cpu: m["cpu"].as_str().unwrap_or_default().to_string(),
        cores: m["cores"].as_u64().unwrap_or(0) as usize,
        memory_gib: m["memory_gib"].as_f64().unwrap_or(0.0),
        kernel: m["kernel"].as_str().unwrap_or_default().to_string(),
    };
    let date = v["date"].as_str().unwrap_or_default();
    let dir = json.parent().context("the JSON's directory")?;
    let table = table(&rows, date, &machine);
    std::fs::write(dir.join("fleet-bench.md"), &table)?;
    chart(&rows, &dir.join("push-to-ack.png"), &format!("{date}, {} cores", machine.cores))?;
    println!("{table}\nwrote {}", dir.display());
    Ok(())
}

/// One size, in this process: its row goes to `row`, its agents' log beside it.
fn one_size(n: usize, settings: &Settings, row: &Path) -> Result<()> {
    // Every agent holds a connection; etcd, started from here, inherits the limit too.
    let limit = hutong::api::listen::raise_descriptor_limit()?;
    ensure!(limit >= n as u64 + 256, "open-file limit {limit}: {n} agents need {} descriptors", n + 256);
    let result = run_size(n, settings, &row.with_file_name(format!("agents-{n}.log")))?;
    std::fs::write(row, serde_json::to_string_pretty(&result)?)?;
    Ok(())
}

/// Where the agents' logs go: `--out`, or a directory removed at the end.
enum LogDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl LogDir {
    fn path(&self) -> &Path {
        match self {
            LogDir::Kept(p) => p,
            LogDir::Temp(t) => t.path(),
        }
    }
}

/// The in-memory gateway, clocked: when its last apply that changed something returned, and
/// how long the apply took.
struct Clocked {
    inner: MemoryGateway,
    last: Mutex<Option<(Instant, Duration)>>,
}

impl Clocked {
    fn take(&self) -> Option<(Instant, Duration)> {
        self.last.lock().expect("not poisoned").take()
    }
}

impl Gateway for Clocked {
    fn apply(
        &self,
        config: dataplane::Config,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Applied, hutong_fleet::agent::Refused>> + Send + '_>>
    {
        Box::pin(async move {
            let start = Instant::now();
            let result = self.inner.apply(config).await;
            if let Ok(a) = &result
                && a.changed
            {
                *self.last.lock().expect("not poisoned") = Some((Instant::now(), start.elapsed()));
            }
            result
        })
    }

    fn health(&self) -> Health {
        self.inner.health()
    }
}

/// p50, p99 and max by nearest rank; a `None` (never reported) counts as slower than any.
fn stats(samples: &[Option<f64>]) -> Stats {
    let mut v: Vec<f64> = samples.iter().map(|s| s.unwrap_or(f64::INFINITY)).collect();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let x = *v.get(((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1)) - 1)?;
        x.is_finite().then_some(x)
    };
    Stats { p50: at(0.50), p99: at(0.99), max: at(1.0) }
}

/// One fleet size: etcd, push 1, the agents, the measured pushes, the idle window.
fn run_size(n: usize, s: &Settings, log: &Path) -> Result<Row> {
    let scale = scale_for(n)?;
    let plan = generate(&scale).map_err(|e| anyhow!(e))?;
    ensure!(plan.gateways == n, "the generator gave {} gateways for {n}", plan.gateways);
    let shape = format!("{} × {} × {}", scale.provinces, scale.prefectures, scale.counties);
    println!("{n} gateways ({shape}): starting etcd");
    let etcd = Etcd::start(1)?;
    let etcd_pid = *etcd.pids().first().context("etcd's pid")?;
    let etcd_peak = PeakRss::start(etcd_pid);
    let mut fleet = Fleet::start(&etcd, &plan.yaml, s, log)?;
    fleet.row.shape = shape;
    let mut samples = Samples::default();
    for round in 0..s.rounds {
        fleet.measure(2 + round as u64, &plan.yaml, s, &mut samples)?;
    }
    fleet.summarise(&samples, s.rounds);
    idle(&fleet.control, &mut fleet.client, etcd_pid, s.idle, &mut fleet.row)?;
    if let Some(config) = &samples.config {
        (fleet.row.encode_ms, fleet.row.decode_ms) = codec_ms(config);
    }
    fleet.row.etcd_rss_peak_mib = etcd_peak.peak_kib() as f64 / 1024.0;
    fleet.row.etcd_rss_end_mib = rss_kib(&etcd_pid.to_string()) as f64 / 1024.0;
    let row = fleet.stop();
    // etcd's warnings (slow applies, say), beside the agents' lines.
    std::fs::write(log.with_file_name(format!("etcd-{n}.log")), etcd.log(0))?;
    Ok(row)
}

/// The fleet under test: etcd's client side, the gateways, their agents, the bench's watch.
struct Fleet {
    n: usize,
    endpoints: Endpoints,
    etcd_pid: String,
    /// The pusher and the watch, on a runtime of their own, one thread, so that neither waits
    /// behind the agents' tasks for a worker (the cores are shared all the same).
    control: tokio::runtime::Runtime,
    client: Client,
    gateways: Vec<(String, Arc<Clocked>)>,
    seen: Arc<Mutex<Seen>>,
    watcher: tokio::task::JoinHandle<()>,
    agents: tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stderr: Stderr,
    log: PathBuf,
    row: Row,
}

/// Every gateway's figures over the measured pushes, and one config to time the codec on.
#[derive(Default)]
struct Samples {
    applied: Vec<Option<f64>>,
    acked: Vec<Option<f64>>,
    apply: Vec<Option<f64>>,
    sizes: Vec<PushSize>,
    etcd_cpu: f64,
    bench_cpu: f64,
    config: Option<dataplane::Config>,
}

impl Fleet {
    /// Push 1, the gateways built from it, the bench's watch, then the agents, until every one
    /// shows push 1 applied.
    fn start(etcd: &Etcd, yaml: &str, s: &Settings, log: &Path) -> Result<Fleet> {
        let endpoints = Endpoints::parse(&etcd.urls(), None)?;
        let etcd_pid = etcd.pids().first().context("etcd's pid")?.to_string();
        let control = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let mut client = control.block_on(store::connect(&endpoints))?;
        let first = control.block_on(push_text(&mut client, &endpoints, yaml, &mut Vec::new()))?;
        println!("  push 1: {}", first.size.line());
        let Pushed { prepared, revision, size: first_push, .. } = first;
        let n = prepared.configs.len();
        let before_gateways = rss_kib("self");
        let mut gateways = Vec::with_capacity(n);
        let mut status_keys = Vec::with_capacity(n);
        for (id, (path, config)) in prepared.configs {
            status_keys.push(keys::gateway(&path, &id, GatewayKey::Status));
            let inner = MemoryGateway::new(config).map_err(|e| anyhow!("{id}: {e}"))?;
            gateways.push((id, Arc::new(Clocked { inner, last: Mutex::new(None) })));
        }
        let (seen, created) = (Arc::new(Mutex::new(Seen::default())), Arc::new(AtomicUsize::new(0)));
        let watcher = control.spawn(observe(
            endpoints.clone(),
            status_keys,
            revision + 1,
            seen.clone(),
            created.clone(),
        ));
        let since = Instant::now();
        while created.load(Ordering::Relaxed) < n {
            ensure!(since.elapsed() < s.timeout && !watcher.is_finished(), "the status watch did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (before_agents, etcd_before) = (rss_kib("self"), rss_kib(&etcd_pid));
        let stderr = Stderr::to(log)?;
        let agents = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let started = Instant::now();
        let tasks = gateways
            .iter()
            .map(|(id, gw)| {
                let mut opts = AgentOptions::new(endpoints.clone(), id);
                opts.lease_ttl = s.lease_ttl;
                agents.spawn(agent::run(opts, gw.clone() as Arc<dyn Gateway>, 1))
            })
            .collect();
        mark(&format!("{n} agents started"));
        let up = wait_applied(&seen, 1, n, s.timeout)?;
        mark(&format!("{up} of {n} show push 1 applied"));
        ensure!(up == n, "only {up} of {n} agents ACKed push 1 within {:?}", s.timeout);
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / n as f64;
        let row = Row {
            gateways: n,
            first_push,
            rounds: s.rounds,
            startup_s: started.elapsed().as_secs_f64(),
            startup_outages: outages(log),
            agent_kib: per(rss_kib("self"), before_agents),
            etcd_kib_per_agent: per(rss_kib(&etcd_pid), etcd_before),
            gateway_kib: per(before_agents, before_gateways),
            ..Row::default()
        };
        println!(
            "  {n} agents up: push 1 ACKed by all in {:.2} s ({} outages); {:.0} KiB per agent here, {:.0} in etcd",
            row.startup_s, row.startup_outages, row.agent_kib, row.etcd_kib_per_agent
        );
        let log = log.to_path_buf();
        Ok(Fleet {
            n,
            endpoints,
            etcd_pid,
            control,
            client,
            gateways,
            seen,
            watcher,
            agents,
            tasks,
            stderr,
            log,
            row,
        })
    }

    /// Push `k` (a new policy at the root: every gateway changes), and every gateway's time
    /// from its transaction to its apply and to its status in etcd.
    fn measure(&mut self, k: u64, yaml: &str, s: &Settings, samples: &mut Samples) -> Result<()> {
        let n = self.n;
        let text = with_root_policy(yaml, k)?;
        let (e0, b0, o0) = (cpu_s(&self.etcd_pid), cpu_s("self"), outages(&self.log));
        let pushed = self.control.block_on(push_text(
            &mut self.client,
            &self.endpoints,
            &text,
            &mut self.row.push_errors,
        ))?;
        ensure!(pushed.push == k, "push {} landed; expected {k}", pushed.push);
        let changed = pushed.prepared.waves.iter().map(Vec::len).sum::<usize>();
        ensure!(changed == n, "push {k} changes {changed} of {n} gateways' configs; the bench needs all");
        let got = wait_applied(&self.seen, k, n, s.timeout)?;
        mark(&format!("{got} of {n} show push {k} applied"));
        samples.etcd_cpu += cpu_s(&self.etcd_pid) - e0;
        samples.bench_cpu += cpu_s("self") - b0;
        self.row.missing += n - got;
        let seen = self.seen.lock().expect("not poisoned").applied.remove(&k).unwrap_or_default();
        let since = |t: Instant| t.duration_since(pushed.sent).as_secs_f64();
        let (mut applied, mut acked) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (id, gw) in &self.gateways {
            let clocked = gw.take();
            applied.push(clocked.map(|(t, _)| since(t)));
            samples.apply.push(clocked.map(|(_, d)| d.as_secs_f64()));
            acked.push(seen.get(id).map(|t| since(*t)));
        }
        let round = Round {
            push: k,
            commit_s: pushed.size.commit_s,
            push_to_applied: stats(&applied),
            push_to_ack: stats(&acked),
            outages: outages(&self.log) - o0,
        };
        println!(
            "  push {k}: {}; {got} of {n} ACKed: p50 {} s, p99 {} s; {} agent outages",
            pushed.size.line(),
            secs(round.push_to_ack.p50),
            secs(round.push_to_ack.p99),
            round.outages
        );
        self.row.per_push.push(round);
        samples.applied.extend(applied);
        samples.acked.extend(acked);
        samples.sizes.push(pushed.size);
        samples.config = pushed.prepared.configs.into_values().next().map(|(_, c)| c);
        Ok(())
    }

    /// The measured pushes, pooled: every gateway of every push.
    fn summarise(&mut self, samples: &Samples, rounds: usize) {
        let r = &mut self.row;
        let count = rounds.max(1) as f64;
        let last = samples.sizes.last().cloned().unwrap_or_default();
        r.push = PushSize {
            prepare_s: samples.sizes.iter().map(|p| p.prepare_s).sum::<f64>() / count,
            commit_s: samples.sizes.iter().map(|p| p.commit_s).sum::<f64>() / count,
            ..last
        };
        (r.push_to_applied, r.push_to_ack) = (stats(&samples.applied), stats(&samples.acked));
        r.apply = stats(&samples.apply);
        r.etcd_cpu_per_push_s = samples.etcd_cpu / count;
        r.bench_cpu_per_push_s = samples.bench_cpu / count;
    }

    /// Stops the agents and the watch; the row, with the outages since the start.
    fn stop(self) -> Row {
        for t in &self.tasks {
            t.abort();
        }
        self.watcher.abort();
        self.agents.shutdown_timeout(Duration::from_secs(5));
        drop(self.stderr);
        let mut row = self.row;
        row.outages = outages(&self.log) - row.startup_outages;
        row
    }
}

/// The fleet idle for `window`: etcd's and this process's CPU, the store's revisions, its size.
fn idle(
    rt: &tokio::runtime::Runtime,
    client: &mut Client,
    etcd_pid: u32,
    window: Duration,
    row: &mut Row,
) -> Result<()> {
    let pid = etcd_pid.to_string();
    let r0 = rt.block_on(client.status())?.header().map_or(0, |h| h.revision());
    let (e0, b0, t0) = (cpu_s(&pid), cpu_s("self"), Instant::now());
    std::thread::sleep(window);
    let (e1, b1, secs) = (cpu_s(&pid), cpu_s("self"), t0.elapsed().as_secs_f64());
    let status = rt.block_on(client.status())?;
    let r1 = status.header().map_or(0, |h| h.revision());
    row.idle_etcd_cpu_pct = 100.0 * (e1 - e0) / secs;
    row.idle_bench_cpu_pct = 100.0 * (b1 - b0) / secs;
    row.idle_revisions_per_s = (r1 - r0) as f64 / secs;
    row.etcd_db_mib = status.db_size() as f64 / 1048576.0;
    let start = Instant::now();
    rt.block_on(store::read(client, None))?;
    row.read_s = start.elapsed().as_secs_f64();
    Ok(())
}

/// What one gateway's desired value costs to write as `push::commit` does and to read as the
/// agent does, ms each (the mean of 200, on this thread).
fn codec_ms(config: &dataplane::Config) -> (f64, f64) {
    const TIMES: u32 = 200;
    let encode = || {
        let value = serde_json::from_str(&config.to_json()).expect("a config is JSON");
        let desired = Desired { gateway: config.gateway.clone(), push: 2, config: value };
        serde_json::to_string(&desired).expect("desired serialises")
    };
    let start = Instant::now();
    let mut value = String::new();
    for _ in 0..TIMES {
        value = std::hint::black_box(encode());
    }
    let encode_ms = start.elapsed().as_secs_f64() * 1e3 / f64::from(TIMES);
    let start = Instant::now();
    for _ in 0..TIMES {
        let desired: Desired = serde_json::from_slice(value.as_bytes()).expect("it decodes");
        std::hint::black_box(push::desired_config(&desired).expect("a valid config"));
    }
    (encode_ms, start.elapsed().as_secs_f64() * 1e3 / f64::from(TIMES))
}
