//! The command line: every subcommand and option of `hutong`, as clap parses them (the
//! binary's own module; what each command does is in `main.rs` and the library).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hutong",
    version,
    about = "互通 hutong: a gateway between legacy networks and the e-government extranet",
    after_help = "Commands at a glance:
  hutong plan check PATH                   validate a plan (errors with file:line:column)
  hutong plan compile PATH --gateway ID    print a gateway's compiled config (JSON)
  hutong plan conformance PATH [--propose] what does not conform to the plan, and a fix
  hutong plan diff OLD NEW                 per gateway, what an apply would change
  hutong plan generate --scale national    a synthetic plan (province example, benchmark)
  hutong gateway run --config FILE         attach the XDP engine and forward
  hutong gateway run --plan PATH --gateway ID   the same, compiling the plan first
  hutong gateway run ... --engine userspace --workers N   the userspace engine on N cores
  hutong gateway run ... --engine userspace --io af-packet   through packet sockets, no XDP
  hutong status [--api ADDR|SOCKET] [--json]   what a running gateway says about itself
  hutong apply PLAN --gateway ID           show what changes, apply it to the running gateway
  hutong rollback                          the running gateway's previous config version
  hutong sessions [--addr A] [--vrf V]     the running gateway's NAT sessions
  hutong trace --config FILE --packet HEX  show each pipeline stage's decision for one packet
  hutong trace --packet HEX                the same, by the running gateway (--api)
  hutong gateway run --fleet URLS --gateway ID   a fleet gateway: its config from etcd, ACK/NACK
  hutong push PLAN [--scope CODE] [--wave W]...  push a plan (or a subtree) to the fleet, in waves
  hutong fleet status [--json]             one row per gateway: desired, applied, ACK/NACK, drift
  hutong rollout status|resume|abort       the push's rollout, wave by wave
  hutong rollback --fleet URLS             the previous push's plan, everywhere (in waves too)
  hutong demo                              run the demo site in network namespaces
  hutong demo --fleet                      three gateways driven by one plan through a local etcd
  hutong bench [--quick]                   acceptance bench: XDP ceiling, Linux + nftables, hutong's engines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Work with the unified addressing plan.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Run a gateway.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Run one packet through the userspace pipeline and print every stage's decision.
    Trace {
        /// A compiled gateway config (`hutong plan compile`); without it, the running gateway
        /// at --api traces the packet under its running config (POST /v1/trace).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The gateway's agent API: HOST:PORT or its Unix socket's path. Default: the one
        /// gateway socket in /run/hutong, else 127.0.0.1:9180.
        #[arg(long)]
        api: Option<hutong::api::client::Endpoint>,
        /// The frame, as hex from the Ethernet header on (spaces and colons are ignored).
        #[arg(long)]
        packet: String,
        /// The interface it arrives on; defaults to the config's first port.
        #[arg(long)]
        iface: Option<String>,
        /// Print the steps as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compile a plan for a running gateway, show what changes, and apply it (POST /v1/config).
    Apply {
        /// The plan (file or directory).
        plan: PathBuf,
        /// The gateway to compile for; it must be the one listening at --api.
        #[arg(long)]
        gateway: String,
        /// The gateway's agent API: HOST:PORT or its Unix socket's path. Default: the one
        /// gateway socket in /run/hutong, else 127.0.0.1:9180.
        #[arg(long)]
        api: Option<hutong::api::client::Endpoint>,
        /// Print the API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Push a plan to the fleet: read the store's plan, replace --scope's subtree (or all of it)
    /// with PLAN's, validate the whole, compile every gateway, print what changes, write it in
    /// one transaction, then follow the rollout wave by wave. Exit 3: another push landed first.
    Push {
        /// The plan (file), checked on its own first.
        plan: PathBuf,
        /// A node code: only its subtree is replaced (an operator's jurisdiction).
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        rollout: RolloutArgs,
        /// Print what would change and write nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// The fleet as the store holds it.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// The latest push's rollout: where it stands, go on after a halt, or stop it.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// The audit log: who changed what and when, chained with SM3 and signed with SM2.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Put a running gateway back on its previous config version (POST /v1/rollback); with
    /// --fleet, push the previous push's plan to every gateway again.
    Rollback {
        /// The fleet's etcd: push the plan of the push before the latest (or --to N) again.
        #[arg(long, conflicts_with = "api")]
        fleet: Option<String>,
        #[command(flatten)]
        tls: EtcdTls,
        /// With --fleet: the push whose plan to restore.
        #[arg(long, requires = "fleet")]
        to: Option<u64>,
        /// With --fleet: print what would change and write nothing.
        #[arg(long, requires = "fleet")]
        dry_run: bool,
        #[command(flatten)]
        rollout: RolloutArgs,
        /// The gateway's agent API: HOST:PORT or its Unix socket's path. Default: the one
        /// gateway socket in /run/hutong, else 127.0.0.1:9180.
        #[arg(long)]
        api: Option<hutong::api::client::Endpoint>,
        /// Print the API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// A running gateway's NAT sessions (GET /v1/sessions), filtered and a page at a time.
    Sessions {
        /// The gateway's agent API: HOST:PORT or its Unix socket's path. Default: the one
        /// gateway socket in /run/hutong, else 127.0.0.1:9180.
        #[arg(long)]
        api: Option<hutong::api::client::Endpoint>,
        /// The inside, outside or a remote address.
        #[arg(long)]
        addr: Option<std::net::Ipv4Addr>,
        /// The inside or outside port.
        #[arg(long)]
        port: Option<u16>,
        /// The inside or outside VRF.
        #[arg(long)]
        vrf: Option<u32>,
        /// tcp, udp, icmp or a protocol number.
        #[arg(long)]
        proto: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// What a running gateway says about itself (its agent API's GET /v1/status).
    Status {
        /// The gateway's agent API: HOST:PORT or its Unix socket's path. Default: the one
        /// gateway socket in /run/hutong, else 127.0.0.1:9180.
        #[arg(long)]
        api: Option<hutong::api::client::Endpoint>,
        /// Print the API's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Build a demo site in network namespaces, run a gateway on it, send real traffic, show the
    /// evidence, and remove everything again. By default the showcase (configs/demo/showcase.yaml):
    /// two overlapping legacy networks, an isolated subnet, a published service, ping, HTTP and
    /// iperf3 both ways, and a summary table.
    Demo {
        /// The one-network demo (configs/demo/plan.yaml) instead of the showcase.
        #[arg(long)]
        simple: bool,
        /// Plan to run the one-network demo on instead of the embedded one.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Gateway of that plan to run.
        #[arg(long, default_value = hutong::demo::DEMO_GATEWAY)]
        gateway: String,
        /// The fleet demo: a local etcd, three gateways of the province example in namespaces,
        /// a push, the ACK table, traffic through each, then a change in two waves.
        #[arg(long, conflicts_with_all = ["simple", "plan"])]
        fleet: bool,
    },
    /// The acceptance bench: the raw XDP ceiling, Linux forwarding with nftables and hutong's XDP
    /// and userspace engines, side by side in namespaces it builds, in six scenarios (netmap,
    /// deny-heavy, NAPT with 1k and 100k established flows, NAPT's new-session rate and session
    /// capacity): RFC 2544 throughput, latency at half of it, RFC 9693 session capacity, and a
    /// report (Markdown, JSON, PNG).
    Bench {
        /// 64-byte frames only, short trials and a coarse search (a smoke test), instead of 64,
        /// 512 and 1518 bytes, trials of 0.2 s and the rate within 2%.
        #[arg(long)]
        quick: bool,
        /// Where the report goes: report.md, report.json and throughput.png.
        #[arg(long, default_value = "bench-report")]
        out: PathBuf,
        /// Only these scenarios (repeatable); all of them by default.
        #[arg(long, value_enum)]
        scenario: Vec<hutong::bench::Scenario>,
        /// Cores to spread each device under test over: the generator sends from that many,
        /// each into its own veth queue, and the userspace engine runs as many workers.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        cores: u32,
        /// The loss allowed at the throughput rate, in percent of the frames offered.
        #[arg(long, default_value_t = 0.1, value_parser = loss_percent)]
        loss: f64,
        /// The most sessions the capacity search offers (default 300,000; --quick 20,000); the
        /// scenario's NAT pool has room for 4 million. Each takes 20 µs to set up and answer.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4_000_000))]
        sessions: Option<u64>,
        /// Real ports instead of veths, all four together, cabled gen ↔ dut-in and dut-out ↔
        /// sink: the bench borrows them (into its namespaces, renamed) and gives them back
        /// afterwards. Ports with addresses are refused. This one: the generator's.
        #[arg(long = "gen", value_name = "IF", requires_all = ["dut_in", "dut_out", "sink"])]
        generator: Option<String>,
        /// The device under test's port cabled to --gen (its legacy side).
        #[arg(long, value_name = "IF", requires_all = ["generator", "dut_out", "sink"])]
        dut_in: Option<String>,
        /// The device under test's port cabled to --sink (its extranet side).
        #[arg(long, value_name = "IF", requires_all = ["generator", "dut_in", "sink"])]
        dut_out: Option<String>,
        /// The sink's port.
        #[arg(long, value_name = "IF", requires_all = ["generator", "dut_in", "dut_out"])]
        sink: Option<String>,
    },
}

/// Where the fleet's etcd is, and how to authenticate to it.
#[derive(clap::Args, Clone)]
pub struct FleetArgs {
    /// The fleet's etcd members: http(s)://HOST:PORT[,...].
    #[arg(long, env = "HUTONG_FLEET")]
    pub fleet: String,
    #[command(flatten)]
    pub tls: EtcdTls,
}

/// TLS to etcd, with a client certificate (all three, for https:// URLs).
#[derive(clap::Args, Clone, Default)]
pub struct EtcdTls {
    /// The CA certificate (PEM) that signed etcd's.
    #[arg(long, requires_all = ["etcd_cert", "etcd_key"])]
    pub etcd_ca: Option<PathBuf>,
    /// This client's certificate (PEM).
    #[arg(long, requires_all = ["etcd_ca", "etcd_key"])]
    pub etcd_cert: Option<PathBuf>,
    /// This client's key (PEM).
    #[arg(long, requires_all = ["etcd_ca", "etcd_cert"])]
    pub etcd_key: Option<PathBuf>,
}

impl EtcdTls {
    pub fn files(&self) -> Option<hutong_fleet::TlsFiles> {
        Some(hutong_fleet::TlsFiles {
            ca: self.etcd_ca.clone()?,
            cert: self.etcd_cert.clone()?,
            key: self.etcd_key.clone()?,
        })
    }
}

/// How a push rolls out.
#[derive(clap::Args, Clone)]
pub struct RolloutArgs {
    /// A wave: a count (2), a share (10%), a level (county, prefecture, province, central) or
    /// rest; repeat for several. Each wave starts when the previous one has ACKed and settled.
    #[arg(long = "wave")]
    pub waves: Vec<hutong_fleet::waves::WaveSpec>,
    /// Seconds a wave's gateways must stay healthy after their ACKs.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub settle: f64,
    /// Drops per second (per reason, per gateway) above twice the rate before the wave that
    /// halt the rollout.
    #[arg(long, default_value_t = 100.0, value_parser = rate)]
    pub max_drop_rate: f64,
    /// Seconds a wave may take to be ACKed before the rollout halts.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub ack_timeout: f64,
    /// Write the push and return; `hutong rollout resume` drives the rest.
    #[arg(long)]
    pub no_wait: bool,
}

impl RolloutArgs {
    pub fn options(&self, scope: Option<String>) -> hutong_fleet::push::PushOptions {
        hutong_fleet::push::PushOptions {
            scope,
            waves: self.waves.clone(),
            settle_s: self.settle,
            max_drop_rate: self.max_drop_rate,
            ack_timeout_s: self.ack_timeout,
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
pub enum FleetCommand {
    /// One row per gateway: jurisdiction, desired and applied push, ACK/NACK, last seen, drift.
    Status {
        #[arg(long)]
        json: bool,
        /// Redraw every second until the rollout in progress has finished or halted.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// The plan as the store holds it, put together (YAML).
    Plan {
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Make an SM2 key to sign an audit log (written to FILE, readable by its owner only); its
    /// public key is printed, for `hutong audit verify --key`.
    Keygen { file: PathBuf },
    /// The log's entries, oldest first.
    Show {
        #[arg(long)]
        log: PathBuf,
        /// Only entries at or after this time (RFC 3339, UTC, or a prefix: 2026-12-03).
        #[arg(long)]
        since: Option<String>,
        /// Only entries whose certificate subject contains this.
        #[arg(long)]
        who: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check every entry's signature, the chain and the signed head; name the first bad line.
    Verify {
        #[arg(long)]
        log: PathBuf,
        /// The public key the log's first entry is signed with (hex), or a file holding it.
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand)]
pub enum RolloutCommand {
    /// The rollout's state and each wave's gateways.
    Status {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Go on with a halted rollout (the halted wave is checked again first).
    Resume {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Stop: later waves are never written; gateways that took the push keep it.
    Abort {
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

/// A number of seconds for a rollout: from 0 to a day.
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if (0.0..=86_400.0).contains(&v) { Ok(v) } else { Err(format!("{s}: seconds from 0 to 86400")) }
}

/// A drop rate per second: from 0 to a billion.
fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if (0.0..=1e9).contains(&v) { Ok(v) } else { Err(format!("{s}: a rate from 0 to 1e9 per second")) }
}

/// A loss threshold in percent: 0 to 100.
fn loss_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if (0.0..100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s}: a loss threshold is a percentage from 0 to under 100"))
    }
}

#[derive(Subcommand)]
pub enum PlanCommand {
    /// Validate a plan; every problem is printed with file:line:column. Exits 1 if any.
    Check { path: PathBuf },
    /// Which legacy networks use addresses outside the plan, how much, and how each is
    /// converted; --propose adds netmap entries from free plan blocks, as YAML to paste.
    Conformance {
        path: PathBuf,
        #[arg(long)]
        propose: bool,
    },
    /// Per gateway, what would change from OLD to NEW (translations, pools, services, routes,
    /// ports, rules). Exits 1 when there are differences, like diff.
    Diff { old: PathBuf, new: PathBuf },
    /// Compile a gateway's config (JSON) from a plan; with --all, every gateway's, one file each.
    Compile {
        path: PathBuf,
        #[arg(long, required_unless_present = "all")]
        gateway: Option<String>,
        /// Compile every gateway into the --output directory as <gateway id>.json.
        #[arg(long, conflicts_with = "gateway", requires = "output")]
        all: bool,
        /// Write to this file (a directory with --all) instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Write a synthetic plan: the province example (Hunan, 126 counties), a national-scale one
    /// (34 provinces, 2,720 counties, about 100k prefixes) for the benchmark, or the plan
    /// benchmark's larger sizes (20k and 50k nodes, a gateway per county).
    Generate {
        #[arg(long, value_enum, default_value = "province")]
        scale: ScaleName,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ScaleName {
    Province,
    National,
    #[value(name = "nodes-20k")]
    Nodes20k,
    #[value(name = "nodes-50k")]
    Nodes50k,
}

#[derive(Subcommand)]
pub enum GatewayCommand {
    /// Attach the XDP engine to the config's interfaces and forward until SIGTERM/SIGINT.
    Run {
        /// A compiled gateway config (`hutong plan compile`).
        #[arg(long, required_unless_present_any = ["plan", "fleet"], conflicts_with_all = ["plan", "fleet"])]
        config: Option<PathBuf>,
        /// Or a plan, checked and compiled here for --gateway.
        #[arg(long, requires = "gateway", conflicts_with = "fleet")]
        plan: Option<PathBuf>,
        /// The plan's (or the fleet's) gateway to run.
        #[arg(long)]
        gateway: Option<String>,
        /// Or a fleet gateway: its config comes from this etcd (http(s)://HOST:PORT[,...]),
        /// and its agent applies every new one and reports ACK or NACK. It starts from the
        /// config it ran last (its state directory) and keeps forwarding when etcd is down.
        #[arg(long, requires = "gateway")]
        fleet: Option<String>,
        #[command(flatten)]
        etcd_tls: EtcdTls,
        /// Keep counters (`name value` lines) in this file while running.
        #[arg(long)]
        stats_file: Option<PathBuf>,
        /// Pin maps and links here (bpffs); default /sys/fs/bpf/hutong/<gateway id>. SIGUSR1
        /// stops the process but keeps forwarding from the pins; a new run takes over.
        #[arg(long)]
        pin_dir: Option<PathBuf>,
        /// Locked while running, so a second run of the same gateway is refused; default
        /// /run/hutong/<gateway id>.pid.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Where the agent API (status, config apply and rollback, metrics) listens: loopback
        /// only, since the API has no authentication yet.
        #[arg(long, default_value = hutong::api::DEFAULT_ADDR)]
        api: std::net::SocketAddr,
        /// The agent API on a Unix socket too, root's alone (0600): the CLI's default way in.
        /// Default: beside the PID file, /run/hutong/<gateway id>.sock.
        #[arg(long)]
        api_socket: Option<PathBuf>,
        /// Let --api listen beyond loopback: anyone who reaches it can reconfigure the gateway.
        #[arg(long)]
        api_insecure_listen_anywhere: bool,
        /// Where applied configs are kept, so rollback works across restarts; default
        /// /var/lib/hutong/<gateway id>.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// xdp: the XDP program forwards, the userspace engine takes what it leaves;
        /// userspace: the userspace engine forwards everything through AF_XDP sockets.
        #[arg(long, default_value = "xdp")]
        engine: hutong::gateway::EngineKind,
        /// Userspace engine: worker threads, one per core to use (on AF_XDP each port needs as
        /// many receive queues in use). The XDP engine's slow path runs one.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
        workers: u32,
        /// Userspace engine: how it reads the interfaces. auto: AF_XDP where the XDP program
        /// attaches, AF_PACKET where it cannot; af-xdp; af-packet: packet sockets everywhere,
        /// no program attached.
        #[arg(long, default_value = "auto")]
        io: hutong::gateway::IoChoice,
    },
}
