//! `hutong push PLAN [--scope CODE]`: read the plan from the store, replace the scope's subtree
//! with the local one, validate the whole, compile every gateway, say what changes for each,
//! and write it all in one transaction guarded by what was read. Two pushes at once: the first
//! to commit wins, the other changes nothing and is told why.

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;
use control::{LoadedPlan, diff::Change, model::Level};
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use hutong_config::Config;

use crate::{
    fragments::{self, Fragment, Meta},
    keys::{self, GatewayKey, NodePath},
    records::{Desired, PushRecord, Rollout, RolloutState, now},
    store::{Snapshot, timed},
    waves::{self, WaveSpec},
};

/// How a push proceeds.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// A node code: only its subtree is replaced. `None`: the whole plan.
    pub scope: Option<String>,
    pub waves: Vec<WaveSpec>,
    pub settle_s: f64,
    pub max_drop_rate: f64,
    pub ack_timeout_s: f64,
    /// Who pushes (recorded).
    pub by: String,
    /// What for ("push"; a rollback says which push it restores).
    pub what: String,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            scope: None,
            waves: Vec::new(),
            settle_s: 10.0,
            max_drop_rate: 100.0,
            ack_timeout_s: 60.0,
            by: whoami(),
            what: "push".into(),
        }
    }
}

/// `user@host`, for the record (operators get certificates in a later change).
pub fn whoami() -> String {
    let user =
        std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "root".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{user}@{}", host.trim())
}

/// Why a push did not land. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Refused(String),
    /// The merged plan does not validate: every error, each placed in the store's plan.
    #[error("the plan after this push would not be valid; nothing was written:\n{0}")]
    Invalid(String),
    #[error(
        "conflict: {0}; nothing was written. Push again to apply your plan on top of theirs \
         (the diff will show what changed in between)"
    )]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What a push will write, computed from a snapshot; nothing is written until [`commit`].
#[derive(Debug)]
pub struct Prepared {
    pub snapshot: Snapshot,
    pub meta: Meta,
    pub fragments: Vec<Fragment>,
    /// Every gateway of the new plan: its node path and compiled config.
    pub configs: BTreeMap<String, (NodePath, Config)>,
    /// Per gateway whose config changes (or that comes or goes), what changes.
    pub diffs: Vec<(String, Vec<Change>)>,
    /// The gateways of each wave; the first is written at once, the others staged.
    pub waves: Vec<Vec<String>>,
    /// Extra facts for the operator (an implicit last wave, say).
    pub notes: Vec<String>,
    pub options: PushOptions,
}

impl Prepared {
    /// The push number this will be.
    pub fn number(&self) -> u64 {
        self.snapshot.push() + 1
    }
}

/// Reads the store and works out the push of `local` (already checked on its own).
pub async fn prepare(
    client: &mut Client,
    local: &LoadedPlan,
    options: PushOptions,
) -> Result<Prepared, PushError> {
    let snapshot = crate::store::read(client, None).await?;
    prepare_on(snapshot, local, options)
}

/// [`prepare`] on a snapshot already read.
pub fn prepare_on(
    snapshot: Snapshot,
    local: &LoadedPlan,
    options: PushOptions,
) -> Result<Prepared, PushError> {
    // A rollout with waves still staged blocks: a push now would leave them to overwrite it.
    // One whose waves are all written is only being watched; a new push supersedes it.
    if let Some(r) = &snapshot.rollout
        && let Ok(r) = &r.value
        && !r.finished()
        && r.written < r.waves.len()
    {
        return Err(PushError::Refused(format!(
            "the rollout of push {} is {} ({} of {} wave(s) written{}): `hutong rollout resume` or \
             `hutong rollout abort` it first",
            r.push,
            if r.state == RolloutState::Halted { "halted" } else { "still running" },
            r.written,
            r.waves.len(),
            if r.reason.is_empty() { String::new() } else { format!("; {}", r.reason) }
        )));
    }
    let (meta, fragments) = new_plan(&snapshot, local, options.scope.as_deref())?;
    for f in &fragments {
        if let Some(bad) = f.path.iter().find(|s| !keys::segment_ok(s)) {
            return Err(PushError::Refused(format!("node code {bad:?} cannot be a store key")));
        }
    }
    let meta_yaml = serde_yaml_ng::to_string(&meta).expect("meta serialises");
    let pairs: Vec<(NodePath, String)> = fragments.iter().map(|f| (f.path.clone(), f.yaml.clone())).collect();
    let text =
        fragments::assemble(Some(&meta_yaml), &pairs).map_err(|e| PushError::Refused(e.to_string()))?;
    let merged = merged_plan(&text, snapshot.revision)?;
    let compiled = control::compile::compile_all(&merged).map_err(|d| PushError::Invalid(d.to_string()))?;
    let homes = gateway_paths(&merged);
    let mut configs = BTreeMap::new();
    for (id, c) in compiled {
        if !keys::segment_ok(&id) {
            return Err(PushError::Refused(format!("gateway id {id:?} cannot be a store key")));
        }
        configs.insert(id.clone(), (homes[&id].0.clone(), c));
    }
    let diffs = diffs(&snapshot, &configs);
    let changed: Vec<String> =
        diffs.iter().filter(|(id, _)| configs.contains_key(id)).map(|(id, _)| id.clone()).collect();
    let levels: BTreeMap<String, Level> = homes.iter().map(|(id, (_, l))| (id.clone(), *l)).collect();
    let (waves, notes) = waves::assign(&options.waves, &changed, &levels).map_err(PushError::Refused)?;
    Ok(Prepared { snapshot, meta, fragments, configs, diffs, waves, notes, options })
}

/// The plan's meta and fragments after the push.
fn new_plan(
    snapshot: &Snapshot,
    local: &LoadedPlan,
    scope: Option<&str>,
) -> Result<(Meta, Vec<Fragment>), PushError> {
    let Some(code) = scope else {
        return Ok(fragments::split(&local.plan));
    };
    let Some(meta) = &snapshot.meta else {
        return Err(PushError::Refused(
            "the store holds no plan yet: push the whole plan first (without --scope)".into(),
        ));
    };
    let meta: Meta = serde_yaml_ng::from_str(meta)
        .map_err(|e| PushError::Refused(format!("{}: not the plan's meta: {e}", keys::META)))?;
    let Some((path, node)) = fragments::find(&local.plan, code) else {
        return Err(PushError::Refused(format!(
            "--scope {code}: no node {code} in {}",
            local.file.display()
        )));
    };
    let in_store = snapshot.fragments.keys().find(|p| p.last().map(String::as_str) == Some(code));
    match in_store {
        Some(p) if *p != path => {
            return Err(PushError::Refused(format!(
                "--scope {code}: the store has node {code} at {}, {} has it at {}; moving a node is a push of \
                 the scope that holds both places",
                p.join("/"),
                local.file.display(),
                path.join("/")
            )));
        }
        None if path.len() > 1 && !snapshot.fragments.contains_key(&path[..path.len() - 1]) => {
            return Err(PushError::Refused(format!(
                "--scope {code}: its parent {} is not in the store's plan",
                path[..path.len() - 1].join("/")
            )));
        }
        _ => {}
    }
    let mut out: Vec<Fragment> = snapshot
        .fragments
        .iter()
        .filter(|(p, _)| !p.starts_with(&path))
        .map(|(p, (y, _))| Fragment { path: p.clone(), yaml: y.clone() })
        .collect();
    out.extend(fragments::split_node(node, &path[..path.len() - 1]));
    Ok((meta, out))
}

/// Loads and validates the merged plan; its errors name the node they are in, since line
/// numbers of a plan put together from the store say little.
fn merged_plan(text: &str, revision: i64) -> Result<LoadedPlan, PushError> {
    let label = format!("store plan (revision {revision}, with this push)");
    let lp = control::load_str(text, Path::new(&label)).map_err(|d| PushError::Invalid(d.to_string()))?;
    if let Err(d) = control::validate(&lp) {
        let nodes = lp.plan.nodes();
        let lines: Vec<String> =
            d.0.iter()
                .map(|e| {
                    let at = nodes
                        .iter()
                        .filter(|(p, _)| e.path == *p || e.path.starts_with(&format!("{p}.")))
                        .max_by_key(|(p, _)| p.len())
                        .map(|(_, n)| format!("node {} ({})", n.code, n.name))
                        .unwrap_or_else(|| "the plan".into());
                    format!(
                        "{at}: {}: {}{}",
                        e.path,
                        e.message,
                        e.hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default()
                    )
                })
                .collect();
        return Err(PushError::Invalid(lines.join("\n")));
    }
    Ok(lp)
}

/// Each gateway's node path and level.
fn gateway_paths(lp: &LoadedPlan) -> BTreeMap<String, (NodePath, Level)> {
    let mut out = BTreeMap::new();
    fn walk(
        n: &control::model::Node,
        above: &mut Vec<String>,
        out: &mut BTreeMap<String, (NodePath, Level)>,
    ) {
        above.push(n.code.clone());
        for g in &n.gateways {
            out.insert(g.id.clone(), (above.clone(), n.level));
        }
        for c in &n.children {
            walk(c, above, out);
        }
        above.pop();
    }
    for n in &lp.plan.nodes {
        walk(n, &mut Vec::new(), &mut out);
    }
    out
}

/// A desired value's config, if it decodes.
pub fn desired_config(d: &Desired) -> Result<Config, String> {
    Config::from_json(&d.config.to_string())
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
}

/// Per gateway, what changes between its desired config in the store and the new one.
fn diffs(snapshot: &Snapshot, configs: &BTreeMap<String, (NodePath, Config)>) -> Vec<(String, Vec<Change>)> {
    let mut out = Vec::new();
    for (id, (path, new)) in configs {
        let old = snapshot.gateways.get(id).and_then(|g| g.desired.as_ref());
        let mut changes = match old.map(|r| r.value.as_ref().map_err(String::clone).and_then(desired_config))
        {
            None => vec![Change::Added(format!("gateway {id}"))],
            Some(Err(e)) => vec![Change::Changed {
                what: "desired config".into(),
                old: format!("unreadable ({e})"),
                new: "the compiled config".into(),
            }],
            Some(Ok(old)) => control::diff::diff_configs(&old, new),
        };
        let old_path = snapshot.gateways.get(id).map(|g| g.path.clone()).filter(|p| !p.is_empty());
        if let Some(p) = old_path
            && p != *path
        {
            changes.push(Change::Changed { what: "node".into(), old: p.join("/"), new: path.join("/") });
        }
        if !changes.is_empty() {
            out.push((id.clone(), changes));
        }
    }
    for (id, g) in &snapshot.gateways {
        if !configs.contains_key(id) && g.desired.is_some() {
            out.push((id.clone(), vec![Change::Removed(format!("gateway {id}"))]));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a commit wrote.
#[derive(Debug)]
pub struct Committed {
    pub push: u64,
    /// The store's revision of the push: its plan, for a later rollback.
    pub revision: i64,
    pub rollout: Rollout,
}

/// Writes the push in one transaction, provided nothing was pushed since the snapshot (the
/// version key, which every push rewrites, is unchanged) and no rollout began.
pub async fn commit(client: &mut Client, p: &Prepared) -> Result<Committed, PushError> {
    let snap = &p.snapshot;
    let n = p.number();
    let at = now();
    let changed: std::collections::BTreeSet<&String> = p.waves.iter().flatten().collect();
    let record = PushRecord {
        push: n,
        at,
        by: p.options.by.clone(),
        scope: p.options.scope.clone().unwrap_or_default(),
        gateways: changed.iter().map(|g| g.to_string()).collect(),
        what: p.options.what.clone(),
    };
    let mut w = Writes::default();
    // The version key without the list of gateways: it is read by every snapshot.
    let version = PushRecord { gateways: Vec::new(), ..record.clone() };
    w.put(keys::VERSION, serde_json::to_string(&version).expect("record serialises"));
    w.put(&keys::push(n), serde_json::to_string(&record).expect("record serialises"));
    let meta_yaml = serde_yaml_ng::to_string(&p.meta).expect("meta serialises");
    if snap.meta.as_deref() != Some(meta_yaml.as_str()) {
        w.put(keys::META, meta_yaml);
    }
    // Fragments: the changed and new ones written, the gone ones deleted.
    let new_paths: std::collections::BTreeSet<&NodePath> = p.fragments.iter().map(|f| &f.path).collect();
    for f in &p.fragments {
        if snap.fragments.get(&f.path).map(|(y, _)| y) != Some(&f.yaml) {
            w.put(&keys::node(&f.path), f.yaml.clone());
        }
    }
    for path in snap.fragments.keys().filter(|p| !new_paths.contains(p)) {
        w.delete(&keys::node(path));
    }
    // Gateways: homes, and desired (first wave) or staged (later waves) configs.
    let first: std::collections::BTreeSet<&String> = p.waves.first().into_iter().flatten().collect();
    for (id, (path, config)) in &p.configs {
        let home = path.join("/");
        if snap.homes.get(id) != Some(&home) {
            w.put(&keys::home(id), home);
        }
        // Moved: the old place's configs go (its status, under the lease, goes with the agent).
        let old_paths = snap
            .gateways
            .get(id)
            .map(|g| g.path.clone())
            .into_iter()
            .chain(snap.moved.iter().filter(|(m, _)| m == id).map(|(_, q)| q.clone()));
        for old in old_paths.filter(|q| !q.is_empty() && q != path) {
            for what in [GatewayKey::Desired, GatewayKey::Staged] {
                w.delete(&keys::gateway(&old, id, what));
            }
        }
        if !changed.contains(id) {
            continue;
        }
        let value = serde_json::to_string(&Desired {
            gateway: id.clone(),
            push: n,
            config: serde_json::from_str(&config.to_json()).expect("a config is JSON"),
        })
        .expect("desired serialises");
        let what = if first.contains(id) { GatewayKey::Desired } else { GatewayKey::Staged };
        w.put(&keys::gateway(path, id, what), value);
    }
    // Gateways gone from the plan: their home, and their configs wherever they are.
    let gone = snap.gateways.keys().chain(snap.homes.keys()).filter(|id| !p.configs.contains_key(*id));
    for id in gone.collect::<std::collections::BTreeSet<_>>() {
        w.delete(&keys::home(id));
        let homes = snap.homes.get(id).map(|h| h.split('/').map(String::from).collect::<NodePath>());
        let paths = snap.gateways.get(id).map(|g| g.path.clone()).into_iter().chain(homes);
        for path in paths.filter(|q| !q.is_empty()) {
            for what in [GatewayKey::Desired, GatewayKey::Staged] {
                w.delete(&keys::gateway(&path, id, what));
            }
        }
    }
    for (id, path) in &snap.moved {
        if p.configs.get(id).is_none_or(|(q, _)| q != path) {
            for what in [GatewayKey::Desired, GatewayKey::Staged] {
                w.delete(&keys::gateway(path, id, what));
            }
        }
    }
    let rollout = Rollout {
        push: n,
        waves: p.waves.clone(),
        written: usize::from(!p.waves.is_empty()),
        state: if p.waves.is_empty() { RolloutState::Done } else { RolloutState::Rolling },
        reason: String::new(),
        settle_s: p.options.settle_s,
        max_drop_rate: p.options.max_drop_rate,
        ack_timeout_s: p.options.ack_timeout_s,
        started: at,
        updated: at,
    };
    w.put(keys::ROLLOUT, serde_json::to_string(&rollout).expect("rollout serialises"));
    let guard = vec![
        unchanged(keys::VERSION, snap.version.as_ref().map(|v| v.mod_revision)),
        unchanged(keys::ROLLOUT, snap.rollout.as_ref().map(|v| v.mod_revision)),
        // A push number is never reused, even if the version key was lost.
        unchanged(&keys::push(n), None),
    ];
    let txn = Txn::new().when(guard).and_then(w.ops());
    let resp = timed("writing the push", client.txn(txn)).await.map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("too many operations") {
            PushError::Refused(format!(
                "{text}: etcd refuses a transaction this large: raise its --max-txn-ops"
            ))
        } else if text.contains("request is too large") {
            PushError::Refused(format!(
                "{text}: etcd refuses a request this large: raise its --max-request-bytes"
            ))
        } else if text.contains("InvalidArgument") || text.contains("duplicate key") {
            PushError::Refused(text)
        } else {
            PushError::Store(e)
        }
    })?;
    if !resp.succeeded() {
        let now_snap = crate::store::read(client, None).await?;
        let version_moved = now_snap.version.as_ref().map(|v| v.mod_revision)
            != snap.version.as_ref().map(|v| v.mod_revision);
        let who = match now_snap.version.as_ref().and_then(|v| v.value.as_ref().ok()) {
            Some(v) if version_moved => {
                format!("push {} by {} landed while this one was prepared", v.push, v.by)
            }
            _ if now_snap.rollout.as_ref().map(|r| r.mod_revision)
                != snap.rollout.as_ref().map(|r| r.mod_revision) =>
            {
                "the rollout record changed while this push was prepared (its driver finished, halted or \
                 aborted it)"
                    .into()
            }
            _ => "the store changed while this push was prepared".into(),
        };
        return Err(PushError::Conflict(who));
    }
    let revision = resp.header().map_or(0, |h| h.revision());
    compact(client, n).await;
    Ok(Committed { push: n, revision, rollout })
}

/// How many pushes back `hutong rollback --fleet` can go: the store's history before the
/// plan of push `latest - ROLLBACK_DEPTH` is compacted away after each push.
pub const ROLLBACK_DEPTH: u64 = 32;

/// Compacts the store's history to push `latest - ROLLBACK_DEPTH`'s revision, so that it does
/// not grow without end (etcd keeps every revision until compacted; its quota, 2 GiB by
/// default, full, it refuses every write) while the last pushes' plans stay readable for a
/// rollback. Best effort: a failure is said and the push stands.
async fn compact(client: &mut Client, latest: u64) {
    let Some(oldest) = latest.checked_sub(ROLLBACK_DEPTH).filter(|n| *n > 0) else { return };
    let revision = match crate::store::push_record(client, oldest).await {
        Ok(Some((_, rev))) => rev,
        Ok(None) => return,
        Err(e) => return log::warn!("compacting the store's history: {e:#}"),
    };
    if let Err(e) = timed("compacting the history", client.compact(revision, None)).await {
        // Compacted to there or further already (by etcd's own auto-compaction, or a run
        // before this one): nothing to do.
        if !format!("{e:#}").contains("compacted") {
            log::warn!("compacting the store's history to revision {revision} (push {oldest}): {e:#}");
        }
    }
}

/// A transaction's writes by key, so that no key is written twice (etcd refuses a transaction
/// that names a key twice): a put wins over a delete of the same key.
#[derive(Default)]
struct Writes(BTreeMap<String, Option<String>>);

impl Writes {
    fn put(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), Some(value));
    }

    fn delete(&mut self, key: &str) {
        self.0.entry(key.to_string()).or_insert(None);
    }

    fn ops(self) -> Vec<TxnOp> {
        self.0
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => TxnOp::put(k, v, None),
                None => TxnOp::delete(k, None),
            })
            .collect()
    }
}

/// A guard: the key's mod revision is still `rev`, or the key is still absent.
pub fn unchanged(key: &str, rev: Option<i64>) -> Compare {
    match rev {
        Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    }
}

/// Deletes every key of the fleet (tests and demos start from an empty store).
pub async fn wipe(client: &mut Client) -> Result<()> {
    timed("wiping", client.delete(keys::ROOT, Some(DeleteOptions::new().with_prefix()))).await?;
    Ok(())
}
