//! Applies and rollbacks while the gateway runs: staged, costed, installed into both engines
//! atomically, and recorded in the history only once they run.

use std::collections::BTreeMap;

use anyhow::Result;
use dataplane::{
    Config, ConfigError,
    xdp::{XdpEngine, tables},
};

use super::{EngineKind, tables_for};
use crate::{
    api::{Change, ChangeOutcome, Running},
    history::History,
};

/// Applies a config, or rolls back to the version before the current one, atomically: the
/// slow-path engine gets the config first, tagged with the next epoch, then the program's tables
/// flip to that epoch (see `SlowPath::swap`). Refused without any change: another gateway's
/// config, changed ports (their interfaces and addresses are set up at start), an invalid config.
pub(super) fn change(
    change: Change,
    running: &mut Config,
    history: &mut History,
    (handles, kind, workers): (&BTreeMap<String, tables::PortHandle>, EngineKind, u32),
    engine: &mut XdpEngine,
    slow: &crate::slow_path::SlowPath,
) -> ChangeOutcome {
    let invalid = |path: &str, message: String| {
        ChangeOutcome::Invalid(vec![ConfigError { path: path.into(), message }])
    };
    let (target, rollback_to) = match change {
        Change::Apply(c) => (*c, None),
        Change::Rollback => match history.previous() {
            Ok(Some((v, c))) => (c, Some(v)),
            Ok(None) => return ChangeOutcome::Conflict("no earlier config version to roll back to".into()),
            Err(e) => return ChangeOutcome::Failed(format!("reading the config history: {e:#}")),
        },
    };
    if target.gateway != running.gateway {
        return invalid("gateway", format!("this is gateway {}, not {}", running.gateway, target.gateway));
    }
    if target.ports != running.ports {
        return invalid(
            "ports",
            "ports cannot change while the gateway runs (their interfaces and addresses are set up at start): \
             restart it with the new config"
                .into(),
        );
    }
    if let Err(e) = tables_for(&target, handles, kind) {
        return invalid("ports", e.to_string());
    }
    // The running config's NAT state is already taken from what is available, and goes once
    // the new one runs (if the pools are the same, it is kept, not built again).
    if target.nat_pools != running.nat_pools || target.services != running.services {
        let freed = dataplane::nat::cost::memory(running, workers);
        if let Some(why) = does_not_fit(&target, workers, freed) {
            return invalid("nat_pools", why);
        }
    }
    // Written to the state directory before anything changes, made current once applied: a
    // state directory that cannot be written refuses the change, and what runs, what status
    // reports and what a rollback starts from stay one config.
    let version = match rollback_to {
        Some(v) => v,
        None => match history.stage(&target) {
            Ok(v) => v,
            Err(e) => return ChangeOutcome::Unrecorded(unrecorded(&e)),
        },
    };
    let discard = |history: &mut History| {
        if rollback_to.is_none() {
            history.discard(version);
        }
    };
    if target == *running {
        return match history.commit(version) {
            Ok(()) => ChangeOutcome::Applied { running: Running::new(&target, version), changed: false },
            Err(e) => ChangeOutcome::Unrecorded(unrecorded(&e)),
        };
    }
    if let Err(e) = install(&target, running, (handles, kind), engine, slow) {
        discard(history);
        return ChangeOutcome::Failed(format!("applying: {e:#}"));
    }
    if let Err(e) = history.commit(version) {
        discard(history);
        // Back to what ran, which installed before: then nothing changed, as the answer says.
        if let Err(back) = install(running, &target, (handles, kind), engine, slow) {
            // What runs is the new config: say so, so the next change starts from the truth.
            *running = target;
            return ChangeOutcome::Failed(format!(
                "applied, but recording it failed ({e:#}), and going back failed too ({back:#}): \
                 the new config runs, unrecorded"
            ));
        }
        return ChangeOutcome::Unrecorded(unrecorded(&e));
    }
    *running = target;
    ChangeOutcome::Applied { running: Running::new(running, version), changed: true }
}

/// The answer when the state directory cannot take a change.
pub(super) fn unrecorded(e: &anyhow::Error) -> String {
    format!("the state directory cannot record the change ({e:#}): nothing changed, the running config stays")
}

/// Makes `target` run in place of `running`: the slow-path engine gets it first, tagged with the
/// next epoch, then the program's tables flip to that epoch; if the tables fail, the slow path
/// goes back to `running`.
pub(super) fn install(
    target: &Config,
    running: &Config,
    (handles, kind): (&BTreeMap<String, tables::PortHandle>, EngineKind),
    engine: &mut XdpEngine,
    slow: &crate::slow_path::SlowPath,
) -> Result<()> {
    let t = tables_for(target, handles, kind)?;
    let next = engine.epoch()?.wrapping_add(1);
    if let Err(errors) = slow.swap(target.clone(), next) {
        anyhow::bail!("{errors:?}");
    }
    let digest = dataplane::xdp::fnv1a(format!("{}\n{t:?}", target.to_json()).as_bytes());
    if let Err(e) = engine.install_or_keep(&t, digest) {
        // The program still runs the old tables: so must the slow path.
        let _ = slow.swap(running.clone(), next.wrapping_sub(1));
        return Err(e);
    }
    Ok(())
}

/// Why `config` on `workers` slow-path workers does not fit in the memory available now, if it
/// does not (`dataplane::nat::cost`). Unknown memory is not a reason to refuse.
/// `freed`: bytes the running config holds and gives back once `config` runs, counted as
/// available too.
pub(super) fn does_not_fit(config: &Config, workers: u32, freed: u64) -> Option<String> {
    let available = dataplane::nat::cost::available()?.saturating_add(freed);
    dataplane::nat::cost::does_not_fit(config, workers, available)
}
