//! `hutong gateway run`: bring the configured ports up with their addresses, load the XDP program,
//! fill its maps, attach it, keep next hops resolved, and publish counters until told to stop.
//!
//! Stopping: SIGTERM or SIGINT detach the program and remove its pins (a full stop). SIGUSR1 is
//! "stop for an upgrade, keep forwarding": the process exits, the program stays attached over
//! its pinned maps, and the next `hutong gateway run` with the same pin directory takes over
//! without a gap.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use dataplane::{Config, neighbor::NeighborSync, netlink, tables, xdp::XdpEngine};

use crate::api::Snapshot;
use tokio::signal::unix::{SignalKind, signal};

pub struct RunOptions {
    /// From a config file ([`load_config`]) or compiled from a plan.
    pub config: Config,
    /// Where to publish counters (`name value` lines), refreshed while running.
    pub stats_file: Option<PathBuf>,
    /// Where maps and links are pinned; default `/sys/fs/bpf/hutong/<gateway id>`.
    pub pin_dir: Option<PathBuf>,
    /// The PID file, locked while running; default `/run/hutong/<gateway id>.pid`.
    pub pid_file: Option<PathBuf>,
    /// Where the agent API listens.
    pub api: std::net::SocketAddr,
}

/// The default pin directory of a gateway.
pub fn default_pin_dir(gateway: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/hutong").join(gateway)
}

/// How often the counters file is refreshed.
const STATS_INTERVAL: Duration = Duration::from_millis(200);

pub fn load_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::from_json(&text).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {}: {e}", path.display())).collect();
        anyhow::anyhow!("invalid gateway config:\n{}", lines.join("\n"))
    })
}

pub fn run(opts: RunOptions) -> Result<()> {
    let config = opts.config;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let pin_dir = opts.pin_dir.unwrap_or_else(|| default_pin_dir(&config.gateway));
    let pid_file = opts.pid_file.unwrap_or_else(|| crate::pidfile::default_path(&config.gateway));
    rt.block_on(serve(config, opts.stats_file, pin_dir, pid_file, opts.api))
}

async fn serve(
    config: Config,
    stats_file: Option<PathBuf>,
    pin_dir: PathBuf,
    pid_file: PathBuf,
    api_addr: std::net::SocketAddr,
) -> Result<()> {
    let nl = netlink::connect()?;
    let mut links = Vec::new();
    for p in &config.ports {
        links.push((p, netlink::link(&nl, &p.name).await?));
    }
    // Every interface exists; claim the gateway before changing any of them. Held to the end.
    let _pid = crate::pidfile::PidFile::claim(&pid_file)?;
    let api = crate::api::ApiState::new(&config);
    // Bound before any interface changes, so a taken port stops the start cleanly.
    let api_server = tokio::spawn(crate::api::bind(api_addr, api.clone()).await?);
    let mut handles = BTreeMap::new();
    for (p, h) in links {
        netlink::set_up(&nl, h.ifindex).await?;
        for a in &p.addresses {
            netlink::add_address(&nl, h.ifindex, *a)
                .await
                .with_context(|| format!("adding {a} to {}", p.name))?;
        }
        handles.insert(p.name.clone(), h);
    }
    let t = tables::build(&config, |name| handles.get(name).copied())?;
    if let Some(why) = &t.slow.all {
        eprintln!("hutong gateway {}: all traffic takes the slow path ({why})", config.gateway);
    }
    for (vrf, why) in &t.slow.vrfs {
        eprintln!("hutong gateway {}: VRF {vrf} takes the slow path ({why})", config.gateway);
    }
    for (iface, why) in &t.slow.ifaces {
        eprintln!("hutong gateway {}: {iface} takes the slow path ({why})", config.gateway);
    }

    let (mut engine, adopted) = XdpEngine::load_pinned(&pin_dir)?;
    if adopted {
        eprintln!("hutong gateway {}: adopting the pinned maps in {}", config.gateway, pin_dir.display());
    }
    // Tables first, then attach: the program never sees a port without its tables. The same
    // config over the same interfaces (a restart for an upgrade) keeps the running tables, and
    // with them the established sessions' flows.
    let digest = dataplane::xdp::fnv1a(format!("{}\n{t:?}", config.to_json()).as_bytes());
    let (epoch, kept) = engine.install_or_keep(&t, digest)?;
    if adopted && !kept {
        eprintln!(
            "hutong gateway {}: the config or interfaces changed: new tables; established NAT sessions start over",
            config.gateway
        );
    }
    let ports: BTreeSet<u32> = t.ports.iter().map(|(i, _)| *i).collect();
    let sync = NeighborSync::new(nl.clone(), engine.take_neighbor_maps()?, ports, t.nexthops.clone());
    for (name, h) in &handles {
        if engine.attach(h.ifindex, name)? {
            eprintln!("hutong gateway {}: took over the running program on {name}", config.gateway);
        }
    }
    let ordered: Vec<(String, tables::PortHandle)> =
        config.ports.iter().filter_map(|p| handles.get(&p.name).map(|h| (p.name.clone(), *h))).collect();
    let mut slow = crate::slow_path::SlowPath::start(
        &config,
        &ordered,
        &mut engine,
        (epoch, kept),
        &pin_dir,
        sync.requester(),
    )?;
    let mut resolver = tokio::spawn(sync.run());
    eprintln!(
        "hutong gateway {}: forwarding on {} (XDP), {} netmap(s), {} static route(s); agent API on http://{api_addr}",
        config.gateway,
        handles.keys().cloned().collect::<Vec<_>>().join(", "),
        config.netmaps.len(),
        config.routes.len()
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut upgrade = signal(SignalKind::user_defined1())?;
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    let mut keep_forwarding = false;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = upgrade.recv() => {
                keep_forwarding = true;
                break;
            }
            ended = &mut resolver => {
                // It loops forever; ending means a netlink or ring-buffer failure.
                bail!("the neighbor resolver stopped: {ended:?}");
            }
            _ = tick.tick() => {
                let snapshot = snapshot(&config, &engine, &slow)?;
                if let Some(path) = &stats_file {
                    write_atomically(path, &stats_text(&snapshot))?;
                }
                api.set_counters(snapshot);
            }
        }
    }
    resolver.abort();
    api_server.abort();
    slow.stop();
    let counters = engine.counters()?;
    if let Some(path) = &stats_file {
        let snapshot = snapshot(&config, &engine, &slow)?;
        write_atomically(path, &stats_text(&snapshot))?;
    }
    if keep_forwarding {
        eprintln!(
            "hutong gateway {}: stopping for an upgrade; the program keeps forwarding from {}",
            config.gateway,
            pin_dir.display()
        );
        engine.keep_forwarding();
    } else {
        eprintln!("hutong gateway {}: stopping; counters:\n{}", config.gateway, counters.to_text());
        engine.shutdown()?;
    }
    Ok(())
}

/// The gateway's counters now: the program's, the slow path's, the flows, and per-rule hits of
/// both engines together (each packet is counted by the engine that decided it).
fn snapshot(config: &Config, engine: &XdpEngine, slow: &crate::slow_path::SlowPath) -> Result<Snapshot> {
    let program = engine.rule_hits(config.policies.len())?;
    let engine_hits = slow.rule_hits();
    let rules = config
        .policies
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let n = program.get(i).copied().unwrap_or(0) + engine_hits.get(&r.name).copied().unwrap_or(0);
            (r.name.clone(), n)
        })
        .collect();
    Ok(Snapshot { xdp: engine.counters()?, slow: slow.counters(), flows: slow.flow_stats(), rules })
}

/// The counters file: the program's counters as `name value` lines, then the slow-path engine's
/// as `slow.name value` (what it dropped and why, the ICMP errors it sent), the flows it handed
/// to the program as `flows.active|installed|removed|full value`, and each policy rule's hits as
/// `rule.<name> value`. Readers of the program's counters (`Counters::from_text`) skip the
/// prefixed lines.
fn stats_text(s: &Snapshot) -> String {
    let mut text = s.xdp.to_text();
    for line in s.slow.to_text().lines() {
        text.push_str("slow.");
        text.push_str(line);
        text.push('\n');
    }
    let f = &s.flows;
    for (name, v) in
        [("active", f.active), ("installed", f.installed), ("removed", f.removed), ("full", f.full)]
    {
        text.push_str(&format!("flows.{name} {v}\n"));
    }
    for (name, v) in &s.rules {
        text.push_str(&format!("rule.{name} {v}\n"));
    }
    text
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
