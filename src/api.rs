//! The agent API, first part: `GET /v1/status`, `GET /v1/config` and `GET /metrics`
//! (Prometheus/OpenMetrics text), served on loopback by default. The gateway's loop refreshes the counters this reads
//! every 200 ms, so a scrape never touches the BPF maps itself.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context, Result};
use axum::{Json, Router, extract::State, http::header, response::IntoResponse, routing::get};
use dataplane::{Counters, flows::FlowStats};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use serde::Serialize;

/// Every route the server has; `docs/api/openapi.yaml` must document exactly these.
pub const ROUTES: [&str; 3] = ["/v1/status", "/v1/config", "/metrics"];

/// Where the API listens unless told otherwise: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9180";

/// What `GET /v1/status` reports, fixed at start.
#[derive(Clone, Debug, Serialize)]
pub struct StatusInfo {
    pub gateway: String,
    pub version: &'static str,
    /// `xdp`: the XDP program with the userspace slow path behind it.
    pub engine: &'static str,
    pub ports: Vec<String>,
    /// A digest of the running config, to tell two configs apart (not stable across builds).
    pub config_digest: String,
}

/// The API's view of the gateway: fixed facts plus the latest counters.
pub struct ApiState {
    pub info: StatusInfo,
    /// The running config, as `hutong plan compile` writes it.
    config: serde_json::Value,
    started: Instant,
    counters: Mutex<Snapshot>,
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
}

impl ApiState {
    /// The state of a gateway running `config` on the XDP engine.
    pub fn new(config: &dataplane::Config) -> Arc<ApiState> {
        let json = config.to_json();
        let mut digest = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&json, &mut digest);
        let info = StatusInfo {
            gateway: config.gateway.clone(),
            version: env!("CARGO_PKG_VERSION"),
            engine: "xdp",
            ports: config.ports.iter().map(|p| p.key()).collect(),
            config_digest: format!("{:016x}", std::hash::Hasher::finish(&digest)),
        };
        let config = serde_json::from_str(&json).unwrap_or_default();
        Arc::new(ApiState { info, config, started: Instant::now(), counters: Mutex::default() })
    }

    pub fn set_counters(&self, snapshot: Snapshot) {
        if let Ok(mut c) = self.counters.lock() {
            *c = snapshot;
        }
    }
}

/// Binds `addr` (so a taken port fails the start, before anything changes) and returns the
/// server to spawn.
pub async fn bind(
    addr: SocketAddr,
    state: Arc<ApiState>,
) -> Result<impl std::future::Future<Output = std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("agent API: cannot listen on {addr} (choose another with --api)"))?;
    let app = Router::new()
        .route(ROUTES[0], get(status))
        .route(ROUTES[1], get(config))
        .route(ROUTES[2], get(metrics))
        .with_state(state);
    Ok(axum::serve(listener, app).into_future())
}

#[derive(Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    info: &'a StatusInfo,
    uptime_seconds: u64,
}

async fn status(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    Json(
        serde_json::to_value(StatusBody { info: &s.info, uptime_seconds: s.started.elapsed().as_secs() })
            .unwrap_or_default(),
    )
}

/// The running config and its digest (the version the rest of the API will name).
async fn config(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    Json(serde_json::json!({ "config_digest": s.info.config_digest, "config": s.config }))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatLabels {
    engine: &'static str,
    stat: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    engine: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    change: &'static str,
}

/// The counters as OpenMetrics text: `hutong_packets_total{engine,stat}` and
/// `hutong_drops_total{engine,reason}` for the XDP program and the slow path, and the flows of
/// established sessions in the program: `hutong_xdp_flows` now, and
/// `hutong_xdp_flow_changes_total{change}` (installed, removed, refused because the map is full),
/// and `hutong_rule_hits_total{rule}` per policy rule.
pub fn encode(gateway: &str, s: &Snapshot) -> String {
    let mut registry = prometheus_client::registry::Registry::with_prefix("hutong");
    let packets = Family::<StatLabels, Counter>::default();
    let drops = Family::<DropLabels, Counter>::default();
    for (engine, c) in [("xdp", &s.xdp), ("slow_path", &s.slow)] {
        for (stat, v) in &c.stats {
            packets.get_or_create(&StatLabels { engine, stat }).inc_by(*v);
        }
        for (reason, v) in &c.drops {
            drops.get_or_create(&DropLabels { engine, reason }).inc_by(*v);
        }
    }
    registry.register("packets", format!("Packets of gateway {gateway} by what happened to them"), packets);
    registry.register("drops", format!("Packets gateway {gateway} dropped, by reason"), drops);
    let flows = Gauge::<i64>::default();
    flows.set(s.flows.active as i64);
    registry.register(
        "xdp_flows",
        format!("Flows of established NAT sessions gateway {gateway} forwards in the XDP program"),
        flows,
    );
    let changes = Family::<ChangeLabels, Counter>::default();
    for (change, v) in
        [("installed", s.flows.installed), ("removed", s.flows.removed), ("refused_full", s.flows.full)]
    {
        changes.get_or_create(&ChangeLabels { change }).inc_by(v);
    }
    registry.register(
        "xdp_flow_changes",
        format!("Flow changes in gateway {gateway}'s XDP program"),
        changes,
    );
    let rules = Family::<RuleLabels, Counter>::default();
    for (rule, v) in &s.rules {
        rules.get_or_create(&RuleLabels { rule: rule.clone() }).inc_by(*v);
    }
    registry.register("rule_hits", format!("Packets matching each policy rule of gateway {gateway}"), rules);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

async fn metrics(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let snapshot = s.counters.lock().map(|c| c.clone()).unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        encode(&s.info.gateway, &snapshot),
    )
}

/// The CLI's side of the API.
pub mod client {
    use std::net::SocketAddr;

    use anyhow::{Context, Result};

    /// `GET /v1/status` of the gateway at `api`, as JSON.
    pub fn status(api: SocketAddr) -> Result<serde_json::Value> {
        let url = format!("http://{api}/v1/status");
        let mut response = ureq::get(&url).call().with_context(|| {
            format!(
                "no gateway answers at {url} (is `hutong gateway run` running there? --api names another)"
            )
        })?;
        response.body_mut().read_json().with_context(|| format!("{url} did not answer JSON"))
    }

    /// A status for people: one fact a line.
    pub fn describe(s: &serde_json::Value) -> String {
        let field = |k: &str| match &s[k] {
            serde_json::Value::String(v) => v.clone(),
            serde_json::Value::Null => "?".into(),
            v => v.to_string(),
        };
        let ports: Vec<String> = s["ports"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str().map(String::from)).collect())
            .unwrap_or_default();
        format!(
            "gateway {} (hutong {}), engine {}, up {} s\nports: {}\nconfig digest: {}\n",
            field("gateway"),
            field("version"),
            field("engine"),
            field("uptime_seconds"),
            ports.join(", "),
            field("config_digest"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutong_common::{Drop, Stat};

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value =
            serde_yaml_ng::from_str(include_str!("../docs/api/openapi.yaml")).expect("the document is YAML");
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
        let text = encode("gw-t", &Snapshot { xdp, slow: Counters::default(), flows, rules });
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
    }
}
