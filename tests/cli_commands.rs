//! The `hutong` command line as a user meets it.

mod common;

use std::process::Command;

fn hutong(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hutong"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn help_lists_the_commands() {
    let (code, out, _) = hutong(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["plan check", "plan compile", "plan diff", "gateway run", "trace", "demo"] {
        assert!(out.contains(cmd), "--help does not mention {cmd:?}:\n{out}");
    }
}

#[test]
fn plan_check_accepts_the_demo_plan() {
    let (code, out, err) = hutong(&["plan", "check", "configs/demo/plan.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn plan_check_names_file_and_line_of_a_malformed_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string("configs/demo/plan.yaml")
        .unwrap()
        .replace("prefixes: [10.20.0.0/24]", "prefixes: [10.20.0.300/24]");
    std::fs::write(&bad, &text).unwrap();
    let line = text.lines().position(|l| l.contains("10.20.0.300")).unwrap() + 1;
    let (code, _, err) = hutong(&["plan", "check", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("{}:{line}:", bad.display())), "expected file:{line}: in\n{err}");
    assert!(err.contains("expected an IPv4 prefix such as 10.20.0.0/24, found \"10.20.0.300/24\""), "{err}");
}

#[test]
fn plan_check_reports_every_semantic_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string("configs/demo/plan.yaml")
        .unwrap()
        .replace("to: 198.18.20.0/24", "to: 198.18.20.0/23")
        .replace("via: 198.19.0.2", "via: 198.20.0.2");
    std::fs::write(&bad, &text).unwrap();
    let (code, _, err) = hutong(&["plan", "check", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn plan_compile_prints_the_gateway_config() {
    let (code, out, err) = hutong(&["plan", "compile", "configs/demo/plan.yaml", "--gateway", "gw-changsha"]);
    assert_eq!(code, 0, "{err}");
    let config = dataplane::Config::from_json(&out).expect("compile prints a valid dataplane::Config");
    assert_eq!(config, common::demo_config());
    let (code, _, err) = hutong(&["plan", "compile", "configs/demo/plan.yaml", "--gateway", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("no gateway \"nope\"") && err.contains("gw-changsha"), "{err}");
}

#[test]
fn gateway_run_refuses_a_config_naming_a_missing_interface() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::demo_config();
    config.ports[0].name = "htnosuch0".into();
    let path = dir.path().join("gw.json");
    std::fs::write(&path, config.to_json()).unwrap();
    let (code, _, err) = hutong(&["gateway", "run", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("no interface named \"htnosuch0\""), "{err}");
}

#[test]
fn gateway_run_reports_every_problem_of_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::demo_config();
    config.routes[0].port = "nowhere".into();
    config.netmaps[0].outside = "198.18.0.0/16".parse().unwrap();
    let path = dir.path().join("gw.json");
    std::fs::write(&path, config.to_json()).unwrap();
    let (code, _, err) = hutong(&["gateway", "run", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("routes[0]") && err.contains("netmaps[0]"), "{err}");
}

/// A config whose NAT state cannot fit in this machine is refused at start, before anything is
/// allocated or touched, with what it would need.
#[test]
fn gateway_run_refuses_a_config_that_does_not_fit_in_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::demo_config();
    config.nat_pools = (0..64)
        .map(|i| dataplane::config::NatPool {
            max_sessions: dataplane::config::bounds::MAX_POOL_SESSIONS,
            ..dataplane::config::NatPool::defaults(
                format!("p{i}"),
                1,
                0,
                vec![format!("198.18.100.{i}/32").parse().unwrap()],
            )
        })
        .collect();
    let path = dir.path().join("gw.json");
    std::fs::write(&path, config.to_json()).unwrap();
    let pins = dir.path().join("pins");
    let (code, _, err) =
        hutong(&["gateway", "run", "--config", path.to_str().unwrap(), "--pin-dir", pins.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("does not fit in this machine") && err.contains("MiB at capacity"), "{err}");
    assert!(!pins.exists(), "refused before anything was touched");
}

#[test]
fn trace_prints_each_stage_for_a_hex_packet() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.json");
    std::fs::write(&config, common::demo_config().to_json()).unwrap();
    let c = config.to_str().unwrap();
    // 10.20.0.10:40000 -> 198.19.0.2:53 UDP, from the legacy host.
    let frame =
        "02:00:00:00:0a:0a 02:00:00:00:00:11 0800 4500001c00004000401100000a14000ac6130002 9c40003500080000";
    let (code, out, err) = hutong(&["trace", "--config", c, "--packet", frame, "--iface", "legacy0"]);
    assert_eq!(code, 0, "{err}");
    for want in [
        "ingress  parse      IPv4 10.20.0.10 → 198.19.0.2 UDP 40000 → 53",
        "city-hall:netmap0:out",
        "198.18.20.10",
        "Forward",
    ] {
        assert!(out.contains(want), "{want:?} missing from\n{out}");
    }
    let (code, _, err) = hutong(&["trace", "--config", c, "--packet", "0x12"]);
    assert_ne!(code, 0);
    assert!(err.contains("not hex"), "{err}");
}

#[test]
fn a_legacy_networks_branch_is_reached_through_its_tunnel_untranslated() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.json");
    let (code, out, err) =
        hutong(&["plan", "compile", "configs/examples/conversions.yaml", "--gateway", "gw-furong"]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(&config, out).unwrap();
    let c = config.to_str().unwrap();
    // 10.0.1.5 -> 10.50.0.1 UDP, from a clinic host (VLAN 200) to the clinic's branch.
    let branch = "020000000001020000000002810000c808004500002100010000401165940a0001050a32000104d20050000d000068656c6c6f";
    let (code, out, err) = hutong(&["trace", "--config", c, "--packet", branch, "--iface", "legacy0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("clinic:route2:stay") && out.contains("gre-clinic"), "{out}");
    assert!(!out.contains("198.18.40."), "translated on its way to its own branch:\n{out}");
    // 10.0.1.5 -> 198.19.9.200, to the extranet: NAPT, as before.
    let extranet = "020000000001020000000002810000c80800450000210001000040119feb0a000105c61309c804d20050000d000068656c6c6f";
    let (code, out, err) = hutong(&["trace", "--config", c, "--packet", extranet, "--iface", "legacy0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("clinic:napt0:out") && out.contains("uplink0"), "{out}");
}

#[test]
fn the_example_plans_check_and_compile() {
    let (code, out, err) = hutong(&["plan", "check", "configs/examples/conversions.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
    let (code, out, err) =
        hutong(&["plan", "compile", "configs/examples/conversions.yaml", "--gateway", "gw-furong"]);
    assert_eq!(code, 0, "{err}");
    let config = dataplane::Config::from_json(&out).expect("a valid dataplane::Config");
    assert_eq!(config.nat_pools.len(), 2);
    assert_eq!(config.services.len(), 1);
}

#[test]
fn plan_diff_names_changes_and_exits_like_diff() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.yaml");
    let text = std::fs::read_to_string("configs/demo/plan.yaml")
        .unwrap()
        .replace("to: 198.18.20.0/24", "to: 198.18.21.0/24");
    std::fs::write(&new, text).unwrap();
    let (code, out, err) = hutong(&["plan", "diff", "configs/demo/plan.yaml", new.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("gateway gw-changsha:") && out.contains("~ netmap city-hall 10.20.0.0/24"), "{out}");
    let (code, out, _) = hutong(&["plan", "diff", "configs/demo/plan.yaml", "configs/demo/plan.yaml"]);
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, _, err) = hutong(&["plan", "diff", "configs/demo/plan.yaml", "/nonexistent.yaml"]);
    assert_eq!(code, 2, "an unreadable plan is trouble, not a difference: {err}");
}

#[test]
fn plan_conformance_reports_and_proposes() {
    let (code, out, err) = hutong(&["plan", "conformance", "configs/examples/conversions.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tax-office (node 430102 Furong District): not conforming"), "{out}");
    assert!(out.contains("NAPT (deterministic) 4096 addresses onto 198.18.40.32/28"), "{out}");
    // A netmap that covers half: the proposal maps the other half onto a free plan block.
    let dir = tempfile::tempdir().unwrap();
    let half = dir.path().join("half.yaml");
    let text = std::fs::read_to_string("configs/demo/plan.yaml").unwrap().replace(
        "          - from: 10.20.0.0/24\n            to: 198.18.20.0/24",
        "          - from: 10.20.0.0/25\n            to: 198.18.20.0/25",
    );
    std::fs::write(&half, text).unwrap();
    let (code, out, err) = hutong(&["plan", "conformance", half.to_str().unwrap(), "--propose"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unconverted 128 addresses"), "{out}");
    assert!(out.contains("      - { from: 10.20.0.0/25, to: 198.18.20.0/25 }"), "{out}");
    assert!(out.contains("      - { from: 10.20.0.128/25, to: 198.18.0.0/25 }"), "{out}");
}

#[test]
fn the_province_example_is_what_the_generator_writes_and_compiles_in_full() {
    let (code, generated, err) = hutong(&["plan", "generate", "--scale", "province"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("141 node(s), 126 gateway(s)"), "{err}");
    let committed = std::fs::read_to_string("configs/examples/province.yaml").unwrap();
    assert!(
        generated == committed,
        "configs/examples/province.yaml is stale: run hutong plan generate -o configs/examples/province.yaml"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("configs");
    let (code, stdout, err) =
        hutong(&["plan", "compile", "configs/examples/province.yaml", "--all", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("compiled 126 gateway(s)"), "{stdout}");
    let one = std::fs::read_to_string(out.join("gw-433109.json")).unwrap();
    let (_, single, _) =
        hutong(&["plan", "compile", "configs/examples/province.yaml", "--gateway", "gw-433109"]);
    assert_eq!(one, single, "--all writes what --gateway prints");
    let (code, report, _) = hutong(&["plan", "conformance", "configs/examples/province.yaml"]);
    assert_eq!(code, 0);
    assert!(report.ends_with("504 legacy network(s), 0 conforming\n"), "{}", &report[report.len() - 200..]);
}

#[test]
fn plan_compile_needs_a_gateway_or_all_with_a_directory() {
    let (code, _, err) = hutong(&["plan", "compile", "configs/demo/plan.yaml"]);
    assert_ne!(code, 0);
    assert!(err.contains("--gateway"), "{err}");
    let (code, _, err) = hutong(&["plan", "compile", "configs/demo/plan.yaml", "--all"]);
    assert_ne!(code, 0);
    assert!(err.contains("--output"), "{err}");
}

#[test]
fn compile_output_replaces_a_planted_symlink_instead_of_following_it() {
    let dir = tempfile::tempdir().unwrap();
    let (out, victim) = (dir.path().join("out"), dir.path().join("victim"));
    std::fs::create_dir(&out).unwrap();
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("gw-changsha.json")).unwrap();
    let (code, _, err) =
        hutong(&["plan", "compile", "configs/demo/plan.yaml", "--all", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let written = out.join("gw-changsha.json");
    assert!(std::fs::symlink_metadata(&written).unwrap().file_type().is_file());
    dataplane::Config::from_json(&std::fs::read_to_string(&written).unwrap()).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind: {leftovers:?}");
}

#[test]
fn the_api_listens_beyond_loopback_only_when_told_loudly() {
    let (code, _, err) = hutong(&[
        "gateway",
        "run",
        "--plan",
        "configs/demo/plan.yaml",
        "--gateway",
        "gw-changsha",
        "--api",
        "0.0.0.0:9",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no authentication") && err.contains("--api-insecure-listen-anywhere"), "{err}");
}

#[test]
fn gateway_run_compiles_a_plan_itself_and_names_its_errors() {
    // Interface names no host has: the run must stop at the first missing one, touching nothing.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    let text = std::fs::read_to_string("configs/demo/plan.yaml").unwrap();
    std::fs::write(&plan, text.replace("legacy0", "htnosuch0").replace("uplink0", "htnosuch1")).unwrap();
    let p = plan.to_str().unwrap();
    let (code, _, err) = hutong(&["gateway", "run", "--plan", p, "--gateway", "gw-changsha"]);
    assert_ne!(code, 0);
    assert!(err.contains("no interface named \"htnosuch0\""), "compiled and went on to the ports: {err}");
    let (code, _, err) = hutong(&["gateway", "run", "--plan", p, "--gateway", "gw-nowhere"]);
    assert_ne!(code, 0);
    assert!(err.contains("no gateway \"gw-nowhere\" in the plan") && err.contains("gw-changsha"), "{err}");
    let (code, _, err) = hutong(&["gateway", "run", "--plan", p]);
    assert_ne!(code, 0);
    assert!(err.contains("--gateway"), "{err}");
}

#[test]
fn status_says_when_no_gateway_answers() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let (code, _, err) = hutong(&["status", "--api", "127.0.0.1:1"]);
    assert_ne!(code, 0);
    assert!(err.contains("no gateway answers at http://127.0.0.1:1/v1/status"), "{err}");
}
