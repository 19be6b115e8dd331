//! The connection to etcd, and the fleet's state read back from it in one consistent snapshot.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, SortOrder, SortTarget, TlsOptions,
};

use crate::{
    keys::{self, GatewayKey, NodePath, PlanKey},
    records::{Desired, HealthCheck, PushRecord, Rollout, Status},
};

/// How to reach the store: its members' URLs, and TLS with a client certificate when the URLs
/// are `https://`.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    pub urls: Vec<String>,
    pub tls: Option<TlsFiles>,
}

/// PEM files: the CA that signed etcd's server certificates, and this client's certificate
/// and key.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Endpoints {
    /// `URL[,URL...]`, as `--fleet` takes them.
    pub fn parse(list: &str, tls: Option<TlsFiles>) -> Result<Endpoints> {
        let urls: Vec<String> =
            list.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect();
        anyhow::ensure!(!urls.is_empty(), "no etcd URL given (--fleet http://HOST:2379[,...])");
        for u in &urls {
            anyhow::ensure!(
                u.starts_with("http://") || u.starts_with("https://"),
                "etcd URL {u:?} must start with http:// or https://"
            );
            anyhow::ensure!(
                !u.starts_with("https://") || tls.is_some(),
                "etcd URL {u:?} is https: give --etcd-ca, --etcd-cert and --etcd-key"
            );
        }
        Ok(Endpoints { urls, tls })
    }
}

/// How long one request may take before the store counts as unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest reply the fleet reads (a whole plan and every config of a province).
pub const MAX_MESSAGE: usize = 512 << 20;

/// Where the next connection starts looking: rotated, so that a reconnection after a failure
/// tries another member first.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Connects to the first member, of `ep`'s in turn, that answers a read with a leader behind
/// it; fails within a few seconds per member when none does. One member at a time, on
/// purpose: etcd-client's balanced channel fails every request while any one of its
/// endpoints is down (etcd-client issue #39), so failover is done here, by reconnecting.
pub async fn connect(ep: &Endpoints) -> Result<Client> {
    let start = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut errors = Vec::new();
    for i in 0..ep.urls.len() {
        let url = &ep.urls[(start + i) % ep.urls.len()];
        match connect_one(ep, url).await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(format!("{url}: {e:#}")),
        }
    }
    anyhow::bail!("no etcd member answers: {}", errors.join("; "))
}

async fn connect_one(ep: &Endpoints, url: &str) -> Result<Client> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        // A member that stops answering is noticed within 20 s, also on an idle watch (a
        // member that dies closes its connections at once). Not sooner: a process or a member
        // starved for a few seconds must not lose its connections (and with them its watches
        // and a large commit under way), which turned a busy moment into a reconnection storm
        // (docs/fleet.md, "What limits it").
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10))
        .with_keep_alive_while_idle(true)
        // Without a leader a member answers nothing current: go to another one.
        .with_require_leader(true);
    if let Some(t) = &ep.tls {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&t.ca)?))
            .identity(Identity::from_pem(read(&t.cert)?, read(&t.key)?));
        opts = opts.with_tls(tls);
    }
    let mut client = tokio::time::timeout(REQUEST_TIMEOUT, Client::connect([url], Some(opts)))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))??;
    // Connected is not answering: a read through the leader says it serves (a count, so that
    // its cost does not grow with the fleet).
    timed("a first read", client.get(keys::VERSION, Some(GetOptions::new().with_count_only()))).await?;
    Ok(client)
}

/// Runs one request with [`REQUEST_TIMEOUT`].
pub async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.with_context(|| format!("etcd: {what}")),
        Err(_) => anyhow::bail!("etcd: {what}: no answer within {REQUEST_TIMEOUT:?}"),
    }
}

/// A value as read, with its key's revision; a value that does not decode is kept as the
/// decoding error, so that it can be reported (and overwritten) rather than stop the reader.
#[derive(Clone, Debug)]
pub struct Read<T> {
    pub value: Result<T, String>,
    pub mod_revision: i64,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], mod_revision: i64) -> Read<T> {
    Read { value: serde_json::from_slice(bytes).map_err(|e| e.to_string()), mod_revision }
}

/// A gateway's keys.
#[derive(Clone, Debug, Default)]
pub struct GatewayKeys {
    /// Where they are (the node the gateway belongs to).
    pub path: NodePath,
    pub desired: Option<Read<Desired>>,
    pub staged: Option<Read<Desired>>,
    pub status: Option<Read<Status>>,
    /// A rollout's request for fresh health.
    pub check: Option<Read<HealthCheck>>,
}

impl GatewayKeys {
    /// Sets (`Some`) or clears one of its keys.
    fn set(&mut self, what: GatewayKey, value: Option<&[u8]>, rev: i64) {
        match what {
            GatewayKey::Desired => self.desired = value.map(|v| decode(v, rev)),
            GatewayKey::Staged => self.staged = value.map(|v| decode(v, rev)),
            GatewayKey::Status => self.status = value.map(|v| decode(v, rev)),
            GatewayKey::Check => self.check = value.map(|v| decode(v, rev)),
        }
    }
}

/// Everything under `/hutong/v1/` at one revision.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub version: Option<Read<PushRecord>>,
    pub meta: Option<String>,
    /// Node fragments: path → YAML.
    pub fragments: BTreeMap<NodePath, (String, i64)>,
    /// By gateway id. A gateway with keys at two paths (it moved) is listed at each: `moved`.
    pub gateways: BTreeMap<String, GatewayKeys>,
    /// Keys left at another path than the gateway's current one.
    pub moved: Vec<(String, NodePath)>,
    /// Gateway homes: id → path.
    pub homes: BTreeMap<String, String>,
    pub rollout: Option<Read<Rollout>>,
    /// The newest push record's number.
    pub last_push: u64,
    /// Keys under the prefix this layout does not know (reported, never read as plan).
    pub unknown: Vec<String>,
}

impl Snapshot {
    /// The latest push's number (0: none yet): by the version key, or by the push records if
    /// that key was lost or damaged, so that a number is never given twice.
    pub fn push(&self) -> u64 {
        let version = self.version.as_ref().and_then(|v| v.value.as_ref().ok()).map_or(0, |v| v.push);
        version.max(self.last_push)
    }

    /// Applies one change seen after the snapshot's revision (a watch event): `value` `None`
    /// for a delete. A gateway's keys away from its home are tracked as `moved`, as [`read`]
    /// does.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>, rev: i64) {
        let Ok(key) = std::str::from_utf8(key) else {
            return self.unknown.push(String::from_utf8_lossy(key).into_owned());
        };
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        match key {
            keys::VERSION => self.version = value.map(|v| decode(v, rev)),
            keys::META => self.meta = value.map(text),
            keys::ROLLOUT => self.rollout = value.map(|v| decode(v, rev)),
            k if k.starts_with(keys::PUSHES) => {
                if value.is_some()
                    && let Ok(n) = k[keys::PUSHES.len()..].parse::<u64>()
                {
                    self.last_push = self.last_push.max(n);
                }
            }
            k if k.starts_with(keys::GATEWAYS) => {
                let id = k[keys::GATEWAYS.len()..].to_string();
                match value {
                    Some(v) => self.homes.insert(id, text(v)),
                    None => self.homes.remove(&id),
                };
            }
            k => match keys::parse(k) {
                Some(PlanKey::Node(path)) => match value {
                    Some(v) => {
                        self.fragments.insert(path, (text(v), rev));
                    }
                    None => {
                        self.fragments.remove(&path);
                    }
                },
                Some(PlanKey::Gateway(path, id, what)) => {
                    let home: Option<NodePath> =
                        self.homes.get(&id).map(|h| h.split('/').map(String::from).collect());
                    if home.as_ref().is_some_and(|h| *h != path) {
                        let entry = (id, path);
                        match value {
                            Some(_) if !self.moved.contains(&entry) => self.moved.push(entry),
                            Some(_) => {}
                            None => self.moved.retain(|m| *m != entry),
                        }
                        return;
                    }
                    let g = self.gateways.entry(id).or_default();
                    g.path = path;
                    g.set(what, value, rev);
                }
                None => {
                    if value.is_some() {
                        self.unknown.push(k.to_string());
                    }
                }
            },
        }
    }

    /// The plan's fragments as `fragments::assemble` takes them.
    pub fn fragment_list(&self) -> Vec<(NodePath, String)> {
        self.fragments.iter().map(|(p, (y, _))| (p.clone(), y.clone())).collect()
    }
}

/// A gateway key as read: where, which, its value and revision.
type RawGatewayKey = (NodePath, GatewayKey, Vec<u8>, i64);

/// Reads the fleet's state (`revision`: as it was then; `None`: now). Push records are left
/// out but for the newest one's number (they only grow); read one with [`push_record`].
pub async fn read(client: &mut Client, revision: Option<i64>) -> Result<Snapshot> {
    let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
    let at = |opts: GetOptions, rev: Option<i64>| match rev {
        Some(r) => opts.with_revision(r),
        None => opts,
    };
    // Three reads at one revision: everything before the push records, everything after
    // them, and the newest push record's key alone (they only grow; nothing else needs them).
    let first = at(GetOptions::new().with_range(keys::PUSHES), revision);
    let resp = timed("reading the fleet", kv.get(keys::ROOT, Some(first))).await?;
    let rev = revision.unwrap_or_else(|| resp.header().map_or(0, |h| h.revision()));
    let rest = at(GetOptions::new().with_range(keys::prefix_end(keys::ROOT)), Some(rev));
    let after = timed("reading the fleet", kv.get(keys::prefix_end(keys::PUSHES), Some(rest))).await?;
    let newest = GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_limit(1)
        .with_sort(SortTarget::Key, SortOrder::Descend)
        .with_revision(rev);
    let last = timed("reading the push records", kv.get(keys::PUSHES, Some(newest))).await?;
    let last_push = last
        .kvs()
        .first()
        .and_then(|k| k.key_str().ok()?.strip_prefix(keys::PUSHES)?.parse().ok())
        .unwrap_or(0);
    let mut snap = Snapshot { revision: rev, last_push, ..Snapshot::default() };
    let mut seen_at: BTreeMap<String, Vec<RawGatewayKey>> = BTreeMap::new();
    for kv in resp.kvs().iter().chain(after.kvs()) {
        let Ok(key) = kv.key_str() else {
            snap.unknown.push(String::from_utf8_lossy(kv.key()).into_owned());
            continue;
        };
        let (value, rev) = (kv.value(), kv.mod_revision());
        match key {
            keys::VERSION => snap.version = Some(decode(value, rev)),
            keys::META => snap.meta = Some(String::from_utf8_lossy(value).into_owned()),
            keys::ROLLOUT => snap.rollout = Some(decode(value, rev)),
            k if k.starts_with(keys::PUSHES) => {}
            k if k.starts_with(keys::GATEWAYS) => {
                snap.homes.insert(
                    k[keys::GATEWAYS.len()..].to_string(),
                    String::from_utf8_lossy(value).into_owned(),
                );
            }
            k => match keys::parse(k) {
                Some(PlanKey::Node(path)) => {
                    snap.fragments.insert(path, (String::from_utf8_lossy(value).into_owned(), rev));
                }
                Some(PlanKey::Gateway(path, id, what)) => {
                    seen_at.entry(id).or_default().push((path, what, value.to_vec(), rev));
                }
                None => snap.unknown.push(k.to_string()),
            },
        }
    }
    for (id, entries) in seen_at {
        // The gateway's keys at its home; any elsewhere are left over from a move.
        let home: Option<NodePath> = snap.homes.get(&id).map(|h| h.split('/').map(String::from).collect());
        let mut g = GatewayKeys::default();
        for (path, what, value, rev) in entries {
            if home.as_ref().is_some_and(|h| *h != path)
                || (home.is_none() && !g.path.is_empty() && g.path != path)
            {
                snap.moved.push((id.clone(), path));
                continue;
            }
            g.path = path;
            g.set(what, Some(&value), rev);
        }
        snap.gateways.insert(id, g);
    }
    Ok(snap)
}

/// Push `n`'s record and the revision at which its plan was the store's.
pub async fn push_record(client: &mut Client, n: u64) -> Result<Option<(PushRecord, i64)>> {
    let resp = timed("reading a push record", client.get(keys::push(n), None)).await?;
    let Some(kv) = resp.kvs().first() else { return Ok(None) };
    let record: PushRecord = serde_json::from_slice(kv.value())
        .with_context(|| format!("{}: not a push record", keys::push(n)))?;
    Ok(Some((record, kv.mod_revision())))
}
