//! The values the fleet keeps in etcd besides the plan: JSON, each with the fields an operator
//! reading `etcdctl get` needs to make sense of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, as every record writes time.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A gateway's desired (or staged) config: what push `push` compiled for it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Desired {
    pub gateway: String,
    /// The push that compiled it.
    pub push: u64,
    /// The config, as `hutong plan compile` writes it.
    pub config: serde_json::Value,
}

/// A desired value as the agent reads it: its config left as JSON text, decoded once, straight
/// into a config (not through a JSON tree first: the agent's work per push).
#[derive(Deserialize)]
pub struct DesiredText<'a> {
    pub gateway: String,
    pub push: u64,
    #[serde(borrow)]
    pub config: &'a serde_json::value::RawValue,
}

/// The latest push, at [`crate::keys::VERSION`], and each push's record under
/// [`crate::keys::PUSHES`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PushRecord {
    pub push: u64,
    pub at: f64,
    /// Who pushed (the user and host, until operators have certificates).
    pub by: String,
    /// The node code whose subtree was replaced; empty: the whole plan.
    #[serde(default)]
    pub scope: String,
    /// The gateways whose config changed. Kept in the push's own record only: the version key,
    /// which every connection's first read and every snapshot reads, leaves it empty, so that
    /// its size does not grow with the fleet.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// What the push was for: "push", or "rollback to push N".
    #[serde(default)]
    pub what: String,
}

/// ACK or NACK.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The desired config runs.
    Ack,
    /// The desired config was refused or failed; the previous one runs on.
    Nack,
    /// No desired config for this gateway yet.
    Idle,
}

/// What a gateway reports, under its lease: it vanishes when the gateway stops reporting.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub gateway: String,
    pub verdict: Verdict,
    /// The push of the desired config it last judged (0: none).
    pub desired_push: u64,
    /// The push whose config runs now (0: a config from before the fleet, or none).
    pub applied_push: u64,
    /// The gateway's local config version (its history, see `hutong status`).
    pub config_version: u64,
    /// Why the last NACK, every error.
    #[serde(default)]
    pub errors: Vec<String>,
    /// When this record was written: at the agent's start, at each verdict, and when a rollout
    /// asked for fresh health. It is not rewritten to say the gateway lives: the lease says
    /// that, since a status exists only while its agent keeps the lease alive.
    pub last_seen: f64,
    /// The lease's time to live: a status present was kept alive within this many seconds.
    #[serde(default)]
    pub lease_ttl_s: f64,
    /// The `at` of the latest rollout health check ([`HealthCheck`]) this agent answered (0:
    /// none): a status that echoes a check's `at` was written for it, with the health then.
    #[serde(default)]
    pub check_at: f64,
    /// When the agent started.
    pub since: f64,
    pub health: Health,
    /// The agent's hutong version.
    #[serde(default)]
    pub agent: String,
}

/// A rollout's request for a gateway's health now, at
/// [`crate::keys::GatewayKey::Check`]: the agent answers with a status written after `at`.
/// Written under the driver's lease, so that requests nobody answers do not stay.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HealthCheck {
    /// The push being rolled out.
    pub push: u64,
    /// When it was asked.
    pub at: f64,
}

/// The health counters a rollout watches.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub received: u64,
    /// Drops by reason, both engines together.
    pub drops: BTreeMap<String, u64>,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// A wave is out, or the next is due.
    Rolling,
    /// Stopped by a NACK, a health failure or a timeout; `resume` retries the wave, `abort` ends it.
    Halted,
    Done,
    Aborted,
}

/// The rollout of one push, wave by wave.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rollout {
    pub push: u64,
    /// The gateways of each wave (only those whose config changed).
    pub waves: Vec<Vec<String>>,
    /// How many waves have been written to the gateways' desired keys.
    pub written: usize,
    pub state: RolloutState,
    #[serde(default)]
    pub reason: String,
    /// How long a wave's gateways must stay healthy after their ACKs.
    pub settle_s: f64,
    /// Drops per second per reason per gateway above the wave's baseline that count as a jump.
    pub max_drop_rate: f64,
    /// How long a wave may take to be ACKed.
    pub ack_timeout_s: f64,
    pub started: f64,
    pub updated: f64,
}

impl Rollout {
    pub fn finished(&self) -> bool {
        matches!(self.state, RolloutState::Done | RolloutState::Aborted)
    }
}
