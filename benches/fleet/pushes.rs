//! The plans the bench pushes (N gateways, each push changing every one) and the pushes
//! themselves: prepared, committed and timed as `hutong push` does them, with their size.

use super::*;

/// The scale with exactly `n` county gateways (provinces × prefectures × counties), as near
/// 10 prefectures of 10 counties as the generator's layout (34, 15, 31 at most) allows.
pub(crate) fn scale_for(n: usize) -> Result<Scale> {
    let mut best: Option<(usize, Scale)> = None;
    for provinces in 1..=34 {
        for prefectures in 1..=15 {
            if !n.is_multiple_of(provinces * prefectures) {
                continue;
            }
            let counties = n / (provinces * prefectures);
            if !(1..=31).contains(&counties) {
                continue;
            }
            let off = prefectures.abs_diff(10) + counties.abs_diff(10);
            if best.as_ref().is_none_or(|(b, _)| off < *b) {
                best = Some((off, Scale { provinces, prefectures, counties, ..Scale::NATIONAL }));
            }
        }
    }
    best.map(|(_, s)| s).ok_or_else(|| anyhow!("{n} gateways: no provinces × prefectures × counties fits"))
}

/// `yaml` with a policy at the root node, which reaches every gateway, so that every gateway's
/// config changes: push `k`'s rule denies TCP port 1000 + k.
pub(crate) fn with_root_policy(yaml: &str, k: u64) -> Result<String> {
    // The first node's fields come first; the policy goes after its level, at its indent.
    let at = yaml.find("level: ").context("the root node's level")?;
    let start = yaml[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &yaml[start..at];
    ensure!(indent.trim().is_empty(), "the root node's level is not a line of its own");
    let eol = at + yaml[at..].find('\n').context("the end of its line")? + 1;
    let rule = format!(
        "{indent}policies: [{{ name: bench-{k}, protocol: tcp, ports: {}, action: deny }}]\n",
        1000 + k
    );
    Ok(format!("{}{rule}{}", &yaml[..eol], &yaml[eol..]))
}

/// A push written: its number and revision, its size, and when its transaction was sent.
pub(crate) struct Pushed {
    pub(crate) push: u64,
    pub(crate) revision: i64,
    pub(crate) size: PushSize,
    pub(crate) sent: Instant,
    pub(crate) prepared: Prepared,
}

/// Checks `text` as `hutong push` does, prepares and commits it. What fails on the store is
/// tried again on a new connection, as an operator would run `hutong push` again, and kept in
/// `errors`. The latency clock starts at the send that landed.
pub(crate) async fn push_text(
    client: &mut Client,
    endpoints: &Endpoints,
    text: &str,
    errors: &mut Vec<String>,
) -> Result<Pushed> {
    let start = Instant::now();
    let local = control::load_str(text, Path::new("generated.yaml")).map_err(|d| anyhow!("{d}"))?;
    control::validate(&local).map_err(|d| anyhow!("{d}"))?;
    let prepared = prepare(client, endpoints, &local, errors).await?;
    let prepare_s = start.elapsed().as_secs_f64();
    let (ops, bytes) = txn_size(&prepared);
    let (revision, sent) = commit(client, endpoints, &prepared, prepare_s, errors).await?;
    let size = PushSize { ops, bytes, prepare_s, commit_s: sent.elapsed().as_secs_f64() };
    mark(&format!("push {}: committed in {:.2} s", prepared.number(), size.commit_s));
    Ok(Pushed { push: prepared.number(), revision, size, sent, prepared })
}

/// `push::prepare`, tried again (five times at most) when the store fails it.
pub(crate) async fn prepare(
    client: &mut Client,
    endpoints: &Endpoints,
    local: &control::LoadedPlan,
    errors: &mut Vec<String>,
) -> Result<Prepared> {
    let mut attempts = 0;
    loop {
        match push::prepare(client, local, PushOptions::default()).await {
            Ok(p) => return Ok(p),
            Err(PushError::Store(e)) if attempts < 5 => {
                attempts += 1;
                let error = format!("prepare: {e:#}");
                mark(&format!("{error}; preparing again"));
                errors.push(error);
                *client = reconnect(endpoints).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `push::commit`: its revision and when the send that landed began. A commit whose answer was
/// lost (its connection broke under load) is looked up on a new connection, and sent again
/// (three times at most) only when it did not land.
pub(crate) async fn commit(
    client: &mut Client,
    endpoints: &Endpoints,
    prepared: &Prepared,
    prepare_s: f64,
    errors: &mut Vec<String>,
) -> Result<(i64, Instant)> {
    let n = prepared.number();
    for _ in 0..3 {
        mark(&format!("push {n}: prepared in {prepare_s:.2} s; sending its transaction"));
        let sent = Instant::now();
        let error = match push::commit(client, prepared).await {
            Ok(done) => return Ok((done.revision, sent)),
            Err(e) => format!("commit: {e:#}"),
        };
        mark(&format!("push {n}: {error}; looking it up"));
        errors.push(error);
        *client = reconnect(endpoints).await?;
        if let Some((_, revision)) = store::push_record(client, n).await? {
            return Ok((revision, sent));
        }
        // Not written: sent again (the guard still holds: nothing else pushed), timed anew.
    }
    bail!("push {n} did not land in three tries")
}

/// A new connection for the pusher, tried for a minute (the agents may be reconnecting too).
pub(crate) async fn reconnect(endpoints: &Endpoints) -> Result<Client> {
    let mut last = None;
    for _ in 0..30 {
        match store::connect(endpoints).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.expect("tried").context("reconnecting the pusher"))
}

/// When the bench started: the agents' log carries the bench's steps against it.
pub(crate) static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// A step of the bench, in the agents' log (stderr, while they run), so that their outage
/// lines can be placed in time.
pub(crate) fn mark(what: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench +{t:.3} s] {what}");
}

/// The operations and bytes (keys and values) of the transaction `push::commit` writes for
/// `p`, by its rules for what this bench pushes (no gateway moves or goes): the version and
/// the push's record, the meta when it changed, each changed or gone fragment, each new home,
/// each changed gateway's desired config, the rollout.
pub(crate) fn txn_size(p: &Prepared) -> (usize, usize) {
    let snap = &p.snapshot;
    let changed: Vec<String> = p.waves.iter().flatten().cloned().collect();
    let record = PushRecord { push: p.number(), gateways: changed.clone(), ..PushRecord::default() };
    let record = serde_json::to_string(&record).expect("a record serialises").len() + p.options.by.len();
    let mut ops = 2;
    let mut bytes = keys::VERSION.len() + keys::push(p.number()).len() + 2 * record;
    let mut add = |key: &str, value: usize| {
        ops += 1;
        bytes += key.len() + value;
    };
    let meta = serde_yaml_ng::to_string(&p.meta).expect("meta serialises");
    if snap.meta.as_deref() != Some(meta.as_str()) {
        add(keys::META, meta.len());
    }
    for f in &p.fragments {
        if snap.fragments.get(&f.path).map(|(y, _)| y) != Some(&f.yaml) {
            add(&keys::node(&f.path), f.yaml.len());
        }
    }
    let kept: std::collections::BTreeSet<_> = p.fragments.iter().map(|f| &f.path).collect();
    for path in snap.fragments.keys().filter(|q| !kept.contains(q)) {
        add(&keys::node(path), 0);
    }
    for (id, (path, config)) in &p.configs {
        let home = path.join("/");
        if snap.homes.get(id) != Some(&home) {
            add(&keys::home(id), home.len());
        }
        if changed.contains(id) {
            let desired = Desired {
                gateway: id.clone(),
                push: p.number(),
                config: serde_json::from_str(&config.to_json()).expect("a config is JSON"),
            };
            let value = serde_json::to_string(&desired).expect("desired serialises").len();
            add(&keys::gateway(path, id, GatewayKey::Desired), value);
        }
    }
    let rollout = Rollout {
        push: p.number(),
        waves: p.waves.clone(),
        written: 1,
        state: RolloutState::Rolling,
        reason: String::new(),
        settle_s: 0.0,
        max_drop_rate: 0.0,
        ack_timeout_s: 0.0,
        started: 0.0,
        updated: 0.0,
    };
    add(keys::ROLLOUT, serde_json::to_string(&rollout).expect("rollout serialises").len());
    (ops, bytes)
}
