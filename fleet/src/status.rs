//! `hutong fleet status`: one row per gateway: jurisdiction, desired and applied push, ACK or
//! NACK, last seen, and drift (what it runs differs from what it should).

use serde::Serialize;

use crate::{
    records::{Verdict, now},
    store::Snapshot,
};

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    pub gateway: String,
    /// Its node path, root first ("430000/430100/430102").
    pub jurisdiction: String,
    /// The push its desired config is from (0: none).
    pub desired: u64,
    /// A later push waits for its wave (0: none).
    pub staged: u64,
    /// The push it runs (0: unknown, or none).
    pub applied: u64,
    /// ack, nack, idle, dead (no status: its lease ran out, or it never reported) or corrupt.
    pub state: String,
    /// Seconds since it was last seen alive: its status exists only while its agent keeps the
    /// status lease, so at most the lease's time to live (less when its status was written
    /// since).
    pub last_seen_s: Option<f64>,
    /// Seconds since its status was written (at a verdict, a restart, a rollout's health
    /// check): how old its health counters are.
    pub reported_s: Option<f64>,
    /// in-sync, behind (not yet applied), refused (NACK), dead, or unknown.
    pub drift: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

pub fn rows(snap: &Snapshot) -> Vec<Row> {
    let t = now();
    let mut out = Vec::new();
    for (id, g) in &snap.gateways {
        let desired = g.desired.as_ref().and_then(|d| d.value.as_ref().ok()).map_or(0, |d| d.push);
        let staged = g.staged.as_ref().and_then(|d| d.value.as_ref().ok()).map_or(0, |d| d.push);
        let status = g.status.as_ref().map(|s| s.value.as_ref());
        let (state, applied, reported, lease, errors) = match status {
            None => ("dead".to_string(), 0, None, 0.0, Vec::new()),
            Some(Err(e)) => ("corrupt".to_string(), 0, None, 0.0, vec![e.clone()]),
            Some(Ok(s)) => {
                let name = match s.verdict {
                    Verdict::Ack => "ack",
                    Verdict::Nack => "nack",
                    Verdict::Idle => "idle",
                };
                let age = (t - s.last_seen).max(0.0);
                (name.to_string(), s.applied_push, Some(age), s.lease_ttl_s, s.errors.clone())
            }
        };
        // An agent from before the lease's time to live was recorded (0) rewrote its status
        // every few seconds: the status's age is its last seen.
        let last_seen = reported.map(|a| if lease > 0.0 { a.min(lease) } else { a });
        let drift = match state.as_str() {
            "dead" | "corrupt" => state.clone(),
            _ if desired != 0 && applied == desired => "in-sync".into(),
            "nack" => "refused".into(),
            _ if desired == 0 => "unknown".into(),
            _ => "behind".into(),
        };
        out.push(Row {
            gateway: id.clone(),
            jurisdiction: g.path.join("/"),
            desired,
            staged,
            applied,
            state,
            last_seen_s: last_seen,
            reported_s: reported,
            drift,
            errors,
        });
    }
    out
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<20} {:<22} {:>7} {:>7} {:>7} {:<7} {:>9}  {}\n",
        "gateway", "jurisdiction", "desired", "staged", "applied", "state", "last seen", "drift"
    );
    for r in rows {
        let seen = match (r.last_seen_s, r.reported_s) {
            (Some(s), Some(a)) if a > s => format!("<{s:.0}s ago"),
            (Some(s), _) => format!("{s:.1}s ago"),
            _ => "-".to_string(),
        };
        let dash = |n: u64| if n == 0 { "-".to_string() } else { n.to_string() };
        s.push_str(&format!(
            "{:<20} {:<22} {:>7} {:>7} {:>7} {:<7} {:>9}  {}\n",
            r.gateway,
            r.jurisdiction,
            dash(r.desired),
            dash(r.staged),
            dash(r.applied),
            r.state,
            seen,
            r.drift
        ));
        for e in &r.errors {
            s.push_str(&format!("{:<20} ! {e}\n", ""));
        }
    }
    s
}
