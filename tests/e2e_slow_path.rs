//! The XDP engine's slow path with real hosts: what the program cannot finish (here, an expiring
//! TTL) goes through AF_XDP to the userspace engine, whose ICMP time-exceeded reaches the sender.

mod common;

use std::{net::SocketAddr, process::Stdio};

use dataplane::{Counters, Stat};
use hutong::lab::http::HttpServer;

#[test]
fn an_expiring_ttl_is_answered_through_the_slow_path() {
    an_expiring_ttl_is_answered_through_the_slow_path_on(&[]);
}

/// The same on the userspace engine.
#[test]
fn an_expiring_ttl_on_the_userspace_engine() {
    an_expiring_ttl_is_answered_through_the_slow_path_on(&["--engine", "userspace"]);
}

fn an_expiring_ttl_is_answered_through_the_slow_path_on(engine: &[&str]) {
    common::require_root("e2e_slow_path");
    let config = common::demo_config();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let a = lab.addrs.clone();
    let _server = HttpServer::start(&lab.extranet, SocketAddr::new(a.server.addr().into(), 80)).unwrap();
    let mut gw = site.start_gateway_with("gw", engine);
    gw.wait_ready(&|| Ok(())).unwrap();

    let out = lab
        .legacy
        .command("ping")
        .args(["-n", "-c", "3", "-i", "0.2", "-W", "1", "-t", "1", &a.server.addr().to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("slow_path: ping -t 1 said:\n{text}");
    let answered = text
        .lines()
        .filter(|l| l.contains(&format!("From {}", a.legacy_gateway)) && l.contains("Time to live exceeded"))
        .count();
    assert!(
        answered >= 2,
        "time-exceeded from {} expected for most of 3 pings:\n{text}\n{}",
        a.legacy_gateway,
        gw.log_text()
    );
    // A normal ping still takes the fast path.
    let ok = lab
        .legacy
        .command("ping")
        .args(["-n", "-c", "2", "-W", "1", &a.server.addr().to_string()])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    std::thread::sleep(std::time::Duration::from_millis(400));
    let text = std::fs::read_to_string(&gw.stats).unwrap();
    let counters = Counters::from_text(&text);
    assert!(counters.stat(Stat::SlowPath) >= 3, "{counters:?}");
    // The slow path's own engine publishes what it did: the time-exceeded errors it sent.
    let slow: String =
        text.lines().filter_map(|l| l.strip_prefix("slow.")).map(|l| format!("{l}\n")).collect();
    let slow = Counters::from_text(&slow);
    assert!(slow.stat(Stat::IcmpErrors) >= answered as u64, "slow path counters: {slow:?}\n{text}");

    // The agent API, on the gateway namespace's loopback: status, and the same counters as
    // Prometheus text that a parser accepts.
    let get = |path: &str| {
        let out = lab
            .gateway
            .command("curl")
            .args(["-sf", &format!("http://127.0.0.1:9180{path}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "GET {path} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log_text()
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let status: serde_json::Value = serde_json::from_str(&get("/v1/status")).unwrap();
    // The same through the CLI verb, for people and for scripts.
    let hutong = |args: &[&str]| {
        let out = lab.gateway.command(env!("CARGO_BIN_EXE_hutong")).args(args).output().unwrap();
        assert!(out.status.success(), "hutong {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let said = hutong(&["status"]);
    assert!(
        said.starts_with(&format!("gateway {} (hutong ", config.gateway))
            && said.contains(if engine.is_empty() { "engine xdp" } else { "engine userspace" }),
        "{said}"
    );
    let said: serde_json::Value = serde_json::from_str(&hutong(&["status", "--json"])).unwrap();
    assert_eq!(said["config_digest"], status["config_digest"]);
    let running: serde_json::Value = serde_json::from_str(&get("/v1/config")).unwrap();
    assert_eq!(running["config_digest"], status["config_digest"]);
    let running = dataplane::Config::from_json(&running["config"].to_string()).unwrap();
    assert_eq!(running, config, "GET /v1/config is the config the gateway was started with");
    assert_eq!(status["gateway"], config.gateway.as_str(), "{status}");
    assert_eq!(status["engine"], if engine.is_empty() { "xdp" } else { "userspace" }, "{status}");
    // Every JSON route answers with what docs/api/openapi.yaml promises: the required fields,
    // of the documented types.
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(include_str!("../docs/api/openapi.yaml")).expect("the document is YAML");
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(schema) =
            item["get"]["responses"]["200"]["content"]["application/json"]["schema"].as_object()
        else {
            continue;
        };
        let body: serde_json::Value = serde_json::from_str(&get(path)).unwrap();
        for field in schema["required"].as_array().unwrap() {
            let field = field.as_str().unwrap();
            let value = &body[field];
            let ok = match schema["properties"][field]["type"].as_str().unwrap() {
                "string" => value.is_string(),
                "integer" => value.is_u64() || value.is_i64(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                other => panic!("the test does not know type {other}"),
            };
            assert!(ok, "GET {path}: {field} is {value}, not as documented");
        }
    }
    let metrics = get("/metrics");
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |engine: &str, stat: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "hutong_packets_total"
                    && s.labels.get("engine") == Some(engine)
                    && s.labels.get("stat") == Some(stat)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => -1.0,
            })
    };
    assert!(sample("xdp", "slow_path").is_some_and(|v| v >= 3.0), "{metrics}");
    assert!(sample("slow_path", "icmp_errors").is_some_and(|v| v >= answered as f64), "{metrics}");
    // The normal ping left by the uplink, counted per port by the engine that forwarded it.
    let forwarder = if engine.is_empty() { "xdp" } else { "slow_path" };
    let tx = scrape.samples.iter().find(|s| {
        s.metric == "hutong_port_packets_total"
            && s.labels.get("engine") == Some(forwarder)
            && s.labels.get("port") == Some("uplink0")
            && s.labels.get("direction") == Some("tx")
    });
    assert!(
        tx.is_some_and(|s| matches!(s.value, prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v >= 2.0)),
        "{metrics}"
    );
    // The normal ping was classified: its rule counted the echo requests.
    let rule = scrape.samples.iter().find(|s| {
        s.metric == "hutong_rule_hits_total" && s.labels.get("rule") == Some("city-hall:netmap0:out")
    });
    assert!(
        rule.is_some_and(|s| matches!(s.value, prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v >= 2.0)),
        "{metrics}"
    );
    gw.stop();
}
