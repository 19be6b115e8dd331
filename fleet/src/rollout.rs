//! Driving a rollout: a wave goes out, every gateway of it must ACK the push, and then stay
//! healthy (its drops by reason do not jump) for the settling time; only then is the next wave
//! written. A NACK, a jump or a wave not answered in time halts the rollout, recorded in the
//! store, until an operator resumes or aborts it.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Result, bail};
use etcd_client::{Client, PutOptions, Txn, TxnOp};

use crate::{
    follow::Follow,
    keys::{self, GatewayKey},
    push::unchanged,
    records::{Health, HealthCheck, Rollout, RolloutState, Status, Verdict, now},
    store::{Endpoints, Snapshot, read, timed},
};

/// How long the driver waits for a change before it looks again: a wave's ACK timeout runs
/// on the clock, not on changes.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long a wave's gateways have to answer the health check at the end of its settling time.
const CHECK_WAIT: Duration = Duration::from_secs(30);

/// How long the gateways of a wave about to be written have to give their health before it.
const BASELINE_WAIT: Duration = Duration::from_secs(10);

/// The time to live of the health checks' lease: requests nobody answered go by themselves.
const CHECK_TTL: i64 = 60;

/// What the driver tells its caller as it goes.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Wave `wave` (0-based) is out: how many of its gateways ACKed so far.
    Waiting {
        wave: usize,
        acked: usize,
        of: usize,
    },
    /// Its gateways all ACKed; settling.
    Settling {
        wave: usize,
        seconds: f64,
    },
    /// The next wave was written.
    Wrote {
        wave: usize,
        gateways: usize,
    },
    Finished(Rollout),
}

/// The statuses of `ids` in a snapshot, those that decode, with their revisions.
fn statuses(snap: &Snapshot, ids: &[String]) -> BTreeMap<String, (Status, i64)> {
    ids.iter()
        .filter_map(|id| {
            let read = snap.gateways.get(id)?.status.as_ref()?;
            Some((id.clone(), (read.value.as_ref().ok()?.clone(), read.mod_revision)))
        })
        .collect()
}

/// Each status's time and health, as a rollout compares them.
fn healths(st: &BTreeMap<String, (Status, i64)>) -> BTreeMap<String, (f64, Health)> {
    st.iter().map(|(id, (s, _))| (id.clone(), (s.last_seen, s.health.clone()))).collect()
}

/// How long the driver rides out the store's trouble (a leader election, a member down)
/// before it gives up; the rollout stays as recorded, for `hutong rollout resume`.
const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `op` on the client, reconnecting (to another member first) and retrying while the
/// store is in trouble, up to [`STORE_PATIENCE`]. A retried write is guarded, so one that had
/// landed before its answer was lost is refused the second time, never applied twice.
macro_rules! patiently {
    ($client:expr, $ep:expr, $op:expr) => {{
        let start = std::time::Instant::now();
        loop {
            match $op {
                Ok(v) => break Ok(v),
                Err(e) if start.elapsed() < STORE_PATIENCE => {
                    log::warn!("rollout: the store: {e:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(c) = crate::store::connect($ep).await {
                        *$client = c;
                    }
                }
                Err(e) => break Err(e),
            }
        }
    }};
}

/// Reads the rollout record and its revision.
async fn current(client: &mut Client) -> Result<(Rollout, i64, Snapshot)> {
    let snap = read(client, None).await?;
    let (rollout, rev) = rollout_of(&snap)?;
    Ok((rollout, rev, snap))
}

/// The rollout record of a snapshot, and its revision.
fn rollout_of(snap: &Snapshot) -> Result<(Rollout, i64)> {
    let Some(r) = &snap.rollout else { bail!("no rollout in the store") };
    let rollout = r.value.clone().map_err(|e| anyhow::anyhow!("{}: unreadable: {e}", keys::ROLLOUT))?;
    Ok((rollout, r.mod_revision))
}

/// Writes the rollout record, guarded by the revision it was read at. `None`: someone else
/// (an abort, another driver) changed it first; `Some`: the revision written.
async fn save(client: &mut Client, r: &Rollout, rev: i64, extra: Vec<TxnOp>) -> Result<Option<i64>> {
    let mut ops = vec![TxnOp::put(keys::ROLLOUT, serde_json::to_string(r)?, None)];
    ops.extend(extra);
    let txn = Txn::new().when(vec![unchanged(keys::ROLLOUT, Some(rev))]).and_then(ops);
    let resp = timed("updating the rollout", client.txn(txn)).await?;
    Ok(resp.succeeded().then(|| resp.header().map_or(0, |h| h.revision())))
}

/// Halts the rollout as read at `rev`, with `reason`. `None`: the record changed since (an
/// abort, a new push), so nothing was halted and the caller looks again.
async fn halt(
    client: &mut Client,
    ep: &Endpoints,
    mut r: Rollout,
    rev: i64,
    reason: String,
) -> Result<Option<Rollout>> {
    r.state = RolloutState::Halted;
    r.reason = reason;
    r.updated = now();
    Ok(patiently!(client, ep, save(client, &r, rev, vec![]).await)?.map(|_| r))
}

/// Waits up to `within` for the store's changes; a watch that failed is started again (a new
/// read), riding out the store's trouble as [`patiently!`] does.
async fn advance(f: &mut Follow, client: &mut Client, ep: &Endpoints, within: Duration) -> Result<()> {
    if let Err(e) = f.changes(within).await {
        log::warn!("rollout: {e:#}; reading the fleet again");
        *f = patiently!(client, ep, Follow::start(client).await)?;
    }
    Ok(())
}

/// Follows the store until it shows the driver's own write at `rev`.
async fn reach(f: &mut Follow, client: &mut Client, ep: &Endpoints, rev: i64) -> Result<()> {
    if let Err(e) = f.reach(rev, STORE_PATIENCE).await {
        log::warn!("rollout: {e:#}; reading the fleet again");
        *f = patiently!(client, ep, Follow::start(client).await)?;
    }
    Ok(())
}

/// Asks `ids` for their health now (a check key each, under a short lease of its own): each
/// agent answers with a fresh status that echoes the check's `at`, which this returns.
async fn ask_health(client: &mut Client, snap: &Snapshot, ids: &[String], push: u64) -> Result<f64> {
    let lease = timed("granting the health checks' lease", client.lease_grant(CHECK_TTL, None)).await?.id();
    let at = now();
    let value = serde_json::to_string(&HealthCheck { push, at })?;
    let ops = ids
        .iter()
        .filter_map(|id| Some(keys::gateway(&snap.gateways.get(id)?.path, id, GatewayKey::Check)))
        .map(|k| TxnOp::put(k, value.clone(), Some(PutOptions::new().with_lease(lease))))
        .collect::<Vec<_>>();
    timed("asking for health", client.txn(Txn::new().and_then(ops))).await?;
    Ok(at)
}

/// The health of `ids` now: asked, and their answers awaited (following the store) for at most
/// `wait`. Those that did not answer are absent.
async fn health_now(
    f: &mut Follow,
    client: &mut Client,
    ep: &Endpoints,
    ids: &[String],
    push: u64,
    wait: Duration,
) -> Result<BTreeMap<String, (Status, i64)>> {
    let at = patiently!(client, ep, ask_health(client, &f.snap, ids, push).await)?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Within a microsecond: serde_json's float parsing is not always the exact inverse of
        // its printing (the last bit may differ), and checks are seconds apart.
        let answered: BTreeMap<_, _> =
            statuses(&f.snap, ids).into_iter().filter(|(_, (s, _))| (s.check_at - at).abs() < 1e-6).collect();
        if answered.len() == ids.len() || tokio::time::Instant::now() >= deadline {
            return Ok(answered);
        }
        advance(f, client, ep, LOOK_EVERY).await?;
    }
}

/// The health of the gateways of a wave about to be written, asked of them now: the baseline
/// their drops after the push are compared with. Those that do not answer within
/// [`BASELINE_WAIT`] are measured from their ACK.
pub async fn baseline(
    client: &mut Client,
    ep: &Endpoints,
    ids: &[String],
    push: u64,
) -> Result<BTreeMap<String, (f64, Health)>> {
    let mut f = patiently!(client, ep, Follow::start(client).await)?;
    Ok(healths(&health_now(&mut f, client, ep, ids, push, BASELINE_WAIT).await?))
}

/// Whether `s` says the gateway runs `push`.
fn acked(s: &Status, push: u64) -> bool {
    s.verdict == Verdict::Ack && s.desired_push == push && s.applied_push == push
}

/// What one look at the current wave found.
enum Look {
    /// Every gateway ACKed: their health at that moment.
    Acked(BTreeMap<String, (f64, Health)>),
    /// Halt, for this reason.
    Halt(String),
    Waiting,
}

/// One look at wave `wave` of `r` in `snap`.
fn look(r: &Rollout, wave: usize, snap: &Snapshot, progress: &mut dyn FnMut(Progress)) -> Look {
    let ids = r.waves.get(wave).cloned().unwrap_or_default();
    let st = statuses(snap, &ids);
    if let Some((id, (s, _))) =
        st.iter().find(|(_, (s, _))| s.desired_push == r.push && s.verdict == Verdict::Nack)
    {
        return Look::Halt(format!("gateway {id} refused push {} (NACK): {}", r.push, s.errors.join("; ")));
    }
    let acked_n = st.values().filter(|(s, _)| acked(s, r.push)).count();
    progress(Progress::Waiting { wave, acked: acked_n, of: ids.len() });
    if acked_n == ids.len() {
        return Look::Acked(healths(&st));
    }
    if now() > r.updated + r.ack_timeout_s {
        let missing: Vec<&str> = ids
            .iter()
            .filter(|id| !st.get(*id).is_some_and(|(s, _)| acked(s, r.push)))
            .map(String::as_str)
            .collect();
        return Look::Halt(format!(
            "wave {} not acknowledged within {:.0} s by {}",
            wave + 1,
            r.ack_timeout_s,
            missing.join(", ")
        ));
    }
    Look::Waiting
}

/// Drives the rollout of push `push` until it is done, halted, aborted or superseded by a newer
/// push. `baseline`: the health of the current wave's gateways from before it was written
/// (absent ones are measured from their ACK). It reads the fleet once and then follows the
/// store's changes ([`Follow`]); a wave's health after its settling time is asked of its
/// gateways ([`ask_health`]), which write their status only when something changed or when
/// asked.
pub async fn drive(
    client: &mut Client,
    ep: &Endpoints,
    push: u64,
    mut baseline: BTreeMap<String, (f64, Health)>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Rollout> {
    let mut f = patiently!(client, ep, Follow::start(client).await)?;
    loop {
        let (r, rev) = rollout_of(&f.snap)?;
        if r.state != RolloutState::Rolling || r.push != push {
            return finish(r, progress);
        }
        let wave = r.written.saturating_sub(1);
        let ids = r.waves.get(wave).cloned().unwrap_or_default();
        // --- every gateway of the wave ACKs this push -------------------------------------
        let at_ack = match look(&r, wave, &f.snap, progress) {
            Look::Waiting => {
                advance(&mut f, client, ep, LOOK_EVERY).await?;
                continue;
            }
            Look::Halt(why) => match halt(client, ep, r, rev, why).await? {
                Some(h) => return finish(h, progress),
                None => {
                    advance(&mut f, client, ep, LOOK_EVERY).await?;
                    continue;
                }
            },
            Look::Acked(h) => h,
        };
        // --- settle: no jump in drops --------------------------------------------------------
        let Ok(settle) = Duration::try_from_secs_f64(r.settle_s) else {
            let why = format!("the rollout's settling time {} s is not a duration", r.settle_s);
            match halt(client, ep, r, rev, why).await? {
                Some(h) => return finish(h, progress),
                None => {
                    advance(&mut f, client, ep, LOOK_EVERY).await?;
                    continue;
                }
            }
        };
        progress(Progress::Settling { wave, seconds: r.settle_s });
        let until = tokio::time::Instant::now() + settle;
        while let Some(left) =
            until.checked_duration_since(tokio::time::Instant::now()).filter(|d| !d.is_zero())
        {
            advance(&mut f, client, ep, left).await?;
        }
        let still = |f: &Follow| {
            rollout_of(&f.snap).is_ok_and(|(r2, _)| {
                r2.state == RolloutState::Rolling && r2.push == push && r2.written == r.written
            })
        };
        if !still(&f) {
            continue;
        }
        // The health now, asked of the wave's gateways: a status that answers the request.
        let after = health_now(&mut f, client, ep, &ids, push, CHECK_WAIT).await?;
        let (r2, rev2) = rollout_of(&f.snap)?;
        if !still(&f) {
            continue;
        }
        let mut trouble = None;
        for id in &ids {
            let (Some((t1, h1)), Some((s2, _))) = (at_ack.get(id), after.get(id)) else {
                let gone = statuses(&f.snap, std::slice::from_ref(id)).is_empty();
                trouble = Some(if gone {
                    format!("gateway {id} stopped reporting while wave {} settled", wave + 1)
                } else {
                    format!(
                        "gateway {id} did not report its health within {CHECK_WAIT:?} of the check after wave {} settled",
                        wave + 1
                    )
                });
                break;
            };
            let before = baseline.get(id).cloned();
            if let Some(why) = jump(before.as_ref(), (*t1, h1), (s2.last_seen, &s2.health), r.max_drop_rate) {
                trouble = Some(format!("gateway {id} after push {push}: {why}"));
                break;
            }
        }
        if let Some(why) = trouble {
            match halt(client, ep, r2, rev2, why).await? {
                Some(h) => return finish(h, progress),
                None => {
                    advance(&mut f, client, ep, LOOK_EVERY).await?;
                    continue;
                }
            }
        }
        // --- the next wave, or done ----------------------------------------------------------
        let mut next = r2.clone();
        next.updated = now();
        if next.written >= next.waves.len() {
            next.state = RolloutState::Done;
            if let Some(rev) = patiently!(client, ep, save(client, &next, rev2, vec![]).await)? {
                reach(&mut f, client, ep, rev).await?;
            }
            continue;
        }
        let ids = next.waves[next.written].clone();
        // Their health before the push reaches them, asked now (the statuses in the store
        // may be old: agents write them only when something changes).
        baseline = healths(&health_now(&mut f, client, ep, &ids, push, BASELINE_WAIT).await?);
        let mut ops = Vec::new();
        let mut missing = None;
        for id in &ids {
            let staged = f.snap.gateways.get(id).and_then(|g| Some((g, g.staged.as_ref()?)));
            let Some((g, staged)) = staged else {
                missing =
                    Some(format!("gateway {id}: its staged config for wave {} is gone", next.written + 1));
                break;
            };
            let value = match &staged.value {
                Ok(d) => serde_json::to_string(d)?,
                Err(e) => {
                    missing = Some(format!("gateway {id}: its staged config is unreadable: {e}"));
                    break;
                }
            };
            ops.push(TxnOp::put(keys::gateway(&g.path, id, GatewayKey::Desired), value, None));
            ops.push(TxnOp::delete(keys::gateway(&g.path, id, GatewayKey::Staged), None));
        }
        if let Some(why) = missing {
            match halt(client, ep, r2, rev2, why).await? {
                Some(h) => return finish(h, progress),
                None => {
                    advance(&mut f, client, ep, LOOK_EVERY).await?;
                    continue;
                }
            }
        }
        next.written += 1;
        if let Some(rev) = patiently!(client, ep, save(client, &next, rev2, ops.clone()).await)? {
            progress(Progress::Wrote { wave: next.written - 1, gateways: ids.len() });
            reach(&mut f, client, ep, rev).await?;
        }
    }
}

fn finish(r: Rollout, progress: &mut dyn FnMut(Progress)) -> Result<Rollout> {
    progress(Progress::Finished(r.clone()));
    Ok(r)
}

/// Whether a gateway's drops jumped while it settled: for some reason, the rate over the
/// settling time (from its ACK to now) exceeds twice the rate before the wave plus
/// `max_rate` per second. `before`: the health when the wave was written, if known (the rate
/// before is then from there to the ACK; unknown counts as zero). Counters that went down (a
/// restart) are read as starting over.
pub fn jump(
    before: Option<&(f64, Health)>,
    at_ack: (f64, &Health),
    now: (f64, &Health),
    max_rate: f64,
) -> Option<String> {
    let dt = (now.0 - at_ack.0).max(0.001);
    for (reason, n) in &now.1.drops {
        let at = at_ack.1.drops.get(reason).copied().unwrap_or(0);
        let grew = if *n >= at { n - at } else { *n };
        let rate = grew as f64 / dt;
        let base = before
            .map(|(t0, h0)| {
                let d0 = h0.drops.get(reason).copied().unwrap_or(0);
                let dt0 = (at_ack.0 - t0).max(0.001);
                at.saturating_sub(d0) as f64 / dt0
            })
            .unwrap_or(0.0);
        if rate > 2.0 * base + max_rate {
            return Some(format!(
                "{reason} drops jumped to {rate:.0}/s (before: {base:.0}/s; allowed: {:.0}/s)",
                2.0 * base + max_rate
            ));
        }
    }
    None
}

/// Sets a halted rollout going again (it re-checks the wave that halted), then drives it.
pub async fn resume(
    client: &mut Client,
    ep: &Endpoints,
    progress: &mut dyn FnMut(Progress),
) -> Result<Rollout> {
    let (mut r, rev, snap) = patiently!(client, ep, current(client).await)?;
    match r.state {
        RolloutState::Rolling => {}
        RolloutState::Halted => {
            r.state = RolloutState::Rolling;
            r.reason.clear();
            r.updated = now();
            if save(client, &r, rev, vec![]).await?.is_none() {
                bail!("the rollout changed while resuming it: look again (`hutong rollout status`)");
            }
        }
        RolloutState::Done | RolloutState::Aborted => {
            bail!("the rollout of push {} is {}: nothing to resume", r.push, state_name(r.state))
        }
    }
    let ids = r.waves.get(r.written.saturating_sub(1)).cloned().unwrap_or_default();
    let baseline = healths(&statuses(&snap, &ids));
    drive(client, ep, r.push, baseline, progress).await
}

/// Ends a rollout: later waves are never written (their staged configs are deleted). The
/// gateways that took the push keep it; `hutong rollback --fleet` takes it back.
pub async fn abort(client: &mut Client) -> Result<Rollout> {
    let (mut r, rev, snap) = current(client).await?;
    if r.finished() {
        bail!("the rollout of push {} is {} already", r.push, state_name(r.state));
    }
    let mut ops = Vec::new();
    for id in r.waves.iter().skip(r.written).flatten() {
        if let Some(g) = snap.gateways.get(id) {
            ops.push(TxnOp::delete(keys::gateway(&g.path, id, GatewayKey::Staged), None));
        }
    }
    r.state = RolloutState::Aborted;
    r.reason = format!("aborted after {} of {} wave(s)", r.written, r.waves.len());
    r.updated = now();
    if save(client, &r, rev, ops).await?.is_none() {
        bail!("the rollout changed while aborting it: look again (`hutong rollout status`)");
    }
    Ok(r)
}

pub fn state_name(s: RolloutState) -> &'static str {
    match s {
        RolloutState::Rolling => "rolling",
        RolloutState::Halted => "halted",
        RolloutState::Done => "done",
        RolloutState::Aborted => "aborted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(drops: &[(&str, u64)]) -> Health {
        Health { received: 0, drops: drops.iter().map(|(k, v)| (k.to_string(), *v)).collect() }
    }

    #[test]
    fn a_jump_is_a_rate_above_twice_the_baseline_plus_the_allowance() {
        // Steady 10/s before and after: no jump.
        let before = (0.0, h(&[("no_route", 0)]));
        let ack = h(&[("no_route", 100)]);
        assert_eq!(jump(Some(&before), (10.0, &ack), (20.0, &h(&[("no_route", 200)])), 5.0), None);
        // From 10/s to 100/s: a jump, named.
        let why = jump(Some(&before), (10.0, &ack), (20.0, &h(&[("no_route", 1100)])), 5.0).unwrap();
        assert!(why.contains("no_route") && why.contains("100/s"), "{why}");
        // A new reason appears, unknown baseline: the allowance alone.
        assert!(
            jump(None, (10.0, &ack), (20.0, &h(&[("no_route", 100), ("policy_deny", 51)])), 5.0).is_some()
        );
        assert!(
            jump(None, (10.0, &ack), (20.0, &h(&[("no_route", 100), ("policy_deny", 49)])), 5.0).is_none()
        );
        // Counters that restarted count from zero.
        assert!(jump(None, (10.0, &ack), (20.0, &h(&[("no_route", 20)])), 5.0).is_none());
    }
}
