//! The `hutong` command: plan tools, the gateway, and the demo.

use anyhow::Context as _;
use std::{path::PathBuf, process::ExitCode};

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
  hutong demo                              run the demo site in network namespaces
  hutong bench [--quick]                   acceptance bench: XDP ceiling, Linux + nftables, hutong's engines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Put a running gateway back on its previous config version (POST /v1/rollback).
    Rollback {
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
enum PlanCommand {
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
enum ScaleName {
    Province,
    National,
    #[value(name = "nodes-20k")]
    Nodes20k,
    #[value(name = "nodes-50k")]
    Nodes50k,
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Attach the XDP engine to the config's interfaces and forward until SIGTERM/SIGINT.
    Run {
        /// A compiled gateway config (`hutong plan compile`).
        #[arg(long, required_unless_present = "plan", conflicts_with = "plan")]
        config: Option<PathBuf>,
        /// Or a plan, checked and compiled here for --gateway.
        #[arg(long, requires = "gateway")]
        plan: Option<PathBuf>,
        /// The plan's gateway to run.
        #[arg(long, requires = "plan")]
        gateway: Option<String>,
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

/// Prints the answer to an apply or a rollback; success only for 200.
fn print_change(status: u16, answer: &serde_json::Value, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else if status == 200 {
        let changed = answer["changed"].as_bool().unwrap_or(true);
        println!(
            "running config version {}{}",
            answer["config_version"],
            if changed { "" } else { " (it was running already)" }
        );
    } else if let Some(errors) = answer["errors"].as_array() {
        eprintln!("refused ({status}), nothing changed:");
        for e in errors {
            eprintln!("  {}: {}", e["path"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("?"));
        }
    } else {
        eprintln!("refused ({status}): {}", answer["error"].as_str().unwrap_or("no reason given"));
    }
    Ok(if status == 200 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(cli.command, Command::Plan(_)) {
        // Plan tools are filters: `hutong plan conformance x | head` should end quietly when the
        // reader goes away, as cat does, not panic on a failed print. Only here: a gateway must
        // never die of a peer closing a socket.
        // SAFETY: no other thread exists yet; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Plan(PlanCommand::Check { path }) => Ok(match control::check_file(&path) {
            Ok(lp) => {
                let gateways: usize = lp.plan.nodes().iter().map(|(_, n)| n.gateways.len()).sum();
                println!(
                    "{}: ok ({} node(s), {} gateway(s))",
                    path.display(),
                    lp.plan.nodes().len(),
                    gateways
                );
                ExitCode::SUCCESS
            }
            Err(d) => {
                eprintln!("{d}");
                ExitCode::FAILURE
            }
        }),
        Command::Plan(PlanCommand::Compile { path, gateway, all, output }) => {
            let lp = match control::check_file(&path) {
                Ok(lp) => lp,
                Err(d) => {
                    eprintln!("{d}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let compiled = match (all, gateway, output) {
                (true, _, Some(dir)) => control::compile::compile_all(&lp).map(|configs| {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    for (id, config) in &configs {
                        write_file(&output_file(&dir, id)?, &(config.to_json() + "\n"))?;
                    }
                    println!("compiled {} gateway(s) into {}", configs.len(), dir.display());
                    anyhow::Ok(())
                }),
                (_, Some(id), output) => control::compile(&lp, &id).map(|config| {
                    let json = config.to_json() + "\n";
                    match output {
                        Some(o) => write_file(&o, &json)?,
                        None => print!("{json}"),
                    }
                    anyhow::Ok(())
                }),
                _ => anyhow::bail!("name a --gateway, or --all with --output DIR"),
            };
            match compiled {
                Ok(written) => written.map(|()| ExitCode::SUCCESS),
                Err(d) => {
                    eprintln!("{d}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Plan(PlanCommand::Generate { scale, output }) => {
            let scale = match scale {
                ScaleName::Province => control::generate::Scale::PROVINCE,
                ScaleName::National => control::generate::Scale::NATIONAL,
                ScaleName::Nodes20k => control::generate::Scale::NODES_20K,
                ScaleName::Nodes50k => control::generate::Scale::NODES_50K,
            };
            let g = control::generate::generate(&scale).map_err(anyhow::Error::msg)?;
            match output {
                Some(o) => write_file(&o, &g.yaml)?,
                None => print!("{}", g.yaml),
            }
            eprintln!("{} node(s), {} gateway(s), {} prefix(es)", g.nodes, g.gateways, g.prefixes);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(PlanCommand::Conformance { path, propose }) => match control::check_file(&path) {
            Ok(lp) => {
                print!("{}", control::conformance::report(&lp, propose));
                Ok(ExitCode::SUCCESS)
            }
            Err(d) => {
                eprintln!("{d}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Plan(PlanCommand::Diff { old, new }) => {
            let (a, b) = match (control::check_file(&old), control::check_file(&new)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(d), _) | (_, Err(d)) => {
                    eprintln!("{d}");
                    return Ok(ExitCode::from(2));
                }
            };
            let diffs = control::diff::diff(&a, &b).map_err(|d| anyhow::anyhow!("{d}"))?;
            for g in &diffs {
                println!("gateway {}:", g.gateway);
                for c in &g.changes {
                    println!("  {c}");
                }
            }
            Ok(if diffs.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Gateway(GatewayCommand::Run {
            config,
            plan,
            gateway,
            stats_file,
            pin_dir,
            pid_file,
            api,
            api_socket,
            api_insecure_listen_anywhere,
            state_dir,
            engine,
            workers,
            io,
        }) => {
            let config = match (config, plan, gateway) {
                (Some(file), _, _) => hutong::gateway::load_config(&file)?,
                (None, Some(plan), Some(id)) => {
                    match control::check_file(&plan).and_then(|lp| control::compile(&lp, &id)) {
                        Ok(config) => config,
                        Err(d) => {
                            eprintln!("{d}");
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
                _ => anyhow::bail!("give --config FILE, or --plan PATH with --gateway ID"),
            };
            let options = hutong::gateway::RunOptions {
                config,
                stats_file,
                pin_dir,
                pid_file,
                api,
                api_socket,
                api_anywhere: api_insecure_listen_anywhere,
                state_dir,
                engine,
                workers,
                io,
            };
            hutong::gateway::run(options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply { plan, gateway, api, json } => {
            let config = match control::check_file(&plan).and_then(|lp| control::compile(&lp, &gateway)) {
                Ok(config) => config,
                Err(d) => {
                    eprintln!("{d}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let api = api.unwrap_or_else(hutong::api::client::local_default);
            let (running, version) = hutong::api::client::config(&api)?;
            if !json {
                let changes = hutong::api::client::diff(&running, &config);
                println!(
                    "gateway {} runs config version {version}; applying {}:",
                    running.gateway,
                    plan.display()
                );
                for line in &changes {
                    println!("  {line}");
                }
                if changes.is_empty() {
                    println!("  (no change)");
                }
            }
            let (status, answer) = hutong::api::client::post(&api, "/v1/config", Some(config.to_json()))?;
            print_change(status, &answer, json)
        }
        Command::Sessions { api, addr, port, vrf, proto, offset, limit, json } => {
            let mut params = vec![("offset", offset.to_string()), ("limit", limit.to_string())];
            params.extend(addr.map(|a| ("addr", a.to_string())));
            params.extend(port.map(|p| ("port", p.to_string())));
            params.extend(vrf.map(|v| ("vrf", v.to_string())));
            params.extend(proto.map(|p| ("proto", p)));
            let (status, answer) = hutong::api::client::sessions(
                &api.unwrap_or_else(hutong::api::client::local_default),
                &params,
            )?;
            if status != 200 {
                return print_change(status, &answer, json);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list = answer["sessions"].as_array().cloned().unwrap_or_default();
            println!(
                "{:<5} {:<24} {:<24} {:<12} {:>8} {:>6}  remotes",
                "proto", "inside (VRF)", "outside (VRF)", "state", "expires", "kernel"
            );
            for s in &list {
                let text = |k: &str| s[k].as_str().unwrap_or("?").to_string();
                let expires = s["expires_in_seconds"].as_u64().map_or("static".into(), |e| format!("{e} s"));
                let remotes: Vec<String> = s["remotes"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                println!(
                    "{:<5} {:<24} {:<24} {:<12} {:>8} {:>6}  {}",
                    text("proto"),
                    format!("{} ({})", text("inside"), s["inside_vrf"]),
                    format!("{} ({})", text("outside"), s["outside_vrf"]),
                    text("state"),
                    expires,
                    s["kernel_flows"],
                    remotes.join(", ")
                );
            }
            println!("{} of {} session(s) from {}", list.len(), answer["total"], answer["offset"]);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback { api, json } => {
            let (status, answer) = hutong::api::client::post(
                &api.unwrap_or_else(hutong::api::client::local_default),
                "/v1/rollback",
                None,
            )?;
            print_change(status, &answer, json)
        }
        Command::Status { api, json } => {
            let status =
                hutong::api::client::status(&api.unwrap_or_else(hutong::api::client::local_default))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", hutong::api::client::describe(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { simple, plan, gateway } => hutong::demo::run(plan.as_deref(), &gateway, simple),
        Command::Bench { quick, out, scenario, cores, loss, sessions, generator, dut_in, dut_out, sink } => {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let mut opts =
                if quick { hutong::bench::Options::quick() } else { hutong::bench::Options::full() };
            if !scenario.is_empty() {
                opts.scenarios =
                    hutong::bench::Scenario::ALL.into_iter().filter(|s| scenario.contains(s)).collect();
            }
            opts.search.threshold = loss / 100.0;
            opts.cores = cores;
            opts.sessions = sessions.unwrap_or(opts.sessions);
            if let (Some(generator), Some(dut_in), Some(dut_out), Some(sink)) =
                (generator, dut_in, dut_out, sink)
            {
                opts.ports = Some(hutong::bench::ports::Ports { generator, dut_in, dut_out, sink });
            }
            hutong::bench::run(&opts, &out, &command)
        }
        Command::Trace { config: None, api, packet, iface, json } => {
            let body = serde_json::json!({ "packet": packet, "iface": iface }).to_string();
            let (status, answer) = hutong::api::client::post(
                &api.unwrap_or_else(hutong::api::client::local_default),
                "/v1/trace",
                Some(body),
            )?;
            if status != 200 {
                return print_change(status, &answer, false);
            }
            let steps = answer["steps"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&steps)?);
            } else {
                for s in &steps {
                    println!(
                        "{:<10} {}",
                        s["stage"].as_str().unwrap_or("?"),
                        s["decision"].as_str().unwrap_or("?")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace { config: Some(config), packet, iface, json, .. } => {
            let config = hutong::gateway::load_config(&config)?;
            let frame = hutong::hex::parse(&packet)?;
            let iface = iface.unwrap_or_else(|| config.ports[0].name.clone());
            let steps = dataplane::engine::trace(&config, &iface, &frame).map_err(|errors| {
                anyhow::anyhow!("{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&steps)?);
            } else {
                for s in &steps {
                    println!("{s}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `text` to `path`, naming the path if that fails.
/// Writes `text` to `path` by rename: a reader never sees half a config, and a symlink planted
/// at `path` is replaced, never followed out of the directory.
fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    hutong::files::write_replacing(path, text, hutong::files::PUBLIC)
}

/// `DIR/<id>.json`, refusing any id that would not stay a file name inside `DIR`. Validation
/// already keeps ids to a safe character set; this is the second lock on the same door.
fn output_file(dir: &std::path::Path, id: &str) -> anyhow::Result<PathBuf> {
    let name = format!("{id}.json");
    let mut parts = std::path::Path::new(&name).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(n)), None)
            if n == std::ffi::OsStr::new(&name) && !id.starts_with('.') =>
        {
            Ok(dir.join(name))
        }
        _ => anyhow::bail!(
            "gateway id {id:?} is not a safe file name; refusing to write outside {}",
            dir.display()
        ),
    }
}
