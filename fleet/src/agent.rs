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

use anyhow::{Context, Result, bail};
use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use hutong_config::Config;

use crate::{
    keys::{self, GatewayKey, NodePath},
    push::desired_config,
    records::{Desired, Health, Status, Verdict, now},
    store::{Endpoints, connect, timed},
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
    /// The status lease's time to live: a gateway silent this long shows as dead.
    pub lease_ttl: Duration,
    /// How often the status (last seen, health) is rewritten and the lease kept alive.
    pub report_every: Duration,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl AgentOptions {
    pub fn new(endpoints: Endpoints, gateway: &str) -> AgentOptions {
        AgentOptions {
            endpoints,
            gateway: gateway.to_string(),
            lease_ttl: Duration::from_secs(10),
            report_every: Duration::from_secs(2),
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
                    tokio::time::sleep(Duration::from_secs(1)).await;
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
                let jitter =
                    Duration::from_millis(u64::from(std::process::id() % 7) * 97 + (now() as u64 % 5) * 53);
                tokio::time::sleep(backoff + jitter.min(backoff / 2)).await;
                backoff = (backoff * 2).min(opts.max_backoff);
                continue;
            }
        }
        if outage_said {
            outage_said = false;
        }
    }
}

/// The largest value the agent reads (a desired config); etcd-client's default is 4 MiB.
const MAX_MESSAGE: usize = 256 << 20;

/// What the agent reads at the start of a session, at one revision: its home and, there, its
/// desired config. Read together so that a push moving the gateway cannot fall between them.
struct Start {
    path: Option<NodePath>,
    desired: Option<(Vec<u8>, i64)>,
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
    let mut desired = None;
    if let Some(p) = &path {
        let key = keys::gateway(p, id, GatewayKey::Desired);
        let opts = GetOptions::new().with_revision(revision);
        let resp = timed("reading the desired config", kv.get(key, Some(opts))).await?;
        desired = resp.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision()));
    }
    Ok(Start { path, desired, revision })
}

/// A task that ends when this handle goes.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection's worth of agent: returns `Ok` to start over at once (the gateway's home
/// changed), `Err` when the store went away.
async fn session(opts: &AgentOptions, gw: &dyn Gateway, state: &mut State) -> Result<()> {
    let mut client = connect(&opts.endpoints).await?;
    let ttl = opts.lease_ttl.as_secs().max(2) as i64;
    let lease = timed("granting the status lease", client.lease_grant(ttl, None)).await?.id();
    let (mut keeper, mut acks) = timed("keeping the lease", client.lease_keep_alive(lease)).await?;
    // The lease is kept alive by a task of its own, so a long apply never lets it lapse.
    let every = opts.report_every;
    let keep: tokio::task::JoinHandle<Result<()>> = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            timed("keeping the lease", keeper.keep_alive()).await?;
            match acks.message().await.context("the lease's keep-alive stream")? {
                Some(a) if a.ttl() <= 0 => bail!("the status lease expired"),
                Some(_) => {}
                None => bail!("the lease's keep-alive stream ended"),
            }
        }
    });
    // Stopped with the session, however it ends (an aborted agent included): a dead agent's
    // lease must lapse.
    let mut keep = AbortOnDrop(keep);
    let result = tokio::select! {
        r = watch_and_apply(opts, gw, state, &mut client, lease) => r,
        ended = &mut keep.0 => match ended {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("the lease keeper stopped")),
        },
    };
    drop(keep);
    // A clean end (the gateway moved): the old status goes now rather than at the lease's end.
    if result.is_ok() {
        let _ = timed("revoking the lease", client.lease_revoke(lease)).await;
    }
    result
}

async fn watch_and_apply(
    opts: &AgentOptions,
    gw: &dyn Gateway,
    state: &mut State,
    client: &mut Client,
    lease: i64,
) -> Result<()> {
    let id = opts.gateway.as_str();
    let home_key = keys::home(id);
    let Start { path, desired, revision } = start(client, id).await?;
    let desired_key = path.as_ref().map(|p| keys::gateway(p, id, GatewayKey::Desired));
    let status_key = path.as_ref().map(|p| keys::gateway(p, id, GatewayKey::Status));
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
    let put_status = |client: &mut Client, value: String| {
        let key = status_key.clone();
        let mut kv = client.kv_client();
        async move {
            if let Some(k) = key {
                timed("writing the status", kv.put(k, value, Some(PutOptions::new().with_lease(lease))))
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    put_status(client, report(state)).await?;
    // Both keys from just after what was read: nothing in between is missed, nothing old replayed.
    let from = WatchOptions::new().with_start_revision(revision + 1);
    let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let mut watch =
        timed("watching the gateway's home", watcher.watch(home_key.as_str(), Some(from.clone()))).await?;
    if let Some(k) = &desired_key {
        watch.watch(k.as_str(), Some(from)).await?;
    }
    let current_home = path.as_ref().map(|p| p.join("/"));
    // The status was just written: the next one is due a period from now.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + opts.report_every, opts.report_every);
    loop {
        tokio::select! {
            _ = tick.tick() => put_status(client, report(state)).await?,
            msg = watch.message() => {
                let Some(resp) = msg.context("the watch")? else { bail!("the watch ended") };
                if resp.canceled() {
                    bail!("the watch was cancelled: {}", resp.cancel_reason());
                }
                // Of several changes to the desired config in one answer, the last one counts:
                // the ones before it are already superseded.
                let mut latest = None;
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    if kv.key() == home_key.as_bytes() {
                        let now_home = (ev.event_type() == EventType::Put)
                            .then(|| String::from_utf8_lossy(kv.value()).into_owned());
                        if now_home != current_home {
                            // Moved, added or removed: start over at the new home.
                            return Ok(());
                        }
                        continue;
                    }
                    latest = Some((ev.event_type(), kv.value().to_vec()));
                }
                match latest {
                    Some((EventType::Put, value)) => judge(gw, state, &value, id).await,
                    Some((EventType::Delete, _)) => idle(state),
                    None => continue,
                }
                put_status(client, report(state)).await?;
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
    let desired: Desired = match serde_json::from_slice(value) {
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
    let config = match desired_config(&desired) {
        Ok(c) => c,
        Err(e) => return nack(state, push, vec![format!("invalid config: {e}")]),
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
