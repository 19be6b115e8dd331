//! `hutong rollback --fleet`: the plan of the push before the latest, pushed again (as a new
//! push, in waves if asked). It reads that plan from the store's history at the revision of
//! that push, so it needs the store not to have compacted it away.

use std::path::Path;

use anyhow::{Context, Result, bail};
use etcd_client::Client;

use crate::{
    fragments,
    push::{Prepared, PushError, PushOptions, prepare_on},
    store::{push_record, read},
};

/// Prepares the push that restores push `latest - 1`'s plan (or `to`, if given).
pub async fn prepare(
    client: &mut Client,
    to: Option<u64>,
    mut options: PushOptions,
) -> Result<Prepared, PushError> {
    let now = read(client, None).await?;
    let latest = now.push();
    let target = match to {
        Some(t) => t,
        None if latest >= 2 => latest - 1,
        None => return Err(PushError::Refused("there is no earlier push to roll back to".into())),
    };
    if target == 0 || target >= latest {
        return Err(PushError::Refused(format!(
            "push {target} is not an earlier push (the latest is {latest})"
        )));
    }
    let Some((_, revision)) = push_record(client, target).await? else {
        return Err(PushError::Refused(format!("no record of push {target} in the store")));
    };
    let then = read(client, Some(revision)).await.map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("compacted") {
            PushError::Refused(format!(
                "the store has compacted away revision {revision} (push {target}'s plan): it cannot be rolled back to"
            ))
        } else {
            PushError::Store(e)
        }
    })?;
    let text = fragments::assemble(then.meta.as_deref(), &then.fragment_list())
        .map_err(|e| PushError::Refused(format!("push {target}'s plan: {e}")))?;
    let label = format!("push {target}'s plan (revision {revision})");
    let lp = control::load_str(&text, Path::new(&label)).map_err(|d| PushError::Invalid(d.to_string()))?;
    options.scope = None;
    options.what = format!("rollback to push {target}");
    let mut prepared = prepare_on(now, &lp, options)?;
    // What it undoes, whoever pushed it: the whole plan goes back, other operators' pushes too.
    for n in target + 1..=latest {
        let line = match push_record(client, n).await? {
            Some((r, _)) => format!(
                "undoes push {n} ({}, by {}, {})",
                if r.what.is_empty() { "push" } else { &r.what },
                r.by,
                if r.scope.is_empty() { "the whole plan".to_string() } else { format!("scope {}", r.scope) }
            ),
            None => format!("undoes push {n} (no record)"),
        };
        prepared.notes.push(line);
    }
    Ok(prepared)
}

/// The plan as the store holds it now, as YAML text (`hutong fleet plan`).
pub async fn current_plan(client: &mut Client) -> Result<String> {
    let snap = read(client, None).await?;
    if snap.meta.is_none() {
        bail!("the store holds no plan yet");
    }
    fragments::assemble(snap.meta.as_deref(), &snap.fragment_list()).context("reading the store's plan")
}
