//! `GET /metrics`: the gateway's counters in the Prometheus/OpenMetrics text format, encoded
//! from the snapshot the gateway's loop refreshes every 200 ms.

use std::sync::Arc;

use axum::{extract::State, http::header, response::IntoResponse};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

use super::{ApiState, Snapshot};

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
struct PortLabels {
    engine: &'static str,
    port: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlockLabels {
    pool: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SocketDropLabels {
    worker: u32,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    change: &'static str,
}

/// The counters as OpenMetrics text: `hutong_packets_total{engine,stat}` and
/// `hutong_drops_total{engine,reason}` for the XDP program and the slow path, and the flows of
/// established sessions in the program: `hutong_xdp_flows` now, and
/// `hutong_xdp_flow_changes_total{change}` (installed, removed, refused because the map is full),
/// `hutong_rule_hits_total{rule}` per policy rule, `hutong_host_answers_total{kind}`, and
/// `hutong_worker_packets_total{worker}`, `hutong_worker_handoffs_total{worker}` and
/// `hutong_socket_drops_total{worker,reason}`.
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
    let packets = Family::<PortLabels, Counter>::default();
    let bytes = Family::<PortLabels, Counter>::default();
    for (port, engine, c) in &s.ports {
        let label = |direction| PortLabels { engine, port: port.clone(), direction };
        packets.get_or_create(&label("rx")).inc_by(c.rx_packets);
        packets.get_or_create(&label("tx")).inc_by(c.tx_packets);
        bytes.get_or_create(&label("rx")).inc_by(c.rx_bytes);
        bytes.get_or_create(&label("tx")).inc_by(c.tx_bytes);
    }
    registry.register(
        "port_packets",
        format!("Packets gateway {gateway} received (rx) and sent (tx), per port and engine"),
        packets,
    );
    registry.register(
        "port_bytes",
        format!("Bytes gateway {gateway} received and sent, per port and engine"),
        bytes,
    );
    let sessions = Family::<PoolLabels, Gauge>::default();
    let blocks = Family::<BlockLabels, Gauge>::default();
    for p in &s.pools {
        sessions.get_or_create(&PoolLabels { pool: p.pool.clone() }).set(p.sessions as i64);
        blocks.get_or_create(&BlockLabels { pool: p.pool.clone(), state: "used" }).set(p.blocks_used as i64);
        blocks
            .get_or_create(&BlockLabels { pool: p.pool.clone(), state: "total" })
            .set(p.blocks_total as i64);
    }
    registry.register(
        "nat_sessions",
        format!("NAT sessions in use in gateway {gateway}, per pool"),
        sessions,
    );
    registry.register(
        "nat_port_blocks",
        format!("Port blocks of each NAT pool of gateway {gateway}: used and total"),
        blocks,
    );
    let host = Family::<AnswerLabels, Counter>::default();
    let h = &s.host;
    for (kind, v) in [
        ("arp_reply", h.arp_replies),
        ("neighbor_advert", h.neighbor_adverts),
        ("echo_reply", h.echo_replies),
        ("ignored", h.ignored),
    ] {
        host.get_or_create(&AnswerLabels { kind }).inc_by(v);
    }
    registry.register(
        "host_answers",
        format!("What gateway {gateway}'s own host stack answered (VLAN ports, NAT addresses), and what it ignored"),
        host,
    );
    let worked = Family::<WorkerLabels, Counter>::default();
    let handed = Family::<WorkerLabels, Counter>::default();
    for (i, w) in s.workers.iter().enumerate() {
        worked.get_or_create(&WorkerLabels { worker: i as u32 }).inc_by(w.packets);
        handed.get_or_create(&WorkerLabels { worker: i as u32 }).inc_by(w.handed_off);
    }
    registry.register(
        "worker_packets",
        format!("Packets each slow-path worker of gateway {gateway} processed"),
        worked,
    );
    let socket_drops = Family::<SocketDropLabels, Counter>::default();
    for (i, w) in s.workers.iter().enumerate() {
        let d = w.socket_drops;
        for (reason, v) in
            [("rx_ring_full", d.rx_ring_full), ("fill_ring_empty", d.fill_ring_empty), ("other", d.other)]
        {
            socket_drops.get_or_create(&SocketDropLabels { worker: i as u32, reason }).inc_by(v);
        }
    }
    registry.register(
        "socket_drops",
        format!(
            "Frames the kernel dropped on their way into the AF_XDP sockets of each slow-path worker of gateway {gateway}, by reason"
        ),
        socket_drops,
    );
    registry.register(
        "worker_handoffs",
        format!("Packets each slow-path worker of gateway {gateway} received for another worker's sessions"),
        handed,
    );
    let refused = Family::<ReasonLabels, Counter>::default();
    for (reason, v) in &s.api_refused {
        refused.get_or_create(&ReasonLabels { reason }).inc_by(*v);
    }
    registry.register(
        "api_connections_refused",
        format!(
            "Connections to gateway {gateway}'s agent API closed unserved: over the limit of {} at once, or failed accepts",
            crate::api::listen::MAX_CONNECTIONS
        ),
        refused,
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

pub(super) async fn serve(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let mut snapshot = s.counters.lock().map(|c| c.clone()).unwrap_or_default();
    use std::sync::atomic::Ordering::Relaxed;
    snapshot.api_refused = vec![
        ("over_limit", s.listen.over_limit.load(Relaxed)),
        ("accept_error", s.listen.accept_errors.load(Relaxed)),
    ];
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        encode(&s.info.gateway, &snapshot),
    )
}
