//! `hutong gateway run`: bring the configured ports up with their addresses, load the XDP program,
//! fill its maps, attach it, keep next hops resolved, and publish counters until told to stop.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use dataplane::{Config, neighbor::NeighborSync, netlink, tables, xdp::XdpEngine};
use tokio::signal::unix::{SignalKind, signal};

pub struct RunOptions {
    pub config: PathBuf,
    /// Where to publish counters (`name value` lines), refreshed while running.
    pub stats_file: Option<PathBuf>,
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
    let config = load_config(&opts.config)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(serve(config, opts.stats_file))
}

async fn serve(config: Config, stats_file: Option<PathBuf>) -> Result<()> {
    let nl = netlink::connect()?;
    let mut handles = BTreeMap::new();
    for p in &config.ports {
        let h = netlink::link(&nl, &p.name).await?;
        netlink::set_up(&nl, h.ifindex).await?;
        for a in &p.addresses {
            netlink::add_address(&nl, h.ifindex, *a)
                .await
                .with_context(|| format!("adding {a} to {}", p.name))?;
        }
        handles.insert(p.name.clone(), h);
    }
    let t = tables::build(&config, |name| handles.get(name).copied())?;

    let mut engine = XdpEngine::load()?;
    // Tables first, then attach: the program never sees a port without its tables.
    engine.install(&t)?;
    let ports: BTreeSet<u32> = t.ports.iter().map(|(i, _)| *i).collect();
    let sync = NeighborSync::new(nl.clone(), engine.take_neighbor_maps()?, ports, t.nexthops.clone());
    for (name, h) in &handles {
        engine.attach(h.ifindex).with_context(|| format!("attaching to {name}"))?;
    }
    let mut resolver = tokio::spawn(sync.run());
    eprintln!(
        "hutong gateway {}: forwarding on {} (XDP), {} netmap(s), {} static route(s)",
        config.gateway,
        handles.keys().cloned().collect::<Vec<_>>().join(", "),
        config.netmaps.len(),
        config.routes.len()
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            ended = &mut resolver => {
                // It loops forever; ending means a netlink or ring-buffer failure.
                bail!("the neighbor resolver stopped: {ended:?}");
            }
            _ = tick.tick() => {
                if let Some(path) = &stats_file {
                    write_atomically(path, &engine.counters()?.to_text())?;
                }
            }
        }
    }
    let counters = engine.counters()?;
    if let Some(path) = &stats_file {
        write_atomically(path, &counters.to_text())?;
    }
    eprintln!("hutong gateway {}: stopping; counters:\n{}", config.gateway, counters.to_text());
    resolver.abort();
    // Dropping the engine detaches the program from every port.
    drop(engine);
    Ok(())
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
