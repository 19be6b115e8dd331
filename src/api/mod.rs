//! The agent API: `GET /v1/status`, `GET /v1/config`, `POST /v1/config` (validate and apply
//! atomically), `POST /v1/rollback` and `GET /metrics` (Prometheus/OpenMetrics text), served on
//! loopback by default. The gateway's loop refreshes the counters this reads every 200 ms, so a
//! scrape never touches the BPF maps itself; applies and rollbacks are handed to that loop, which
//! owns the engines, and answered when done.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::Result;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use dataplane::{
    Config, ConfigError, Counters,
    nat::{PoolUsage, query::SessionFilter},
    xdp::flows::FlowStats,
};
use hutong_common::PortCounters;

use crate::slow_path::SessionQuery;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// Every route the server has; `docs/api/openapi.yaml` must document exactly these.
pub const ROUTES: [&str; 6] =
    ["/v1/status", "/v1/config", "/v1/rollback", "/v1/sessions", "/v1/trace", "/metrics"];

/// Sessions one `GET /v1/sessions` returns at most (and by default: 100).
pub const MAX_SESSIONS_PAGE: usize = 1000;

/// The largest config body `POST /v1/config` accepts; larger ones get 413.
pub const MAX_CONFIG_BYTES: usize = 8 << 20;

/// Where the API listens unless told otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9180";

/// What `GET /v1/status` reports, fixed at start.
#[derive(Clone, Debug, Serialize)]
pub struct StatusInfo {
    pub gateway: String,
    pub version: &'static str,
    /// `xdp`: the XDP program with the userspace slow path behind it; `userspace`: the userspace
    /// engine forwards everything, through AF_XDP sockets.
    pub engine: &'static str,
    pub ports: Vec<String>,
}

/// The API's view of the gateway: fixed facts, the running config, the latest counters, and
/// where to send changes.
pub struct ApiState {
    pub info: StatusInfo,
    running: Mutex<Running>,
    started: Instant,
    counters: Mutex<Snapshot>,
    changes: mpsc::Sender<ChangeRequest>,
    /// To the slow-path engine, which holds the NAT sessions.
    session_queries: Mutex<std::sync::mpsc::Sender<SessionQuery>>,
    /// What the API's listeners refused.
    listen: Arc<listen::ListenCounters>,
}

/// The config running now.
#[derive(Clone, Debug, Serialize)]
pub struct Running {
    /// Its number in the gateway's history (see `crate::history`).
    pub config_version: u64,
    /// A digest of it, to tell two configs apart (not stable across builds).
    pub config_digest: String,
    /// As `hutong plan compile` writes it.
    #[serde(skip)]
    pub config: serde_json::Value,
}

impl Running {
    pub fn new(config: &Config, version: u64) -> Running {
        let json = config.to_json();
        let mut digest = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&json, &mut digest);
        Running {
            config_version: version,
            config_digest: format!("{:016x}", std::hash::Hasher::finish(&digest)),
            config: serde_json::from_str(&json).unwrap_or_default(),
        }
    }
}

/// A change for the gateway's loop to make, and where to answer.
pub struct ChangeRequest {
    pub change: Change,
    pub reply: oneshot::Sender<ChangeOutcome>,
}

pub enum Change {
    Apply(Box<Config>),
    Rollback,
}

pub enum ChangeOutcome {
    /// Running now (`changed` false: it already was).
    Applied { running: Running, changed: bool },
    /// Refused, nothing changed.
    Invalid(Vec<ConfigError>),
    /// Cannot be done in this state (no earlier version to roll back to), nothing changed.
    Conflict(String),
    /// Failed while applying.
    Failed(String),
    /// The state directory cannot record it (a full or read-only disk), nothing changed.
    Unrecorded(String),
}

/// The gateway's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The XDP program's.
    pub xdp: Counters,
    /// The slow-path engine's.
    pub slow: Counters,
    /// The flows the slow path handed to the program.
    pub flows: FlowStats,
    /// Hits per policy rule, by name, both engines together (a packet is counted by the engine
    /// that decided it).
    pub rules: Vec<(String, u64)>,
    /// Per port (interface or port key) and engine: packets and bytes received and sent.
    pub ports: Vec<(String, &'static str, PortCounters)>,
    /// NAT pools: sessions and port blocks in use.
    pub pools: Vec<PoolUsage>,
    /// What the slow path's host stack answered.
    pub host: dataplane::host::HostCounters,
    /// Each slow-path worker's packets, and those it handed to another worker.
    pub workers: Vec<crate::slow_path::WorkerCounters>,
    /// API connections refused, by reason (`over_limit`, `accept_error`).
    pub api_refused: Vec<(&'static str, u64)>,
}

impl ApiState {
    /// The state of a gateway running `config` (version `version`) on the XDP engine, and the
    /// receiving end of the changes asked of it.
    pub fn new(
        config: &Config,
        version: u64,
        session_queries: std::sync::mpsc::Sender<SessionQuery>,
        engine: &'static str,
    ) -> (Arc<ApiState>, mpsc::Receiver<ChangeRequest>) {
        let info = StatusInfo {
            gateway: config.gateway.clone(),
            version: env!("CARGO_PKG_VERSION"),
            engine,
            ports: config.ports.iter().map(|p| p.key()).collect(),
        };
        let (changes, rx) = mpsc::channel(4);
        let running = Mutex::new(Running::new(config, version));
        let session_queries = Mutex::new(session_queries);
        let state = ApiState {
            info,
            running,
            started: Instant::now(),
            counters: Mutex::default(),
            changes,
            session_queries,
            listen: Arc::default(),
        };
        (Arc::new(state), rx)
    }

    /// Records what runs now (after an apply or a rollback).
    pub fn set_running(&self, running: Running) {
        if let Ok(mut r) = self.running.lock() {
            *r = running;
        }
    }

    fn running(&self) -> Running {
        self.running.lock().map(|r| r.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn set_counters(&self, snapshot: Snapshot) {
        if let Ok(mut c) = self.counters.lock() {
            *c = snapshot;
        }
    }

    /// The latest counters.
    pub fn counters(&self) -> Snapshot {
        self.counters.lock().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Hands a change to the gateway's loop and waits for its outcome (`None`: the gateway is
    /// stopping). The API's apply and the fleet agent's both go this way.
    pub async fn submit(&self, change: Change) -> Option<ChangeOutcome> {
        let (reply, answer) = oneshot::channel();
        self.changes.send(ChangeRequest { change, reply }).await.ok()?;
        answer.await.ok()
    }
}

/// Binds `addr` and, if given, the Unix socket `socket` (so a taken port fails the start,
/// before anything changes) and returns the server to spawn. Connections are bounded as
/// `listen` says.
pub async fn bind(
    addr: SocketAddr,
    socket: Option<std::path::PathBuf>,
    anywhere: bool,
    state: Arc<ApiState>,
) -> Result<impl std::future::Future<Output = ()>> {
    use listen::{Listener, MAX_CONNECTIONS};
    if let Some(why) = guard::listen_problem(addr, anywhere) {
        anyhow::bail!(why);
    }
    let mut listeners = vec![Listener::tcp(addr).await?];
    if let Some(path) = socket {
        listeners.push(Listener::unix(&path)?);
    }
    let listen = state.listen.clone();
    let app = Router::new()
        .route(ROUTES[0], get(status))
        .route(ROUTES[1], get(config).post(apply))
        .route(ROUTES[2], post(rollback))
        .route(ROUTES[3], get(sessions))
        .route(ROUTES[4], post(trace))
        .route(ROUTES[5], get(metrics::serve))
        .layer(DefaultBodyLimit::max(MAX_CONFIG_BYTES))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if let Some((status, why)) = guard::refusal(req.method(), req.headers(), anywhere) {
                    return error(status, why);
                }
                match whole_body(req).await {
                    Ok(req) => next.run(req).await,
                    Err(refused) => refused,
                }
            },
        ))
        .with_state(state);
    // Each listener its own slots: whoever fills the TCP ones (any local user) cannot lock
    // root out of the 0600 socket.
    let serving: Vec<_> = listeners
        .into_iter()
        .map(|l| l.serve(app.clone(), Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)), listen.clone()))
        .collect();
    Ok(async move {
        futures::future::join_all(serving).await;
    })
}

/// The request with its body read in full within `listen::BODY_READ_TIMEOUT`, so a client
/// that sends its body slowly holds a connection for a bounded time; 408 if it is too slow,
/// 413 if it is larger than [`MAX_CONFIG_BYTES`].
async fn whole_body(req: axum::extract::Request) -> Result<axum::extract::Request, axum::response::Response> {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, MAX_CONFIG_BYTES);
    match tokio::time::timeout(listen::BODY_READ_TIMEOUT, read).await {
        Ok(Ok(bytes)) => Ok(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body could not be read within {MAX_CONFIG_BYTES} bytes: {e}"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {:?}", listen::BODY_READ_TIMEOUT),
        )),
    }
}

#[derive(Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    info: &'a StatusInfo,
    #[serde(flatten)]
    running: Running,
    uptime_seconds: u64,
}

async fn status(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let body =
        StatusBody { info: &s.info, running: s.running(), uptime_seconds: s.started.elapsed().as_secs() };
    Json(serde_json::to_value(body).unwrap_or_default())
}

/// The running config, its version and digest.
async fn config(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let r = s.running();
    Json(serde_json::json!({
        "config_version": r.config_version,
        "config_digest": r.config_digest,
        "config": r.config,
    }))
}

fn error(status: StatusCode, message: String) -> axum::response::Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Validates a config and applies it atomically: 200 with the new version, 400 for a body that
/// is not JSON, 422 with every error (nothing changed), 413 (by the body limit) for a huge one.
async fn apply(State(s): State<Arc<ApiState>>, body: Bytes) -> axum::response::Response {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        return error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}"));
    }
    let text = String::from_utf8_lossy(&body);
    match Config::from_json(&text) {
        Ok(config) => change(&s, Change::Apply(Box::new(config))).await,
        Err(errors) => invalid(errors),
    }
}

/// Back to the version before the current one: 200 with it, 409 if there is none.
async fn rollback(State(s): State<Arc<ApiState>>) -> axum::response::Response {
    change(&s, Change::Rollback).await
}

/// `GET /v1/sessions?addr=&port=&vrf=&proto=&offset=&limit=`: NAT sessions, filtered (every
/// parameter given must match: `addr` the inside, outside or a remote address; `port` the
/// inside or outside port; `vrf` the inside or outside VRF; `proto` tcp, udp, icmp or a number),
/// ordered by outside address and port, `limit` (default 100, at most 1000) from `offset`.
async fn sessions(State(s): State<Arc<ApiState>>, uri: axum::http::Uri) -> axum::response::Response {
    let (filter, offset, limit) = match session_params(uri.query().unwrap_or("")) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let (reply, answer) = oneshot::channel();
    let sent = s
        .session_queries
        .lock()
        .map(|q| q.send(SessionQuery { filter, offset, limit, reply }).is_ok())
        .unwrap_or(false);
    if !sent {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the slow path is not running".into());
    }
    match tokio::time::timeout(std::time::Duration::from_secs(5), answer).await {
        Ok(Ok(page)) => Json(page).into_response(),
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "the slow path did not answer".into()),
    }
}

/// The query string of `GET /v1/sessions`.
fn session_params(query: &str) -> Result<(SessionFilter, usize, usize), String> {
    let mut f = SessionFilter::default();
    let (mut offset, mut limit): (usize, usize) = (0, 100);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |what: &str| format!("{k}={v:?}: {what}");
        match k {
            "addr" => f.addr = Some(v.parse().map_err(|_| bad("not an IPv4 address"))?),
            "port" => f.port = Some(v.parse().map_err(|_| bad("not a port"))?),
            "vrf" => f.vrf = Some(v.parse().map_err(|_| bad("not a VRF id"))?),
            "proto" => {
                f.proto = Some(match v {
                    "tcp" => hutong_common::wire::IPPROTO_TCP,
                    "udp" => hutong_common::wire::IPPROTO_UDP,
                    "icmp" => hutong_common::wire::IPPROTO_ICMP,
                    n => n.parse().map_err(|_| bad("not tcp, udp, icmp or a protocol number"))?,
                })
            }
            "offset" => offset = v.parse().map_err(|_| bad("not a number"))?,
            "limit" => {
                limit = v.parse().map_err(|_| bad("not a number"))?;
                if limit == 0 || limit > MAX_SESSIONS_PAGE {
                    return Err(bad(&format!("must be 1 to {MAX_SESSIONS_PAGE}")));
                }
            }
            _ => return Err(format!("unknown parameter {k:?} (addr, port, vrf, proto, offset, limit)")),
        }
    }
    let depth = dataplane::nat::query::MAX_DEPTH;
    if offset.saturating_add(limit) > depth {
        return Err(format!(
            "offset + limit may not exceed {depth}; narrow the query with addr, port, vrf or proto"
        ));
    }
    Ok((f, offset, limit))
}

/// `POST /v1/trace`: the pipeline's decisions for one frame under the running config.
#[derive(serde::Deserialize)]
struct TraceRequest {
    /// The frame as hex, from the Ethernet header on.
    packet: String,
    /// The interface it arrives on; default the config's first port.
    iface: Option<String>,
}

/// Traces a frame through a fresh engine with the running config: every stage's decision, as
/// `hutong trace` prints it. NAT sessions and neighbors of the running engines are not
/// consulted (a trace must not create sessions): an established session's packet is traced as
/// the first packet of its flow. 400 for a body that is not a trace request or bad hex, 422 for
/// an interface the config does not have.
async fn trace(State(s): State<Arc<ApiState>>, body: Bytes) -> axum::response::Response {
    let req: TraceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a trace request: {e}")),
    };
    let frame = match crate::hex::parse(&req.packet) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("packet: {e}")),
    };
    let config: Config = match serde_json::from_value(s.running().config) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the running config: {e}")),
    };
    let iface = req.iface.unwrap_or_else(|| config.ports.first().map(|p| p.name.clone()).unwrap_or_default());
    match dataplane::engine::trace(&config, &iface, &frame) {
        Ok(steps) => Json(serde_json::json!({ "steps": steps })).into_response(),
        Err(errors) => invalid(errors),
    }
}

fn invalid(errors: Vec<ConfigError>) -> axum::response::Response {
    let list: Vec<serde_json::Value> =
        errors.iter().map(|e| serde_json::json!({ "path": e.path, "message": e.message })).collect();
    (StatusCode::UNPROCESSABLE_ENTITY, Json(serde_json::json!({ "errors": list }))).into_response()
}

async fn change(s: &ApiState, change: Change) -> axum::response::Response {
    match s.submit(change).await {
        Some(ChangeOutcome::Applied { running, changed }) => {
            let body = serde_json::json!({
                "config_version": running.config_version,
                "config_digest": running.config_digest,
                "changed": changed,
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        Some(ChangeOutcome::Invalid(errors)) => invalid(errors),
        Some(ChangeOutcome::Conflict(m)) => error(StatusCode::CONFLICT, m),
        Some(ChangeOutcome::Failed(m)) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
        Some(ChangeOutcome::Unrecorded(m)) => error(StatusCode::INSUFFICIENT_STORAGE, m),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping".into()),
    }
}

pub mod client;
pub mod guard;
pub mod listen;
mod metrics;

pub use metrics::encode;

#[cfg(test)]
mod tests {
    use super::*;
    use hutong_common::{Drop, Stat};

    #[test]
    fn session_parameters_are_checked() {
        let (f, offset, limit) = session_params("addr=10.20.0.5&proto=udp&limit=5&offset=10").unwrap();
        assert_eq!((f.addr, f.proto, offset, limit), (Some("10.20.0.5".parse().unwrap()), Some(17), 10, 5));
        assert_eq!(session_params("").unwrap().2, 100);
        for bad in [
            "addr=10.20.0",
            "port=70000",
            "limit=0",
            "limit=5000",
            "proto=sctpx",
            "colour=red",
            "offset=9950&limit=100",
        ] {
            assert!(session_params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_yaml_ng::from_str(include_str!("../../docs/api/openapi.yaml"))
            .expect("the document is YAML");
        let mut documented: Vec<&str> =
            doc["paths"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
        documented.sort();
        let mut served = ROUTES.to_vec();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn metrics_parse_as_prometheus_text_with_every_counter() {
        let xdp = Counters {
            stats: Stat::ALL.iter().map(|s| (s.name(), *s as u64 + 1)).collect(),
            drops: Drop::ALL.iter().map(|d| (d.name(), 7)).collect(),
        };
        let flows = FlowStats { active: 5, installed: 9, removed: 4, full: 0 };
        let rules = vec![("lan-out".to_string(), 12)];
        let ports = vec![(
            "uplink0".to_string(),
            "xdp",
            PortCounters { rx_packets: 3, rx_bytes: 300, tx_packets: 2, tx_bytes: 200 },
        )];
        let pools = vec![PoolUsage { pool: "city".into(), sessions: 4, blocks_used: 1, blocks_total: 252 }];
        let socket_drops = dataplane::port::SocketDrops { rx_ring_full: 0, fill_ring_empty: 31, other: 1 };
        let workers = vec![crate::slow_path::WorkerCounters { packets: 8, handed_off: 0, socket_drops }];
        let text = encode(
            "gw-t",
            &Snapshot {
                xdp,
                slow: Counters::default(),
                flows,
                rules,
                ports,
                pools,
                workers,
                ..Default::default()
            },
        );
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let value = |name: &str, label: &str, want: &str| {
            scrape.samples.iter().find(|s| {
                s.metric == name && s.labels.get("engine") == Some("xdp") && s.labels.get(label) == Some(want)
            })
        };
        let fwd = value("hutong_packets_total", "stat", "forwarded").expect(&text);
        // OpenMetrics types the family `hutong_packets`; the parser, reading Prometheus text, sees
        // the `_total` sample untyped. The value is what matters.
        use prometheus_parse::Value::{Counter, Untyped};
        assert!(matches!(fwd.value, Counter(v) | Untyped(v) if v == 2.0), "{fwd:?}");
        for d in Drop::ALL {
            assert!(
                value("hutong_drops_total", "reason", d.name()).is_some(),
                "{} missing:\n{text}",
                d.name()
            );
        }
        let active = scrape.samples.iter().find(|s| s.metric == "hutong_xdp_flows").expect(&text);
        assert!(matches!(active.value, prometheus_parse::Value::Gauge(v) if v == 5.0), "{active:?}");
        let installed = scrape.samples.iter().find(|s| {
            s.metric == "hutong_xdp_flow_changes_total" && s.labels.get("change") == Some("installed")
        });
        assert!(installed.is_some_and(|s| matches!(s.value, Counter(v) | Untyped(v) if v == 9.0)), "{text}");
        let rule = scrape
            .samples
            .iter()
            .find(|s| s.metric == "hutong_rule_hits_total" && s.labels.get("rule") == Some("lan-out"));
        assert!(rule.is_some_and(|s| matches!(s.value, Counter(v) | Untyped(v) if v == 12.0)), "{text}");
        let port = scrape.samples.iter().find(|s| {
            s.metric == "hutong_port_bytes_total"
                && s.labels.get("port") == Some("uplink0")
                && s.labels.get("direction") == Some("tx")
        });
        assert!(port.is_some_and(|s| matches!(s.value, Counter(v) | Untyped(v) if v == 200.0)), "{text}");
        let blocks = scrape.samples.iter().find(|s| {
            s.metric == "hutong_nat_port_blocks"
                && s.labels.get("pool") == Some("city")
                && s.labels.get("state") == Some("total")
        });
        assert!(
            blocks.is_some_and(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 252.0)),
            "{text}"
        );
        let fill = scrape.samples.iter().find(|s| {
            s.metric == "hutong_socket_drops_total"
                && s.labels.get("worker") == Some("0")
                && s.labels.get("reason") == Some("fill_ring_empty")
        });
        assert!(fill.is_some_and(|s| matches!(s.value, Counter(v) | Untyped(v) if v == 31.0)), "{text}");
        let sessions = scrape.samples.iter().find(|s| s.metric == "hutong_nat_sessions");
        assert!(
            sessions.is_some_and(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 4.0)),
            "{text}"
        );
    }
}
