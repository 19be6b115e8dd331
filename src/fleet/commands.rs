//! The fleet's commands: `hutong push`, `hutong fleet status|plan`, `hutong rollout
//! status|resume|abort` and `hutong rollback --fleet`. Each connects to etcd, does its job and
//! says plainly what happened; the exit code is 0 only when it all landed (or, for status, was
//! read).

use std::{collections::BTreeMap, process::ExitCode};

use anyhow::Result;
use hutong_fleet::{
    Client, Endpoints,
    follow::Follow,
    push::{self, Prepared, PushError, PushOptions},
    records::{Health, Rollout, RolloutState},
    rollout::{self, Progress},
    status, store,
};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Prints what a push will change, gateway by gateway, and its waves.
fn print_prepared(p: &Prepared) {
    println!(
        "push {} ({}): {} gateway(s) in the plan, {} change(s)",
        p.number(),
        p.options.scope.as_ref().map_or("the whole plan".to_string(), |s| format!("scope {s}")),
        p.configs.len(),
        p.diffs.len()
    );
    for (id, changes) in &p.diffs {
        println!("gateway {id}:");
        for c in changes {
            println!("  {c}");
        }
    }
    if p.waves.len() > 1 {
        for (i, w) in p.waves.iter().enumerate() {
            println!("wave {}: {}", i + 1, w.join(", "));
        }
    }
    for n in &p.notes {
        println!("note: {n}");
    }
}

/// The exit code and message of a push that did not land.
fn refused(e: PushError) -> ExitCode {
    eprintln!("hutong push: {e}");
    match e {
        PushError::Conflict(_) => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    }
}

/// Shows a rollout's progress, a line per change (logs and terminals alike).
fn show() -> impl FnMut(Progress) {
    let mut last = None;
    move |p| match p {
        Progress::Waiting { wave, acked, of } => {
            if last != Some((wave, acked)) {
                println!("wave {}: {acked}/{of} acknowledged", wave + 1);
                last = Some((wave, acked));
            }
        }
        Progress::Settling { wave, seconds } => {
            println!("wave {}: all acknowledged; settling for {seconds:.0} s", wave + 1)
        }
        Progress::Wrote { wave, gateways } => println!("wave {}: written to {gateways} gateway(s)", wave + 1),
        Progress::Finished(_) => {}
    }
}

fn rollout_line(r: &Rollout) -> String {
    // Every wave out and nobody following it (`push --no-wait`): the gateways' rows say the rest.
    let state = if r.state == RolloutState::Rolling && r.written == r.waves.len() {
        "all waves written, ACKs in the table below"
    } else {
        rollout::state_name(r.state)
    };
    format!(
        "rollout of push {}: {} ({} of {} wave(s) written){}",
        r.push,
        state,
        r.written,
        r.waves.len(),
        if r.reason.is_empty() { String::new() } else { format!(": {}", r.reason) }
    )
}

/// Drives the rollout the commit began; the exit code says whether it finished.
async fn follow(
    client: &mut Client,
    ep: &Endpoints,
    push: u64,
    baseline: BTreeMap<String, (f64, Health)>,
) -> Result<ExitCode> {
    let mut show = show();
    let r = rollout::drive(client, ep, push, baseline, &mut show).await?;
    if r.push != push {
        println!("push {push}'s rollout was superseded by push {}", r.push);
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", rollout_line(&r));
    Ok(if r.state == RolloutState::Done { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Commits a prepared push (unless a dry run) and follows its rollout (unless told not to).
async fn land(
    client: &mut Client,
    ep: &Endpoints,
    p: Prepared,
    dry_run: bool,
    wait: bool,
) -> Result<ExitCode> {
    print_prepared(&p);
    if dry_run {
        println!("dry run: nothing written");
        return Ok(ExitCode::SUCCESS);
    }
    // The first wave's health before the push reaches it, asked of its gateways (their
    // statuses in the store may be old: agents write them only when something changes).
    let first = p.waves.first().cloned().unwrap_or_default();
    let base = if wait && !first.is_empty() {
        rollout::baseline(client, ep, &first, p.number()).await?
    } else {
        BTreeMap::new()
    };
    let committed = match push::commit(client, &p).await {
        Ok(c) => c,
        Err(PushError::Store(e)) => {
            // The transaction may or may not have landed before the answer was lost; it landed
            // whole if at all (one transaction).
            eprintln!(
                "hutong push: {e:#}\nthe store did not answer the commit of push {}: it landed whole or not at all; \
                 `hutong fleet status` shows which",
                p.number()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Ok(refused(e)),
    };
    println!("push {} written (etcd revision {})", committed.push, committed.revision);
    if committed.rollout.state == RolloutState::Done {
        println!("no gateway's config changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !wait {
        println!(
            "not waiting: `hutong rollout status` shows where it stands, `hutong rollout resume` drives it"
        );
        return Ok(ExitCode::SUCCESS);
    }
    follow(client, ep, committed.push, base).await
}

pub fn push(
    ep: &Endpoints,
    plan: &std::path::Path,
    options: PushOptions,
    dry_run: bool,
    wait: bool,
) -> Result<ExitCode> {
    // The local plan on its own first: its errors with file:line:column.
    let local = match control::check_file(plan) {
        Ok(lp) => lp,
        Err(d) => {
            eprintln!("{d}");
            return Ok(ExitCode::FAILURE);
        }
    };
    runtime()?.block_on(async {
        let mut client = store::connect(ep).await?;
        match push::prepare(&mut client, &local, options).await {
            Ok(p) => land(&mut client, ep, p, dry_run, wait).await,
            Err(e) => Ok(refused(e)),
        }
    })
}

pub fn rollback(
    ep: &Endpoints,
    to: Option<u64>,
    options: PushOptions,
    dry_run: bool,
    wait: bool,
) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut client = store::connect(ep).await?;
        match hutong_fleet::rollback::prepare(&mut client, to, options).await {
            Ok(p) => land(&mut client, ep, p, dry_run, wait).await,
            Err(e) => Ok(refused(e)),
        }
    })
}

/// Per wave written, how many of its gateways run the push: the rollout's progress.
fn wave_lines(r: &Rollout, rows: &[status::Row]) -> Vec<String> {
    r.waves
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i >= r.written {
                return format!("  wave {}: {} gateway(s) staged", i + 1, w.len());
            }
            let acked =
                w.iter().filter(|id| rows.iter().any(|x| &x.gateway == *id && x.applied >= r.push)).count();
            format!("  wave {}: {acked}/{} acknowledged", i + 1, w.len())
        })
        .collect()
}

/// Whether a rollout is over: finished, or every wave out and taken.
fn settled(r: Option<&Rollout>, rows: &[status::Row]) -> bool {
    r.is_none_or(|r| {
        r.finished()
            || r.state == RolloutState::Halted
            || (r.written == r.waves.len()
                && r.waves
                    .iter()
                    .flatten()
                    .all(|id| rows.iter().any(|x| &x.gateway == id && x.applied >= r.push)))
    })
}

pub fn fleet_status(ep: &Endpoints, json: bool, watch: bool) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut client = store::connect(ep).await?;
        // Watching: one read, then the store's changes (a whole read per screen would cost a
        // province's configs each second).
        let mut follow = if watch { Some(Follow::start(&mut client).await?) } else { None };
        loop {
            let snap = match &follow {
                Some(f) => f.snap.clone(),
                None => store::read(&mut client, None).await?,
            };
            let rows = status::rows(&snap);
            let rollout = snap.rollout.as_ref().and_then(|r| r.value.as_ref().ok());
            if json {
                let v = serde_json::json!({
                    "push": snap.push(),
                    "revision": snap.revision,
                    "rollout": rollout,
                    "gateways": rows,
                    "unknown_keys": snap.unknown,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                if watch {
                    // A fresh screen each time, as watch(1) does.
                    print!("\x1b[2J\x1b[H");
                }
                println!(
                    "plan push {} (etcd revision {}), {} gateway(s)",
                    snap.push(),
                    snap.revision,
                    rows.len()
                );
                if let Some(r) = rollout {
                    println!("{}", rollout_line(r));
                    if !r.finished() {
                        wave_lines(r, &rows).iter().for_each(|l| println!("{l}"));
                    }
                }
                print!("{}", status::table(&rows));
                for k in &snap.unknown {
                    println!("note: key {k} is not part of the fleet's layout (ignored)");
                }
            }
            let Some(f) = follow.as_mut() else { return Ok(ExitCode::SUCCESS) };
            if settled(rollout, &rows) {
                return Ok(ExitCode::SUCCESS);
            }
            // The next screen a second from now, with whatever changed by then.
            let next = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
            while let Some(left) = next.checked_duration_since(tokio::time::Instant::now()) {
                if let Err(e) = f.changes(left).await {
                    eprintln!("{e:#}; reading the fleet again");
                    client = store::connect(ep).await?;
                    *f = Follow::start(&mut client).await?;
                }
            }
        }
    })
}

pub fn fleet_plan(ep: &Endpoints) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut client = store::connect(ep).await?;
        print!("{}", hutong_fleet::rollback::current_plan(&mut client).await?);
        Ok(ExitCode::SUCCESS)
    })
}

pub enum RolloutAction {
    Status,
    Resume,
    Abort,
}

pub fn rollout(ep: &Endpoints, action: RolloutAction) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let mut client = store::connect(ep).await?;
        match action {
            RolloutAction::Status => {
                let snap = store::read(&mut client, None).await?;
                let Some(r) = snap.rollout.as_ref() else {
                    println!("no rollout yet");
                    return Ok(ExitCode::SUCCESS);
                };
                let r =
                    r.value.as_ref().map_err(|e| anyhow::anyhow!("the rollout record is unreadable: {e}"))?;
                println!("{}", rollout_line(r));
                let rows = status::rows(&snap);
                for (i, w) in r.waves.iter().enumerate() {
                    let mark = if i < r.written { "written" } else { "staged" };
                    println!("wave {} ({mark}):", i + 1);
                    for id in w {
                        let row = rows.iter().find(|x| &x.gateway == id);
                        println!(
                            "  {id:<20} {}",
                            row.map_or("no keys".to_string(), |x| format!(
                                "{} applied {} {}",
                                x.state, x.applied, x.drift
                            ))
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            RolloutAction::Resume => {
                let mut show = show();
                let r = rollout::resume(&mut client, ep, &mut show).await?;
                println!("{}", rollout_line(&r));
                Ok(if r.state == RolloutState::Done { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            RolloutAction::Abort => {
                let r = rollout::abort(&mut client).await?;
                println!("{}", rollout_line(&r));
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
