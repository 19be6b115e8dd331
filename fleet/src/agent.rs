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
use etcd_client::{Client, EventType, PutOptions, WatchOptions};
use hutong_config::Config;

use crate::{
    keys::{self, GatewayKey, NodePath},
    push::desired_config,
    records::{Desired, Health, Status, Verdict, now},
    store::{Endpoints, connect, timed},
};

/// What the agent needs of the gateway it runs in.
pub trait Gateway: Send + Sync {
    /// Applies `config` atomically; `Err`: refused or failed, every reason, nothing changed.
    fn apply(
        &self,
        config: Config,
    ) -> Pin<Box<dyn Future<Output = Result<Applied, Vec<String>>> + Send + '_>>;
    /// The counters a rollout watches.
    fn health(&self) -> Health;
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
    /// The desired key's revision last judged.
    judged: i64,
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
        judged: 0,
    };
    let mut backoff = Duration::from_secs(1);
    let mut outage_said = false;
    loop {
        let t0 = std::time::Instant::now();
        match session(&opts, gateway.as_ref(), &mut state).await {
            Ok(()) => backoff = Duration::from_secs(1),
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

/// Where the gateway's keys are: its home, as the last push wrote it.
async fn home(client: &mut Client, id: &str) -> Result<Option<(NodePath, i64)>> {
    let resp = timed("reading the gateway's home", client.get(keys::home(id), None)).await?;
    Ok(resp.kvs().first().map(|kv| {
        (String::from_utf8_lossy(kv.value()).split('/').map(String::from).collect(), kv.mod_revision())
    }))
}

/// One connection's worth of agent: returns `Ok` to reconnect at once (the gateway moved),
/// `Err` when the store went away.
async fn session(opts: &AgentOptions, gw: &dyn Gateway, state: &mut State) -> Result<()> {
    let mut client = connect(&opts.endpoints).await?;
    let ttl = opts.lease_ttl.as_secs().max(2) as i64;
    let lease = timed("granting the status lease", client.lease_grant(ttl, None)).await?.id();
    let (mut keeper, mut acks) = timed("keeping the lease", client.lease_keep_alive(lease)).await?;
    let result = watch_and_apply(opts, gw, state, &mut client, lease, &mut keeper, &mut acks).await;
    // A clean end (the gateway moved): the old status goes now rather than at the lease's end.
    if result.is_ok() {
        let _ = timed("revoking the lease", client.lease_revoke(lease)).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn watch_and_apply(
    opts: &AgentOptions,
    gw: &dyn Gateway,
    state: &mut State,
    client: &mut Client,
    lease: i64,
    keeper: &mut etcd_client::LeaseKeeper,
    acks: &mut etcd_client::LeaseKeepAliveStream,
) -> Result<()> {
    let id = opts.gateway.as_str();
    let (path, home_rev) = match home(client, id).await? {
        Some(h) => (Some(h.0), h.1),
        None => (None, 0),
    };
    let desired_key = path.as_ref().map(|p| keys::gateway(p, id, GatewayKey::Desired));
    let status_key = path.as_ref().map(|p| keys::gateway(p, id, GatewayKey::Status));
    // The desired config as it is now, then every change after that revision.
    let mut from = home_rev;
    if let Some(k) = &desired_key {
        let resp = timed("reading the desired config", client.get(k.as_str(), None)).await?;
        from = resp.header().map_or(0, |h| h.revision());
        match resp.kvs().first() {
            Some(kv) => judge(gw, state, kv.value(), kv.mod_revision(), id).await,
            None => idle(state),
        }
    } else {
        eprintln!(
            "hutong agent {id}: the fleet's plan has no gateway {id} (yet); waiting for a push that adds it"
        );
        from = from.max(1);
    }
    let report = |state: &mut State| {
        state.status.last_seen = now();
        state.status.health = gw.health();
        serde_json::to_string(&state.status).expect("status serialises")
    };
    if let Some(k) = &status_key {
        let value = report(state);
        timed("writing the status", client.put(k.as_str(), value, Some(PutOptions::new().with_lease(lease))))
            .await?;
    }
    let mut watch = timed(
        "watching the gateway's home",
        client.watch(keys::home(id), Some(WatchOptions::new().with_start_revision(from + 1))),
    )
    .await?;
    if let Some(k) = &desired_key {
        watch.watch(k.as_str(), Some(WatchOptions::new().with_start_revision(from + 1))).await?;
    }
    let mut tick = tokio::time::interval(opts.report_every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                timed("keeping the lease", keeper.keep_alive()).await?;
                if let Some(k) = &status_key {
                    let value = report(state);
                    timed("writing the status", client.put(k.as_str(), value, Some(PutOptions::new().with_lease(lease)))).await?;
                }
            }
            ack = acks.message() => {
                match ack.context("the lease's keep-alive stream")? {
                    Some(a) if a.ttl() <= 0 => bail!("the status lease expired"),
                    Some(_) => {}
                    None => bail!("the lease's keep-alive stream ended"),
                }
            }
            msg = watch.message() => {
                let Some(resp) = msg.context("the watch")? else { bail!("the watch ended") };
                if resp.canceled() {
                    bail!("the watch was cancelled: {}", resp.cancel_reason());
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    if kv.key() == keys::home(id).as_bytes() {
                        // Moved (or added, or removed): start over at the new home.
                        return Ok(());
                    }
                    match ev.event_type() {
                        EventType::Put => judge(gw, state, kv.value(), kv.mod_revision(), id).await,
                        EventType::Delete => idle(state),
                    }
                }
                if let Some(k) = &status_key {
                    let value = report(state);
                    timed("writing the status", client.put(k.as_str(), value, Some(PutOptions::new().with_lease(lease)))).await?;
                }
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
async fn judge(gw: &dyn Gateway, state: &mut State, value: &[u8], revision: i64, id: &str) {
    state.judged = revision;
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
        Err(errors) => nack(state, push, errors),
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
    let Some((path, _)) = home(&mut client, id).await? else { return Ok(None) };
    let key = keys::gateway(&path, id, GatewayKey::Desired);
    let resp = timed("reading the desired config", client.get(key.as_str(), None)).await?;
    let Some(kv) = resp.kvs().first() else { return Ok(None) };
    let desired: Desired =
        serde_json::from_slice(kv.value()).with_context(|| format!("{key}: not a desired config"))?;
    let config = desired_config(&desired).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    anyhow::ensure!(config.gateway == id, "{key}: the config is gateway {}'s", config.gateway);
    Ok(Some((desired.push, config)))
}
