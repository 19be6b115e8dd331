//! The gateway's agent: it watches the gateway's desired config in the store, applies each new
//! one through the gateway's own atomic apply, and reports ACK or NACK (with every error) and
//! its health under a lease, so that a dead gateway's status vanishes.
//!
//! Static stability: the store is never in the forwarding path. When it is unreachable the
//! gateway runs on what it applied last, the agent retries with backoff (1 s doubling to 30 s,
//! with jitter, so that a province's agents do not return in lockstep), and on reconnect it
//! reads the desired config again and applies it if it differs. A desired config that is
//! deleted or unreadable changes nothing on the gateway.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::time::Instant;

use anyhow::{Context, Result, bail};
use etcd_client::{
    Client, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, WatchOptions,
};
use hutong_config::Config;

use crate::{
    keys::{self, GatewayKey, NodePath},
    push::desired_config,
    records::{Desired, DesiredText, Health, HealthCheck, Status, Verdict, now},
    store::{Endpoints, REQUEST_TIMEOUT, connect, timed},
};

/// What the agent needs of the gateway it runs in.
pub trait Gateway: Send + Sync {
    /// Applies `config` atomically; `Err`: refused or failed (every reason), nothing changed.
    fn apply(&self, config: Config) -> Pin<Box<dyn Future<Output = Result<Applied, Refused>> + Send + '_>>;
    /// The counters a rollout watches.
    fn health(&self) -> Health;
}

/// Why an apply did not go through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The gateway refused the config or failed to apply it: a NACK, with every reason.
    Errors(Vec<String>),
    /// The gateway is stopping: no verdict (a NACK would halt a rollout for nothing).
    Stopping,
}

/// An apply that went through.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    /// The gateway's local config version now running.
    pub config_version: u64,
    /// Whether anything changed (false: it ran that config already).
    pub changed: bool,
}

#[derive(Clone, Debug)]
pub struct AgentOptions {
    pub endpoints: Endpoints,
    pub gateway: String,
    /// The status lease's time to live: a gateway whose agent is silent this long shows as
    /// dead. The lease is kept alive every third of it (a keep-alive writes nothing).
    pub lease_ttl: Duration,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl AgentOptions {
    pub fn new(endpoints: Endpoints, gateway: &str) -> AgentOptions {
        AgentOptions {
            endpoints,
            gateway: gateway.to_string(),
            lease_ttl: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What the agent knows across reconnections.
struct State {
    status: Status,
}

/// Runs the agent forever (abort its task to stop it). `config_version`: what the gateway runs
/// at the start.
pub async fn run(opts: AgentOptions, gateway: Arc<dyn Gateway>, config_version: u64) {
    let started = now();
    let mut state = State {
        status: Status {
            gateway: opts.gateway.clone(),
            verdict: Verdict::Idle,
            desired_push: 0,
            applied_push: 0,
            config_version,
            errors: Vec::new(),
            last_seen: started,
            lease_ttl_s: lease_ttl(&opts).as_secs_f64(),
            check_at: 0.0,
            since: started,
            health: Health::default(),
            agent: env!("CARGO_PKG_VERSION").to_string(),
        },
    };
    let mut backoff = Duration::from_secs(1);
    let mut outage_said = false;
    loop {
        let t0 = std::time::Instant::now();
        match session(&opts, gateway.as_ref(), &mut state).await {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                // A home that changes again and again must not spin the agent.
                if t0.elapsed() < Duration::from_secs(1) {
                    tokio::time::sleep(
                        Duration::from_secs(1) + jitter(&opts.gateway, Duration::from_secs(1)),
                    )
                    .await;
                }
            }
            Err(e) => {
                if !outage_said {
                    eprintln!(
                        "hutong agent {}: the fleet store is unreachable ({e:#}); forwarding goes on with config version {}; retrying",
                        opts.gateway, state.status.config_version
                    );
                    outage_said = true;
                }
                // A session that ran a while was an outage starting now: begin the backoff again.
                if t0.elapsed() > opts.max_backoff {
                    backoff = Duration::from_secs(1);
                }
                // Full jitter, per gateway: after an outage or an overload a province's agents
                // come back spread over the whole backoff, not together.
                tokio::time::sleep(Duration::from_millis(100) + jitter(&opts.gateway, backoff)).await;
                backoff = (backoff * 2).min(opts.max_backoff);
                continue;
            }
        }
        if outage_said {
            outage_said = false;
        }
    }
}

/// A random wait up to `upto`, different for each gateway and each call.
fn jitter(id: &str, upto: Duration) -> Duration {
    use std::hash::{BuildHasher, Hash, Hasher};
    // `RandomState` is seeded at random per process and stepped per instance; the gateway's id
    // and the clock's nanoseconds set apart agents of one process started together.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    id.hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    upto.mul_f64((h.finish() % 1_000_000) as f64 / 1_000_000.0)
}

/// The lease's time to live, at least 3 s (it is renewed every third of it).
fn lease_ttl(opts: &AgentOptions) -> Duration {
    opts.lease_ttl.max(Duration::from_secs(3))
}

/// The largest value the agent reads (a desired config); etcd-client's default is 4 MiB.
const MAX_MESSAGE: usize = 256 << 20;

/// What the agent reads at the start of a session, at one revision: its home and, there, its
/// desired config. Read together so that a push moving the gateway cannot fall between them.
struct Start {
    path: Option<NodePath>,
    desired: Option<(Vec<u8>, i64)>,
    /// A rollout's health check waiting for this gateway (its `at`).
    check: Option<f64>,
    revision: i64,
}

async fn start(client: &mut Client, id: &str) -> Result<Start> {
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let resp = timed("reading the gateway's home", kv.get(keys::home(id), None)).await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let path: Option<NodePath> = resp
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).split('/').map(String::from).collect());
    let (mut desired, mut check) = (None, None);
    if let Some(p) = &path {
        let key = keys::gateway(p, id, GatewayKey::Desired);
        let opts = GetOptions::new().with_revision(revision);
        let resp = timed("reading the desired config", kv.get(key, Some(opts.clone()))).await?;
        desired = resp.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision()));
        let key = keys::gateway(p, id, GatewayKey::Check);
        let resp = timed("reading the health check", kv.get(key, Some(opts))).await?;
        check = resp.kvs().first().and_then(|kv| check_at(kv.value()));
    }
    Ok(Start { path, desired, check, revision })
}

/// The `at` of a health check value (`None`: not one).
fn check_at(value: &[u8]) -> Option<f64> {
    serde_json::from_slice::<HealthCheck>(value).ok().map(|c| c.at)
}

/// A task that ends when this handle goes.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection's worth of agent: returns `Ok` to start over at once (the gateway's home
/// changed), `Err` when the store went away (the watch failed, or the store stopped answering
/// the reporter for a lease's time). A request that is only slow does not end it.
async fn session(opts: &AgentOptions, gw: &dyn Gateway, state: &mut State) -> Result<()> {
    let mut client = connect(&opts.endpoints).await?;
    let id = opts.gateway.as_str();
    let home_key = keys::home(id);
    let Start { path, desired, check, revision } = start(&mut client, id).await?;
    // A check that waits is answered by this session's first status.
    if let Some(at) = check {
        state.status.check_at = at;
    }
    match (&path, desired) {
        (Some(_), Some((value, _))) => judge(gw, state, &value, id).await,
        (Some(_), None) => idle(state),
        (None, _) => {
            eprintln!(
                "hutong agent {id}: the fleet's plan has no gateway {id} (now); waiting for a push that adds it"
            )
        }
    }
    let report = |state: &mut State| {
        state.status.last_seen = now();
        state.status.health = gw.health();
        serde_json::to_string(&state.status).expect("status serialises")
    };
    // The status is written by a reporter of its own, which also keeps the lease: the watch
    // below never waits on a write, and a slow write never ends the session.
    let (wanted, wanted_rx) = tokio::sync::watch::channel(report(state));
    let mut reporter = path.as_ref().map(|p| {
        let reporter = Reporter {
            client: client.clone(),
            key: keys::gateway(p, id, GatewayKey::Status),
            ttl: lease_ttl(opts),
            wanted: wanted_rx,
            id: id.to_string(),
        };
        AbortOnDrop(tokio::spawn(reporter.run()))
    });
    // Its keys from just after what was read: nothing in between is missed, nothing old
    // replayed. One stream: the home, the desired config, a rollout's request for health.
    let from = WatchOptions::new().with_start_revision(revision + 1);
    let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let mut watch =
        timed("watching the gateway's home", watcher.watch(home_key.as_str(), Some(from.clone()))).await?;
    let (desired_key, check_key) = match &path {
        Some(p) => (keys::gateway(p, id, GatewayKey::Desired), keys::gateway(p, id, GatewayKey::Check)),
        None => (String::new(), String::new()),
    };
    if path.is_some() {
        timed("watching the desired config", watch.watch(desired_key.as_str(), Some(from.clone()))).await?;
        timed("watching for health checks", watch.watch(check_key.as_str(), Some(from))).await?;
    }
    let current_home = path.as_ref().map(|p| p.join("/"));
    let result: Result<()> = loop {
        let msg = tokio::select! {
            msg = watch.message() => msg,
            ended = async { (&mut reporter.as_mut().expect("only polled with a reporter").0).await },
                if reporter.is_some() =>
            {
                break match ended {
                    Ok(Err(e)) => Err(e),
                    _ => Err(anyhow::anyhow!("the status reporter stopped")),
                };
            }
        };
        let resp = match msg.context("the watch") {
            Ok(Some(resp)) => resp,
            Ok(None) => break Err(anyhow::anyhow!("the watch ended")),
            Err(e) => break Err(e),
        };
        if resp.canceled() {
            break Err(anyhow::anyhow!("the watch was cancelled: {}", resp.cancel_reason()));
        }
        // Of several changes to the desired config in one answer, the last one counts: the
        // ones before it are already superseded.
        let mut latest = None;
        let mut checked = false;
        let mut moved = false;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            if kv.key() == home_key.as_bytes() {
                let now_home = (ev.event_type() == EventType::Put)
                    .then(|| String::from_utf8_lossy(kv.value()).into_owned());
                // Moved, added or removed: start over at the new home.
                moved |= now_home != current_home;
            } else if kv.key() == check_key.as_bytes() {
                if ev.event_type() == EventType::Put
                    && let Some(at) = check_at(kv.value())
                {
                    state.status.check_at = at;
                    checked = true;
                }
            } else {
                latest = Some((ev.event_type(), kv.value().to_vec()));
            }
        }
        if moved {
            break Ok(());
        }
        match latest {
            Some((EventType::Put, value)) => judge(gw, state, &value, id).await,
            Some((EventType::Delete, _)) => idle(state),
            None if checked => {}
            None => continue,
        }
        // A verdict, or a rollout asking for the health now: the reporter writes it.
        wanted.send_replace(report(state));
    };
    // A clean end (the gateway moved): the reporter revokes its lease, so that the old status
    // goes now rather than at the lease's end. Otherwise it is stopped where it stands.
    drop(wanted);
    if let (Ok(()), Some(r)) = (&result, reporter.as_mut()) {
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, &mut r.0).await;
    }
    result
}

/// Keeps a session's status in the store: it holds the lease the status lives under, renews
/// it every third of its time to live, and writes the latest status asked for, retrying a
/// write that failed or took too long until one lands. A status is a value, so only the
/// latest matters: writes coalesce. It gives up (and so ends the session) only when the store
/// has answered nothing for a whole time to live.
struct Reporter {
    client: Client,
    key: String,
    ttl: Duration,
    wanted: tokio::sync::watch::Receiver<String>,
    id: String,
}

/// The status lease and its keep-alive stream.
struct Lease {
    id: i64,
    keeper: LeaseKeeper,
    acks: LeaseKeepAliveStream,
}

impl Lease {
    async fn grant(client: &mut Client, ttl: Duration) -> Result<Lease> {
        let id =
            timed("granting the status lease", client.lease_grant(ttl.as_secs() as i64, None)).await?.id();
        let (keeper, acks) = timed("keeping the lease", client.lease_keep_alive(id)).await?;
        Ok(Lease { id, keeper, acks })
    }

    /// One renewal: `Ok(true)` renewed, `Ok(false)` the lease is gone (expired).
    async fn renew(&mut self, client: &mut Client) -> Result<bool> {
        let once = async {
            self.keeper.keep_alive().await?;
            self.acks.message().await
        };
        match timed("renewing the status lease", once).await {
            Ok(Some(a)) => Ok(a.ttl() > 0),
            Ok(None) | Err(_) => {
                // The stream broke (a busy or restarted member): open another one on the same
                // connection and try once more; the lease itself may well be alive.
                let (keeper, acks) = timed("keeping the lease", client.lease_keep_alive(self.id)).await?;
                (self.keeper, self.acks) = (keeper, acks);
                self.keeper.keep_alive().await?;
                match timed("renewing the status lease", self.acks.message()).await? {
                    Some(a) => Ok(a.ttl() > 0),
                    None => bail!("etcd: the lease's keep-alive stream ended"),
                }
            }
        }
    }
}

impl Reporter {
    async fn run(mut self) -> Result<()> {
        let every = self.ttl / 3;
        // The status lease (`None`: not granted yet, or lost: granted again at the next try).
        let mut lease: Option<Lease> = None;
        // What the store holds under the current lease (`None`: nothing yet, or a lease since
        // lost took it along).
        let mut written: Option<String> = None;
        let mut answered = Instant::now();
        let mut renew_at = Instant::now() + every;
        let mut retry_at = Instant::now();
        let mut said = false;
        let say = |e: &anyhow::Error, said: &mut bool| {
            if !*said {
                eprintln!("hutong agent {}: {e:#}; retrying", self.id);
                *said = true;
            }
        };
        loop {
            let want = self.wanted.borrow_and_update().clone();
            if lease.is_none() && Instant::now() >= retry_at {
                match Lease::grant(&mut self.client, self.ttl).await {
                    Ok(l) => {
                        lease = Some(l);
                        written = None;
                        answered = Instant::now();
                        renew_at = Instant::now() + every;
                    }
                    Err(e) => {
                        say(&e, &mut said);
                        retry_at = Instant::now()
                            + Duration::from_millis(500)
                            + jitter(&self.id, Duration::from_secs(2));
                    }
                }
            }
            if let Some(l) = &lease
                && written.as_ref() != Some(&want)
                && Instant::now() >= retry_at
            {
                let put = PutOptions::new().with_lease(l.id);
                match timed(
                    "writing the status",
                    self.client.put(self.key.as_str(), want.as_str(), Some(put)),
                )
                .await
                {
                    Ok(_) => {
                        written = Some(want);
                        answered = Instant::now();
                        said = false;
                    }
                    Err(e) if format!("{e:#}").contains("lease not found") => {
                        // Expired: the status went with it. A new lease, and the status again.
                        lease = None;
                        continue;
                    }
                    Err(e) => {
                        say(&e, &mut said);
                        retry_at = Instant::now()
                            + Duration::from_millis(500)
                            + jitter(&self.id, Duration::from_secs(2));
                    }
                }
            }
            if answered.elapsed() > self.ttl {
                bail!("the store answered none of the status writes and lease renewals for {:?}", self.ttl);
            }
            let pending = lease.is_none() || written.as_ref() != Some(&*self.wanted.borrow());
            tokio::select! {
                _ = tokio::time::sleep_until(renew_at), if lease.is_some() => {
                    renew_at = Instant::now() + every;
                    let l = lease.as_mut().expect("only with a lease");
                    match l.renew(&mut self.client).await {
                        Ok(true) => answered = Instant::now(),
                        // Expired (the store could not renew it in time): granted again above.
                        Ok(false) => lease = None,
                        Err(e) => {
                            say(&e, &mut said);
                            // Renew again soon rather than a third of the lease later.
                            renew_at = Instant::now() + Duration::from_secs(1) + jitter(&self.id, Duration::from_secs(1));
                        }
                    }
                }
                changed = self.wanted.changed() => {
                    if changed.is_err() {
                        // The session ended cleanly: its status goes now.
                        if let Some(l) = &lease {
                            let _ = timed("revoking the lease", self.client.lease_revoke(l.id)).await;
                        }
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep_until(retry_at), if pending => {}
            }
        }
    }
}

/// No desired config: the gateway runs on; the status says so.
fn idle(state: &mut State) {
    state.status.verdict = Verdict::Idle;
    state.status.errors = vec!["no desired config in the store: the running config stays".into()];
}

/// Decodes and applies a desired value, and records ACK or NACK.
async fn judge(gw: &dyn Gateway, state: &mut State, value: &[u8], id: &str) {
    let desired: DesiredText = match serde_json::from_slice(value) {
        Ok(d) => d,
        Err(e) => return nack(state, None, vec![format!("the desired value is not a desired config: {e}")]),
    };
    let push = Some(desired.push);
    if desired.gateway != id {
        return nack(
            state,
            push,
            vec![format!("this is gateway {id}; the desired config is for {}", desired.gateway)],
        );
    }
    let config = match Config::from_json(desired.config.get()) {
        Ok(c) => c,
        Err(errors) => {
            let text = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
            return nack(state, push, vec![format!("invalid config: {text}")]);
        }
    };
    if config.gateway != id {
        return nack(
            state,
            push,
            vec![format!("this is gateway {id}; the config is gateway {}'s", config.gateway)],
        );
    }
    match gw.apply(config).await {
        Ok(a) => {
            if a.changed {
                eprintln!(
                    "hutong agent {id}: applied push {} (config version {})",
                    desired.push, a.config_version
                );
            }
            state.status.verdict = Verdict::Ack;
            state.status.desired_push = desired.push;
            state.status.applied_push = desired.push;
            state.status.config_version = a.config_version;
            state.status.errors.clear();
        }
        Err(Refused::Errors(errors)) => nack(state, push, errors),
        Err(Refused::Stopping) => {}
    }
}

fn nack(state: &mut State, push: Option<u64>, errors: Vec<String>) {
    eprintln!("hutong agent {}: NACK: {}", state.status.gateway, errors.join("; "));
    state.status.verdict = Verdict::Nack;
    state.status.desired_push = push.unwrap_or(0);
    state.status.errors = errors;
}

/// The gateway's desired config, read once (a gateway's first start, with nothing applied yet).
pub async fn fetch_desired(endpoints: &Endpoints, id: &str) -> Result<Option<(u64, Config)>> {
    let mut client = connect(endpoints).await?;
    let Start { path: Some(path), desired: Some((value, _)), .. } = start(&mut client, id).await? else {
        return Ok(None);
    };
    let key = keys::gateway(&path, id, GatewayKey::Desired);
    let desired: Desired =
        serde_json::from_slice(&value).with_context(|| format!("{key}: not a desired config"))?;
    let config = desired_config(&desired).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    anyhow::ensure!(config.gateway == id, "{key}: the config is gateway {}'s", config.gateway);
    Ok(Some((desired.push, config)))
}
