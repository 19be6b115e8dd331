//! The `hutong` command: plan tools, the gateway, and the demo.

use anyhow::Context as _;
use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

mod cli;

use cli::{AuditCommand, Cli, Command, FleetCommand, GatewayCommand, PlanCommand, RolloutCommand, ScaleName};
use hutong::fleet::commands;
use hutong_fleet::Endpoints;

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
            fleet,
            etcd_tls,
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
            let fleet = match (fleet, &gateway) {
                (Some(urls), Some(id)) => Some(hutong_fleet::agent::AgentOptions::new(
                    Endpoints::parse(&urls, etcd_tls.files())?,
                    id,
                )),
                _ => None,
            };
            let config = match (config, plan, gateway) {
                (Some(file), _, _) => hutong::gateway::load_config(&file)?,
                (None, None, Some(id)) if fleet.is_some() => {
                    let dir = state_dir.clone().unwrap_or_else(|| hutong::history::default_dir(&id));
                    hutong::fleet::start_config(&dir, fleet.as_ref().expect("checked"))?
                }
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
                fleet,
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
                let changes = control::diff::diff_configs(&running, &config);
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
        Command::Push { plan, scope, rollout, dry_run, fleet } => {
            let ep = Endpoints::parse(&fleet.fleet, fleet.tls.files())?;
            commands::push(&ep, &plan, rollout.options(scope), dry_run, !rollout.no_wait)
        }
        Command::Fleet(FleetCommand::Status { json, watch, fleet }) => {
            commands::fleet_status(&Endpoints::parse(&fleet.fleet, fleet.tls.files())?, json, watch)
        }
        Command::Fleet(FleetCommand::Plan { fleet }) => {
            commands::fleet_plan(&Endpoints::parse(&fleet.fleet, fleet.tls.files())?)
        }
        Command::Audit(AuditCommand::Keygen { file }) => hutong::audit::keygen(&file),
        Command::Audit(AuditCommand::Show { log, since, who, json }) => {
            hutong::audit::show(&log, since.as_deref(), who.as_deref(), json)
        }
        Command::Audit(AuditCommand::Verify { log, key }) => hutong::audit::verify_log(&log, &key),
        Command::Rollout(action) => {
            let (fleet, action) = match action {
                RolloutCommand::Status { fleet } => (fleet, commands::RolloutAction::Status),
                RolloutCommand::Resume { fleet } => (fleet, commands::RolloutAction::Resume),
                RolloutCommand::Abort { fleet } => (fleet, commands::RolloutAction::Abort),
            };
            commands::rollout(&Endpoints::parse(&fleet.fleet, fleet.tls.files())?, action)
        }
        Command::Rollback { fleet: Some(urls), tls, to, rollout, dry_run, .. } => {
            let ep = Endpoints::parse(&urls, tls.files())?;
            commands::rollback(&ep, to, rollout.options(None), dry_run, !rollout.no_wait)
        }
        Command::Rollback { api, json, .. } => {
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
        Command::Demo { fleet: true, .. } => hutong::lab::fleet_demo::run(),
        Command::Demo { simple, plan, gateway, .. } => hutong::demo::run(plan.as_deref(), &gateway, simple),
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
                        "{:<8} {:<10} {}",
                        s["pipeline"].as_str().unwrap_or("?"),
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
