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
use dataplane::{
    Config, netlink,
    xdp::{XdpEngine, kernel_neighbors::NeighborSync, tables},
};

use crate::{api::ChangeOutcome, history::History, rule_hits::RuleHits};
use tokio::signal::unix::{SignalKind, signal};

mod change;
mod stats;

use change::{change, does_not_fit};
use stats::{snapshot, stats_text};

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
    /// The API's Unix socket; default beside the PID file.
    pub api_socket: Option<PathBuf>,
    /// Let the API listen beyond loopback (it has no authentication yet).
    pub api_anywhere: bool,
    /// Where applied configs are kept; default `/var/lib/hutong/<gateway id>`.
    pub state_dir: Option<PathBuf>,
    pub engine: EngineKind,
    /// Slow-path worker threads (the userspace engine's forwarding cores); see `slow_path`.
    pub workers: u32,
    pub io: IoChoice,
    /// A fleet gateway: the agent that takes its configs from etcd (see `crate::fleet`).
    pub fleet: Option<hutong_fleet::agent::AgentOptions>,
}

/// How the userspace engine reads and writes the interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoChoice {
    /// AF_XDP where the XDP program attaches, AF_PACKET where it cannot.
    #[default]
    Auto,
    AfXdp,
    /// Packet sockets on every interface, no XDP program attached (see
    /// `dataplane::port::af_packet`).
    AfPacket,
}

impl std::str::FromStr for IoChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(IoChoice::Auto),
            "af-xdp" => Ok(IoChoice::AfXdp),
            "af-packet" => Ok(IoChoice::AfPacket),
            other => Err(format!("unknown I/O {other:?}: auto, af-xdp or af-packet")),
        }
    }
}

/// Which engine forwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// The XDP program, with the userspace engine behind it for what it leaves (the default).
    #[default]
    Xdp,
    /// The userspace engine forwards everything, reading and writing the ports through AF_XDP
    /// sockets; the program only hands frames over (and ARP and the gateway's own addresses to
    /// the host).
    Userspace,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Xdp => "xdp",
            EngineKind::Userspace => "userspace",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "xdp" => Ok(EngineKind::Xdp),
            "userspace" => Ok(EngineKind::Userspace),
            other => Err(format!("unknown engine {other:?}: xdp or userspace")),
        }
    }
}

/// The tables for `config` as `engine` runs them.
fn tables_for(
    config: &Config,
    handles: &BTreeMap<String, tables::PortHandle>,
    engine: EngineKind,
) -> std::result::Result<tables::MapContents, tables::MapContentsError> {
    let mut t = tables::build(config, |name| handles.get(name).copied())?;
    if engine == EngineKind::Userspace {
        t.all_to_userspace("--engine userspace");
    }
    Ok(t)
}

/// The default pin directory of a gateway.
pub fn default_pin_dir(gateway: &str) -> PathBuf {
    Path::new("/sys/fs/bpf/hutong").join(gateway)
}

/// How long a start waits for its configured next hops to resolve before it reports ready.
const NEXT_HOPS_SETTLE: Duration = Duration::from_secs(3);

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
    // Descriptors: AF_XDP sockets, maps, links, API connections (bounded in `api::listen`).
    if let Err(e) = crate::api::listen::raise_descriptor_limit() {
        eprintln!("hutong gateway: could not raise the open-file limit: {e}");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let pin_dir = opts.pin_dir.unwrap_or_else(|| default_pin_dir(&config.gateway));
    let pid_file = opts.pid_file.unwrap_or_else(|| crate::pidfile::default_path(&config.gateway));
    let state_dir = opts.state_dir.unwrap_or_else(|| crate::history::default_dir(&config.gateway));
    let api_socket = opts.api_socket.unwrap_or_else(|| crate::api::listen::socket_beside(&pid_file));
    let places = Places { stats_file: opts.stats_file, pin_dir, pid_file, state_dir, api_socket };
    if opts.engine == EngineKind::Xdp && opts.workers > 1 {
        bail!(
            "--workers is for --engine userspace: the XDP program forwards on every core, its slow path runs one worker"
        );
    }
    if opts.engine == EngineKind::Xdp && opts.io == IoChoice::AfPacket {
        bail!("--io af-packet is for --engine userspace: the XDP engine is the program on the interfaces");
    }
    // Refused before anything is touched.
    if let Some(why) = crate::api::guard::listen_problem(opts.api, opts.api_anywhere) {
        bail!(why);
    }
    if let Some(why) = does_not_fit(&config, opts.workers, 0) {
        bail!("the config does not fit in this machine: {why}");
    }
    let api = (opts.api, opts.api_anywhere);
    rt.block_on(serve(config, places, api, (opts.engine, opts.workers, opts.io), opts.fleet))
}

/// Where the gateway keeps things.
struct Places {
    stats_file: Option<PathBuf>,
    pin_dir: PathBuf,
    pid_file: PathBuf,
    state_dir: PathBuf,
    api_socket: PathBuf,
}

async fn serve(
    config: Config,
    places: Places,
    (api_addr, api_anywhere): (std::net::SocketAddr, bool),
    (kind, workers, io): (EngineKind, u32, IoChoice),
    fleet: Option<hutong_fleet::agent::AgentOptions>,
) -> Result<()> {
    let Places { stats_file, pin_dir, pid_file, state_dir, api_socket } = places;
    let nl = netlink::connect()?;
    let mut links = Vec::new();
    for p in config.ports.iter().filter(|p| p.tunnel.is_none()) {
        links.push((p.clone(), netlink::link(&nl, &p.name).await?));
    }
    // Every interface exists; claim the gateway before changing any of them. Held to the end.
    let _pid = crate::pidfile::PidFile::claim(&pid_file)?;
    // The pin and state directories are this process's alone, and the pins this gateway's in
    // this namespace (see `crate::pins`): checked before anything is read or written there.
    let pins = crate::pins::claim(&pin_dir, &config.gateway)?;
    let mut history = History::open(&state_dir)?;
    let _state_lock = crate::pins::lock_dir(&state_dir, "the state directory")?;
    // A restart keeps what was applied through the API, unless the file changed (see
    // `History::resume`). Recorded once the start has succeeded: a failed start leaves the
    // history as it was.
    let (config, version, resumed) = history.resume(config)?;
    if let Some(why) = &resumed {
        eprintln!("hutong gateway {}: {why}", config.gateway);
    }
    let (session_queries, session_answers) = std::sync::mpsc::channel();
    let (api, mut changes) = crate::api::ApiState::new(&config, version, session_queries, kind.name());
    // Bound before any interface changes, so a taken port stops the start cleanly.
    let api_server =
        tokio::spawn(crate::api::bind(api_addr, Some(api_socket.clone()), api_anywhere, api.clone()).await?);
    // Removed when the gateway stops, however it stops short of SIGKILL (a stale one is replaced
    // at the next start: the PID file's lock says nobody else owns it).
    let _socket_file = RemovedOnDrop(api_socket.clone());
    let mut handles = BTreeMap::new();
    // What this gateway puts on its ports, and a full stop takes off (see `crate::addresses`).
    let mut ours = crate::addresses::Added::load(&state_dir);
    let mut newly = Vec::new();
    for (p, h) in links {
        netlink::set_up(&nl, h.ifindex).await?;
        handles.insert(p.name.clone(), h);
        // An untagged port's addresses go on its interface, where the kernel answers ARP/NDP
        // for them. A VLAN port's cannot (the kernel has no VLAN device for it): the slow path
        // answers for those.
        if p.vlan.is_some() {
            continue;
        }
        for a in &p.addresses {
            let added = netlink::add_address(&nl, h.ifindex, *a)
                .await
                .with_context(|| format!("adding {a} to {}", p.name))?;
            if added {
                ours.insert(&p.name, *a);
                newly.push((h.ifindex, *a));
            }
        }
    }
    // Addresses an earlier start added for a config that no longer has them: taken off.
    let wanted: BTreeSet<(String, ipnet::IpNet)> = config
        .ports
        .iter()
        .filter(|p| p.tunnel.is_none() && p.vlan.is_none())
        .flat_map(|p| p.addresses.iter().map(|a| (p.name.clone(), *a)))
        .collect();
    for (port, a) in ours.retain(|p, a| wanted.contains(&(p.to_string(), a))) {
        if let Ok(h) = netlink::link(&nl, &port).await {
            let _ = netlink::del_address(&nl, h.ifindex, a).await;
        }
    }
    if let Err(e) = ours.save() {
        // Unrecorded, they would pass for an engineer's at the next start and stay forever.
        for (ifindex, a) in newly {
            let _ = netlink::del_address(&nl, ifindex, a).await;
        }
        return Err(e.context("recording the ports' addresses in the state directory"));
    }
    let t = tables_for(&config, &handles, kind)?;
    // The interfaces, in slot order: what the program attaches to, sends through and counts by.
    let name_of = |ifindex: u32| -> String {
        handles.iter().find(|(_, h)| h.ifindex == ifindex).map_or("?".into(), |(n, _)| n.clone())
    };
    let ifaces: Vec<(String, tables::PortHandle)> =
        t.interfaces().map(|(ifindex, _)| (name_of(*ifindex), handles[&name_of(*ifindex)])).collect();
    let slot_names: Vec<String> = ifaces.iter().map(|(n, _)| n.clone()).collect();
    if let Some(why) = &t.slow.all {
        eprintln!("hutong gateway {}: all traffic takes the slow path ({why})", config.gateway);
    }
    for (vrf, why) in &t.slow.vrfs {
        eprintln!("hutong gateway {}: VRF {vrf} takes the slow path ({why})", config.gateway);
    }
    for vrf in &t.slow.napt_inside {
        eprintln!(
            "hutong gateway {}: VRF {vrf} is a NAPT pool's inside: its packets take the slow path, where sessions decide, but for netmapped sources no session can have",
            config.gateway
        );
    }
    let outsides: BTreeSet<u32> = config
        .nat_pools
        .iter()
        .map(|p| p.outside_vrf)
        .chain(config.services.iter().map(|s| s.outside_vrf))
        .filter(|v| !t.slow.vrfs.contains_key(v))
        .collect();
    for vrf in outsides {
        eprintln!(
            "hutong gateway {}: VRF {vrf}: packets to NAT addresses, and new sessions, take the slow path",
            config.gateway
        );
    }

    let (engine, adopted) = XdpEngine::load_pinned(&pin_dir)?;
    let mut engine = Starting { engine: Some(engine), adopted };
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
    // The kernel resolves the interfaces' next hops; VLAN ports' are the slow path's.
    let ports: BTreeSet<u32> =
        t.ports.iter().map(|(i, _)| *i).filter(|i| hutong_common::vlan_port_of(*i).is_none()).collect();
    let (kernel_hops, vlan_nexthops): (Vec<_>, Vec<_>) =
        t.next_hops().into_iter().partition(|(k, _)| hutong_common::vlan_port_of(*k).is_none());
    let mut sync = NeighborSync::new(nl.clone(), engine.take_neighbor_maps()?, ports, kernel_hops);
    let (vlan_misses_tx, vlan_misses) = std::sync::mpsc::channel();
    sync.forward_foreign(vlan_misses_tx.clone());
    let mut slow_ports = Vec::new();
    // The kernel kept from forwarding on interfaces read through packet sockets, until the
    // gateway stops (or fails to start).
    let mut packet_ports = Vec::new();
    for (name, handle) in &ifaces {
        let port_io = match io {
            IoChoice::AfPacket => crate::slow_path::Io::AfPacket,
            _ => match engine.attach(handle.ifindex, name) {
                Ok(took_over) => {
                    if took_over {
                        eprintln!(
                            "hutong gateway {}: took over the running program on {name}",
                            config.gateway
                        );
                    }
                    crate::slow_path::Io::AfXdp
                }
                Err(e) if kind == EngineKind::Userspace && io == IoChoice::Auto => {
                    eprintln!(
                        "hutong gateway {}: XDP cannot attach to {name} ({e:#}): its frames go through a packet socket (AF_PACKET) instead",
                        config.gateway
                    );
                    crate::slow_path::Io::AfPacket
                }
                Err(e) => return Err(e),
            },
        };
        if port_io == crate::slow_path::Io::AfPacket {
            packet_ports.push(dataplane::port::af_packet::KernelForwardingOff::on(name)?);
            // Frames as they were on the wire, not aggregated: the engine forwards frames.
            if let Err(e) = dataplane::ethtool::set_gro(name, false) {
                eprintln!("hutong gateway {}: could not turn GRO off on {name}: {e}", config.gateway);
            }
            eprintln!(
                "hutong gateway {}: {name} is read through a packet socket (AF_PACKET)",
                config.gateway
            );
        }
        let queues = dataplane::ethtool::rx_queues(name);
        slow_ports.push(crate::slow_path::Port { name: name.clone(), handle: *handle, queues, io: port_io });
    }
    let on = crate::slow_path::Interfaces {
        ports: slow_ports,
        vlan_nexthops,
        vlan_misses,
        vlan_asks: vlan_misses_tx.clone(),
        workers,
    };
    let mut slow = crate::slow_path::SlowPath::start(
        &config,
        on,
        &mut engine,
        crate::slow_path::Handover { epoch, kept, offload: kind == EngineKind::Xdp },
        &pin_dir,
        sync.requester(),
        session_answers,
    )?;
    history.record(&config).context("recording the config in the state directory")?;
    if resumed.is_none() {
        history.set_seed(version).context("recording the config in the state directory")?;
    }
    let mut engine = engine.started();
    // Ready means able to forward: the configured next hops resolved (or said to be missing).
    for (ifindex, addr) in sync.settle(NEXT_HOPS_SETTLE).await {
        eprintln!(
            "hutong gateway {}: next hop {addr} (ifindex {ifindex}) does not answer yet; traffic through it flows once it does",
            config.gateway
        );
    }
    let mut resolver = tokio::spawn(sync.run());
    eprintln!(
        "hutong gateway {}: forwarding on {} ({} engine, {workers} slow-path worker(s)), {} netmap(s), {} static route(s); agent API on http://{api_addr} and unix:{}",
        config.gateway,
        slot_names.join(", "),
        kind.name(),
        config.netmaps.len(),
        config.routes.len(),
        api_socket.display()
    );

    // The fleet agent, once the gateway forwards: it applies through the same change path.
    let agent = fleet.map(|opts| {
        let gateway = std::sync::Arc::new(crate::fleet::ApiGateway(api.clone()));
        eprintln!("hutong gateway {}: fleet agent on {}", config.gateway, opts.endpoints.urls.join(","));
        tokio::spawn(hutong_fleet::agent::run(opts, gateway, version))
    });
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut upgrade = signal(SignalKind::user_defined1())?;
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    let mut keep_forwarding = false;
    let mut stats_failing = false;
    let mut running = config.clone();
    let names = |c: &Config| c.policies.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let mut rule_hits = RuleHits::new(names(&running), &engine.rule_hits(running.policies.len())?);
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
            Some(request) = changes.recv() => {
                let before = running.policies.len();
                let outcome = change(request.change, &mut running, &mut history, (&handles, kind, workers), &mut engine, &slow);
                if matches!(outcome, ChangeOutcome::Applied { changed: true, .. }) {
                    let now = engine.rule_hits(before.max(running.policies.len()))?;
                    rule_hits.switch(names(&running), &now);
                }
                if let ChangeOutcome::Applied { running: r, .. } = &outcome {
                    eprintln!("hutong gateway {}: running config version {}", config.gateway, r.config_version);
                    api.set_running(r.clone());
                }
                let _ = request.reply.send(outcome);
            }
            _ = tick.tick() => {
                let snapshot = snapshot(&running, &rule_hits, &slot_names, &engine, &slow)?;
                if let Some(path) = &stats_file {
                    // A full disk or no descriptor left must not stop forwarding: say so once
                    // per stretch of failures, and keep trying.
                    match write_atomically(path, &stats_text(&snapshot)) {
                        Ok(()) if stats_failing => {
                            eprintln!("hutong gateway {}: the counters file is written again", config.gateway);
                            stats_failing = false;
                        }
                        Err(e) if !stats_failing => {
                            eprintln!("hutong gateway {}: {e:#} (forwarding goes on; retrying)", config.gateway);
                            stats_failing = true;
                        }
                        _ => {}
                    }
                }
                api.set_counters(snapshot);
            }
        }
    }
    resolver.abort();
    if let Some(a) = &agent {
        a.abort();
    }
    api_server.abort();
    slow.stop();
    drop(packet_ports);
    let counters = engine.counters()?;
    if let Some(path) = &stats_file {
        let snapshot = snapshot(&running, &rule_hits, &slot_names, &engine, &slow)?;
        if let Err(e) = write_atomically(path, &stats_text(&snapshot)) {
            eprintln!("hutong gateway {}: the last counters: {e:#}", config.gateway);
        }
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
        // The pins are gone: the claim takes its marker and the directory with it.
        drop(pins);
        // The addresses this gateway added, and only those: what was there before stays.
        for (port, a) in ours.entries() {
            if let Some(h) = handles.get(port)
                && let Err(e) = netlink::del_address(&nl, h.ifindex, *a).await
            {
                eprintln!("hutong gateway {}: could not take {a} off {port}: {e:#}", config.gateway);
            }
        }
        ours.retain(|_, _| false);
        if let Err(e) = ours.save() {
            eprintln!("hutong gateway {}: {e:#}", config.gateway);
        }
    }
    Ok(())
}

/// The engine while the gateway starts. A start that fails undoes what it did, a full stop
/// (the program detached, the pins removed), unless it adopted a running program's pins: that
/// one keeps forwarding, as before the failed start. Without this a refused start (say, more
/// workers than queues) left its program attached and its pins behind.
struct Starting {
    engine: Option<XdpEngine>,
    adopted: bool,
}

impl Starting {
    /// Started: from here a stop is the signal handler's business.
    fn started(mut self) -> XdpEngine {
        self.engine.take().expect("an engine until started")
    }
}

impl std::ops::Deref for Starting {
    type Target = XdpEngine;
    fn deref(&self) -> &XdpEngine {
        self.engine.as_ref().expect("an engine until started")
    }
}

impl std::ops::DerefMut for Starting {
    fn deref_mut(&mut self) -> &mut XdpEngine {
        self.engine.as_mut().expect("an engine until started")
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take()
            && !self.adopted
        {
            let _ = engine.shutdown();
        }
    }
}

/// A file removed when this is dropped.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    crate::files::write_replacing(path, text, crate::files::PRIVATE)
}
