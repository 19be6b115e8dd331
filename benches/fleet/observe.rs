//! The bench's own view of the ACKs: a watch of every gateway's status key, and the time each
//! one first shows a push applied.

use super::*;

/// What the bench's own watch saw of the gateways' status records: per push, when each gateway
/// was first shown to have applied it; and any NACK (a NACK means the bench is broken).
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) applied: HashMap<u64, HashMap<String, Instant>>,
    pub(crate) nacks: Vec<String>,
}

impl Seen {
    pub(crate) fn count(&self, push: u64) -> usize {
        self.applied.get(&push).map_or(0, HashMap::len)
    }
}

/// Watchers per watch stream. etcd queues at most 128 responses per stream (mvcc's
/// `chanBufLen`); a burst beyond that makes its watchers "slow" and their events wait for
/// etcd's retry of slow watchers, which would time that, not the ACKs.
pub(crate) const WATCHERS_PER_STREAM: usize = 64;

/// Watches every gateway's status key from revision `from` on, one watcher per key (a watch of
/// the plan's prefix would also carry every desired config, tens of MiB per push), on streams
/// of [`WATCHERS_PER_STREAM`]; `created` counts the watchers created. Runs until aborted.
pub(crate) async fn observe(
    endpoints: Endpoints,
    status_keys: Vec<String>,
    from: i64,
    seen: Arc<Mutex<Seen>>,
    created: Arc<AtomicUsize>,
) {
    let mut streams = tokio::task::JoinSet::new();
    for chunk in status_keys.chunks(WATCHERS_PER_STREAM) {
        let (endpoints, chunk, seen, created) =
            (endpoints.clone(), chunk.to_vec(), seen.clone(), created.clone());
        streams.spawn(async move {
            // A stream that breaks (the store overloaded) starts again where it was: what it
            // missed comes late, as it would to any watcher.
            let mut next = from;
            loop {
                if let Err(e) = observe_stream(&endpoints, &chunk, &mut next, &seen, &created).await {
                    mark(&format!("the bench's status watch broke ({e:#}); watching again"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
    while streams.join_next().await.is_some() {}
}

/// One stream of watchers, from revision `next`, which it moves on.
pub(crate) async fn observe_stream(
    endpoints: &Endpoints,
    status_keys: &[String],
    next: &mut i64,
    seen: &Mutex<Seen>,
    created: &AtomicUsize,
) -> Result<()> {
    let mut client = store::connect(endpoints).await?;
    let opts = Some(WatchOptions::new().with_start_revision(*next));
    let mut stream = client.watch(status_keys[0].as_str(), opts.clone()).await?;
    for k in &status_keys[1..] {
        stream.watch(k.as_str(), opts.clone()).await?;
    }
    while let Some(resp) = stream.message().await? {
        let at = Instant::now();
        ensure!(!resp.canceled(), "the status watch was cancelled: {}", resp.cancel_reason());
        if resp.created() {
            created.fetch_add(1, Ordering::Relaxed);
        }
        let mut seen = seen.lock().expect("not poisoned");
        for ev in resp.events().iter().filter(|e| e.event_type() == EventType::Put) {
            let Some(kv) = ev.kv() else { continue };
            *next = (*next).max(kv.mod_revision() + 1);
            let Ok(s) = serde_json::from_slice::<Status>(kv.value()) else { continue };
            match s.verdict {
                Verdict::Ack => {
                    seen.applied.entry(s.applied_push).or_default().entry(s.gateway).or_insert(at);
                }
                Verdict::Nack => seen.nacks.push(format!("{}: {}", s.gateway, s.errors.join("; "))),
                Verdict::Idle => {}
            }
        }
    }
    bail!("the stream ended")
}

/// Waits until `n` gateways show push `push` applied, or `within` passes: how many do.
pub(crate) fn wait_applied(seen: &Mutex<Seen>, push: u64, n: usize, within: Duration) -> Result<usize> {
    let start = Instant::now();
    loop {
        let s = seen.lock().expect("not poisoned");
        ensure!(s.nacks.is_empty(), "NACK: {}", s.nacks.join("\n"));
        let got = s.count(push);
        if got >= n || start.elapsed() > within {
            return Ok(got);
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(10));
    }
}
