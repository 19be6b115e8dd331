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
//! test. Needs Debian's `etcd-server` (`scripts/setup.sh`). docs/fleet-bench.md has results.

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
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// The goal (issue 18): p99 of push to ACK under this at 3,000 gateways.
const GOAL_S: f64 = 2.0;

/// The font the chart's text is drawn with, as hutong-bench's report draws its own.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

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
    /// Seconds of idle fleet (heartbeats only) measured after the pushes [default: 10; --quick: 3].
    #[arg(long)]
    idle: Option<f64>,
    /// The agents' status interval (`AgentOptions::report_every`), seconds.
    #[arg(long, default_value_t = 2.0)]
    report_every: f64,
    /// The agents' status lease (`AgentOptions::lease_ttl`), seconds; at least three of
    /// `--report-every`, which also paces the lease's keep-alives.
    #[arg(long, default_value_t = 10.0)]
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
    report_every: Duration,
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
            report_every: Duration::from_secs_f64(self.report_every),
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
            .args(["--report-every", &settings.report_every.as_secs_f64().to_string()])
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

/// The scale with exactly `n` county gateways (provinces × prefectures × counties), as near
/// 10 prefectures of 10 counties as the generator's layout (34, 15, 31 at most) allows.
fn scale_for(n: usize) -> Result<Scale> {
    let mut best: Option<(usize, Scale)> = None;
    for provinces in 1..=34 {
        for prefectures in 1..=15 {
            if !n.is_multiple_of(provinces * prefectures) {
                continue;
            }
            let counties = n / (provinces * prefectures);
            if !(1..=31).contains(&counties) {
                continue;
            }
            let off = prefectures.abs_diff(10) + counties.abs_diff(10);
            if best.as_ref().is_none_or(|(b, _)| off < *b) {
                best = Some((off, Scale { provinces, prefectures, counties, ..Scale::NATIONAL }));
            }
        }
    }
    best.map(|(_, s)| s).ok_or_else(|| anyhow!("{n} gateways: no provinces × prefectures × counties fits"))
}

/// `yaml` with a policy at the root node, which reaches every gateway, so that every gateway's
/// config changes: push `k`'s rule denies TCP port 1000 + k.
fn with_root_policy(yaml: &str, k: u64) -> Result<String> {
    // The first node's fields come first; the policy goes after its level, at its indent.
    let at = yaml.find("level: ").context("the root node's level")?;
    let start = yaml[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &yaml[start..at];
    ensure!(indent.trim().is_empty(), "the root node's level is not a line of its own");
    let eol = at + yaml[at..].find('\n').context("the end of its line")? + 1;
    let rule = format!(
        "{indent}policies: [{{ name: bench-{k}, protocol: tcp, ports: {}, action: deny }}]\n",
        1000 + k
    );
    Ok(format!("{}{rule}{}", &yaml[..eol], &yaml[eol..]))
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

/// A push written: its number and revision, its size, and when its transaction was sent.
struct Pushed {
    push: u64,
    revision: i64,
    size: PushSize,
    sent: Instant,
    prepared: Prepared,
}

/// Checks `text` as `hutong push` does, prepares and commits it. What fails on the store is
/// tried again on a new connection, as an operator would run `hutong push` again, and kept in
/// `errors`. The latency clock starts at the send that landed.
async fn push_text(
    client: &mut Client,
    endpoints: &Endpoints,
    text: &str,
    errors: &mut Vec<String>,
) -> Result<Pushed> {
    let start = Instant::now();
    let local = control::load_str(text, Path::new("generated.yaml")).map_err(|d| anyhow!("{d}"))?;
    control::validate(&local).map_err(|d| anyhow!("{d}"))?;
    let prepared = prepare(client, endpoints, &local, errors).await?;
    let prepare_s = start.elapsed().as_secs_f64();
    let (ops, bytes) = txn_size(&prepared);
    let (revision, sent) = commit(client, endpoints, &prepared, prepare_s, errors).await?;
    let size = PushSize { ops, bytes, prepare_s, commit_s: sent.elapsed().as_secs_f64() };
    mark(&format!("push {}: committed in {:.2} s", prepared.number(), size.commit_s));
    Ok(Pushed { push: prepared.number(), revision, size, sent, prepared })
}

/// `push::prepare`, tried again (five times at most) when the store fails it.
async fn prepare(
    client: &mut Client,
    endpoints: &Endpoints,
    local: &control::LoadedPlan,
    errors: &mut Vec<String>,
) -> Result<Prepared> {
    let mut attempts = 0;
    loop {
        match push::prepare(client, local, PushOptions::default()).await {
            Ok(p) => return Ok(p),
            Err(PushError::Store(e)) if attempts < 5 => {
                attempts += 1;
                let error = format!("prepare: {e:#}");
                mark(&format!("{error}; preparing again"));
                errors.push(error);
                *client = reconnect(endpoints).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `push::commit`: its revision and when the send that landed began. A commit whose answer was
/// lost (its connection broke under load) is looked up on a new connection, and sent again
/// (three times at most) only when it did not land.
async fn commit(
    client: &mut Client,
    endpoints: &Endpoints,
    prepared: &Prepared,
    prepare_s: f64,
    errors: &mut Vec<String>,
) -> Result<(i64, Instant)> {
    let n = prepared.number();
    for _ in 0..3 {
        mark(&format!("push {n}: prepared in {prepare_s:.2} s; sending its transaction"));
        let sent = Instant::now();
        let error = match push::commit(client, prepared).await {
            Ok(done) => return Ok((done.revision, sent)),
            Err(e) => format!("commit: {e:#}"),
        };
        mark(&format!("push {n}: {error}; looking it up"));
        errors.push(error);
        *client = reconnect(endpoints).await?;
        if let Some((_, revision)) = store::push_record(client, n).await? {
            return Ok((revision, sent));
        }
        // Not written: sent again (the guard still holds: nothing else pushed), timed anew.
    }
    bail!("push {n} did not land in three tries")
}

/// A new connection for the pusher, tried for a minute (the agents may be reconnecting too).
async fn reconnect(endpoints: &Endpoints) -> Result<Client> {
    let mut last = None;
    for _ in 0..30 {
        match store::connect(endpoints).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.expect("tried").context("reconnecting the pusher"))
}

/// When the bench started: the agents' log carries the bench's steps against it.
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A step of the bench, in the agents' log (stderr, while they run), so that their outage
/// lines can be placed in time.
fn mark(what: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench +{t:.3} s] {what}");
}

/// The operations and bytes (keys and values) of the transaction `push::commit` writes for
/// `p`, by its rules for what this bench pushes (no gateway moves or goes): the version and
/// the push's record, the meta when it changed, each changed or gone fragment, each new home,
/// each changed gateway's desired config, the rollout.
fn txn_size(p: &Prepared) -> (usize, usize) {
    let snap = &p.snapshot;
    let changed: Vec<String> = p.waves.iter().flatten().cloned().collect();
    let record = PushRecord { push: p.number(), gateways: changed.clone(), ..PushRecord::default() };
    let record = serde_json::to_string(&record).expect("a record serialises").len() + p.options.by.len();
    let mut ops = 2;
    let mut bytes = keys::VERSION.len() + keys::push(p.number()).len() + 2 * record;
    let mut add = |key: &str, value: usize| {
        ops += 1;
        bytes += key.len() + value;
    };
    let meta = serde_yaml_ng::to_string(&p.meta).expect("meta serialises");
    if snap.meta.as_deref() != Some(meta.as_str()) {
        add(keys::META, meta.len());
    }
    for f in &p.fragments {
        if snap.fragments.get(&f.path).map(|(y, _)| y) != Some(&f.yaml) {
            add(&keys::node(&f.path), f.yaml.len());
        }
    }
    let kept: std::collections::BTreeSet<_> = p.fragments.iter().map(|f| &f.path).collect();
    for path in snap.fragments.keys().filter(|q| !kept.contains(q)) {
        add(&keys::node(path), 0);
    }
    for (id, (path, config)) in &p.configs {
        let home = path.join("/");
        if snap.homes.get(id) != Some(&home) {
            add(&keys::home(id), home.len());
        }
        if changed.contains(id) {
            let desired = Desired {
                gateway: id.clone(),
                push: p.number(),
                config: serde_json::from_str(&config.to_json()).expect("a config is JSON"),
            };
            let value = serde_json::to_string(&desired).expect("desired serialises").len();
            add(&keys::gateway(path, id, GatewayKey::Desired), value);
        }
    }
    let rollout = Rollout {
        push: p.number(),
        waves: p.waves.clone(),
        written: 1,
        state: RolloutState::Rolling,
        reason: String::new(),
        settle_s: 0.0,
        max_drop_rate: 0.0,
        ack_timeout_s: 0.0,
        started: 0.0,
        updated: 0.0,
    };
    add(keys::ROLLOUT, serde_json::to_string(&rollout).expect("rollout serialises").len());
    (ops, bytes)
}

/// What the bench's own watch saw of the gateways' status records: per push, when each gateway
/// was first shown to have applied it; and any NACK (a NACK means the bench is broken).
#[derive(Default)]
struct Seen {
    applied: HashMap<u64, HashMap<String, Instant>>,
    nacks: Vec<String>,
}

impl Seen {
    fn count(&self, push: u64) -> usize {
        self.applied.get(&push).map_or(0, HashMap::len)
    }
}

/// Watchers per watch stream. etcd queues at most 128 responses per stream (mvcc's
/// `chanBufLen`); a burst beyond that makes its watchers "slow" and their events wait for
/// etcd's retry of slow watchers, which would time that, not the ACKs.
const WATCHERS_PER_STREAM: usize = 64;

/// Watches every gateway's status key from revision `from` on, one watcher per key (a watch of
/// the plan's prefix would also carry every desired config, tens of MiB per push), on streams
/// of [`WATCHERS_PER_STREAM`]; `created` counts the watchers created. Runs until aborted.
async fn observe(
    endpoints: Endpoints,
    status_keys: Vec<String>,
    from: i64,
    seen: Arc<Mutex<Seen>>,
    created: Arc<AtomicUsize>,
) {
    let mut streams = tokio::task::JoinSet::new();
    for chunk in status_keys.chunks(WATCHERS_PER_STREAM) {
        let (endpoints, chunk, seen, created) =
            (endpoints.clone(), chunk.to_vec(), seen.clone(), created.clone());
        streams.spawn(async move {
            // A stream that breaks (the store overloaded) starts again where it was: what it
            // missed comes late, as it would to any watcher.
            let mut next = from;
            loop {
                if let Err(e) = observe_stream(&endpoints, &chunk, &mut next, &seen, &created).await {
                    mark(&format!("the bench's status watch broke ({e:#}); watching again"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
    while streams.join_next().await.is_some() {}
}

/// One stream of watchers, from revision `next`, which it moves on.
async fn observe_stream(
    endpoints: &Endpoints,
    status_keys: &[String],
    next: &mut i64,
    seen: &Mutex<Seen>,
    created: &AtomicUsize,
) -> Result<()> {
    let mut client = store::connect(endpoints).await?;
    let opts = Some(WatchOptions::new().with_start_revision(*next));
    let mut stream = client.watch(status_keys[0].as_str(), opts.clone()).await?;
    for k in &status_keys[1..] {
        stream.watch(k.as_str(), opts.clone()).await?;
    }
    while let Some(resp) = stream.message().await? {
        let at = Instant::now();
        ensure!(!resp.canceled(), "the status watch was cancelled: {}", resp.cancel_reason());
        if resp.created() {
            created.fetch_add(1, Ordering::Relaxed);
        }
        let mut seen = seen.lock().expect("not poisoned");
        for ev in resp.events().iter().filter(|e| e.event_type() == EventType::Put) {
            let Some(kv) = ev.kv() else { continue };
            *next = (*next).max(kv.mod_revision() + 1);
            let Ok(s) = serde_json::from_slice::<Status>(kv.value()) else { continue };
            match s.verdict {
                Verdict::Ack => {
                    seen.applied.entry(s.applied_push).or_default().entry(s.gateway).or_insert(at);
                }
                Verdict::Nack => seen.nacks.push(format!("{}: {}", s.gateway, s.errors.join("; "))),
                Verdict::Idle => {}
            }
        }
    }
    bail!("the stream ended")
}

/// Waits until `n` gateways show push `push` applied, or `within` passes: how many do.
fn wait_applied(seen: &Mutex<Seen>, push: u64, n: usize, within: Duration) -> Result<usize> {
    let start = Instant::now();
    loop {
        let s = seen.lock().expect("not poisoned");
        ensure!(s.nacks.is_empty(), "NACK: {}", s.nacks.join("\n"));
        let got = s.count(push);
        if got >= n || start.elapsed() > within {
            return Ok(got);
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The agents' outage lines in their log so far.
fn outages(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.starts_with("hutong agent") && l.contains("unreachable")).count()
}

/// CPU seconds (user and system) process `pid` ("self", or a number) has used.
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis start at field 3 (proc(5)): utime is
    // field 14 and stime field 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<f64>().ok()).sum();
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks / hz.max(1) as f64
}

/// Resident memory of process `pid` ("self", or a number), KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A process's peak resident memory, sampled every 100 ms on a thread of its own (a peak
/// during a push lasts a moment; a read at the end would miss it).
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start(pid: u32) -> PeakRss {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(&pid.to_string()), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        PeakRss { stop, peak, thread: Some(thread) }
    }

    fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This process's stderr, sent to a file while the agents run (each says one line per apply:
/// thousands per push) and put back on drop.
struct Stderr {
    saved: OwnedFd,
}

impl Stderr {
    fn to(path: &Path) -> Result<Stderr> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let saved = nix::unistd::dup(std::io::stderr())?;
        nix::unistd::dup2_stderr(&file)?;
        Ok(Stderr { saved })
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        let _ = nix::unistd::dup2_stderr(&self.saved);
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
                opts.report_every = s.report_every;
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

fn secs(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.2}"))
}

/// The results as a Markdown table.
fn table(rows: &[Row], date: &str, m: &Machine) -> String {
    let day = date.get(..10).unwrap_or(date);
    let machine = format!("{} cores, {:.0} GiB", m.cores, m.memory_gib);
    let mut s = String::from(
        "| gateways | push: ops / MiB | commit s | push→applied p50 / p99 / max s | push→ACK p50 / p99 / max s \
         | etcd CPU s per push | etcd RSS MiB (peak) | idle CPU % of a core: etcd / agents | per agent KiB \
         | date | machine |\n",
    );
    s.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
    for r in rows {
        let (a, k) = (&r.push_to_applied, &r.push_to_ack);
        s.push_str(&format!(
            "| {} | {} / {:.1} | {:.2} | {} / {} / {} | {} / {} / {} | {:.2} | {:.0} | {:.1} / {:.1} | {:.0} | {day} | {machine} |\n",
            r.gateways,
            r.push.ops,
            r.push.bytes as f64 / 1048576.0,
            r.push.commit_s,
            secs(a.p50),
            secs(a.p99),
            secs(a.max),
            secs(k.p50),
            secs(k.p99),
            secs(k.max),
            r.etcd_cpu_per_push_s,
            r.etcd_rss_peak_mib,
            r.idle_etcd_cpu_pct,
            r.idle_bench_cpu_pct,
            r.agent_kib,
        ));
    }
    s.push_str(
        "\n| gateways | push | commit s | push→applied p50 / p99 / max s | push→ACK p50 / p99 / max s \
         | agent sessions lost |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        for p in &r.per_push {
            let (a, k) = (&p.push_to_applied, &p.push_to_ack);
            s.push_str(&format!(
                "| {} | {} | {:.2} | {} / {} / {} | {} / {} / {} | {} |\n",
                r.gateways,
                p.push,
                p.commit_s,
                secs(a.p50),
                secs(a.p99),
                secs(a.max),
                secs(k.p50),
                secs(k.p99),
                secs(k.max),
                p.outages
            ));
        }
    }
    s
}

fn write_out(dir: &Path, rows: &[Row], s: &Settings, date: &str, m: &Machine, table: &str) -> Result<()> {
    let command = std::env::args().skip(1).filter(|a| a != "--bench").collect::<Vec<_>>().join(" ");
    let json = serde_json::json!({
        "date": date,
        "machine": {"cpu": m.cpu, "cores": m.cores, "memory_gib": m.memory_gib, "kernel": m.kernel},
        "command": format!("cargo bench --bench fleet -- {command}"),
        "rounds": s.rounds,
        "report_every_s": s.report_every.as_secs_f64(),
        "lease_ttl_s": s.lease_ttl.as_secs_f64(),
        "goal_p99_s": GOAL_S,
        "results": rows,
    });
    std::fs::write(dir.join("fleet-bench.json"), serde_json::to_string_pretty(&json)? + "\n")?;
    std::fs::write(dir.join("fleet-bench.md"), table)?;
    chart(rows, &dir.join("push-to-ack.png"), &format!("{date}, {} cores", m.cores))?;
    println!("wrote {}", dir.display());
    Ok(())
}

/// A line of the chart: its name, its figure of a row, its colour.
type Series = (&'static str, fn(&Row) -> Option<f64>, RGBColor);

/// p50 and p99 of push→applied and push→ACK against fleet size (log scale), and the goal.
fn chart(rows: &[Row], path: &Path, when: &str) -> Result<()> {
    let font = std::fs::read(FONT)
        .with_context(|| format!("the chart's font {FONT} (apt install fonts-dejavu-core)"))?;
    let _ =
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()));
    let lo = rows.iter().map(|r| r.gateways).min().unwrap_or(100) as f64 / 1.5;
    let hi = rows.iter().map(|r| r.gateways).max().unwrap_or(3000) as f64 * 1.5;
    let series: [Series; 4] = [
        ("push→ACK p99, all pushes", |r| r.push_to_ack.p99, RGBColor(214, 96, 77)),
        ("push→ACK p50, all pushes", |r| r.push_to_ack.p50, RGBColor(244, 165, 130)),
        ("push→applied p99, all pushes", |r| r.push_to_applied.p99, RGBColor(33, 102, 172)),
        ("push→applied p50, all pushes", |r| r.push_to_applied.p50, RGBColor(103, 169, 207)),
    ];
    // Both axes logarithmic: a hundred gateways answer in tens of milliseconds, a collapsed
    // fleet in tens of seconds, and the goal sits between.
    let each: Vec<(f64, f64)> = rows
        .iter()
        .flat_map(|r| r.per_push.iter().filter_map(|p| Some((r.gateways as f64, p.push_to_ack.p99?))))
        .collect();
    let all =
        rows.iter().flat_map(|r| series.iter().filter_map(|(_, f, _)| f(r))).chain(each.iter().map(|p| p.1));
    let (bottom, top) = all.fold((GOAL_S, GOAL_S), |(a, b), x| (a.min(x), b.max(x)));
    let root = BitMapBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("hutong fleet: push to ACK, in-process agents, one etcd ({when})"),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), (bottom / 2.0..top * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("gateways (agents)")
        .y_desc("seconds from the push's transaction")
        // Only round labels (1, 2 and 5 times a power of ten): the log axis offers many more.
        .x_label_formatter(&|x| {
            let lead = x / 10f64.powf(x.log10().floor());
            if [1.0, 2.0, 5.0].iter().any(|l| (lead - l).abs() < 1e-6) {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| if *y < 1.0 { format!("{y:.2}") } else { format!("{y:.0}") })
        .label_style(("sans-serif", 15))
        .draw()?;
    for (name, f, color) in series {
        let points: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((r.gateways as f64, f(r)?))).collect();
        chart
            .draw_series([PathElement::new(points.clone(), color.stroke_width(2))])?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    let red = series[0].2;
    chart
        .draw_series(each.into_iter().map(|p| Cross::new(p, 6, red.stroke_width(2))))?
        .label("push→ACK p99 of each push")
        .legend(move |(x, y)| Cross::new((x + 8, y), 5, red.stroke_width(2)));
    chart
        .draw_series([PathElement::new([(lo, GOAL_S), (hi, GOAL_S)], BLACK.mix(0.6).stroke_width(2))])?
        .label("goal: p99 under 2 s at 3,000")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6).stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
