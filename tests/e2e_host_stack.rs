//! The gateway's own host stack (smoltcp, in the slow path) with a real Linux host: the
//! extranet server pings the NAT pool's addresses and a published service's address, and finds
//! the pool address that sits on the uplink's own subnet by ARP, as it would a neighbor. An
//! address the gateway does not hold stays silent. Both engines.

mod common;

#[test]
fn nat_addresses_answer_arp_and_ping_on_the_xdp_engine() {
    nat_addresses_answer(&[]);
}

#[test]
fn nat_addresses_answer_arp_and_ping_on_the_userspace_engine() {
    nat_addresses_answer(&["--engine", "userspace"]);
}

/// On the uplink's subnet (198.19.0.0/24): found by ARP, not routed.
const ON_LINK_POOL: &str = "198.19.0.100";
const ROUTED_POOL: &str = "198.18.30.1";
const SERVICE: &str = "198.18.40.80";
/// On the uplink's subnet, and nobody's.
const NOBODY: &str = "198.19.0.200";

fn nat_addresses_answer(engine: &[&str]) {
    common::require_root("e2e_host_stack");
    let mut config = common::napt_config("198.18.30.1/32");
    config.nat_pools[0].addresses.push(format!("{ON_LINK_POOL}/32").parse().unwrap());
    config.services = vec![dataplane::config::Service {
        name: "city-portal".into(),
        proto: 6,
        outside_vrf: 0,
        outside: SERVICE.parse().unwrap(),
        outside_port: 80,
        inside_vrf: 1,
        inside: "10.20.0.10".parse().unwrap(),
        inside_port: 80,
    }];
    config.validate().unwrap();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let mut gw = site.start_gateway_with("gw-host", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    let gw_mac = site.rt.block_on(async {
        let g = lab.gateway.netlink().unwrap();
        dataplane::netlink::link(&g, &lab.addrs.uplink_port).await.unwrap().mac
    });
    // The lab routes every plan address to the gateway; this one the server must find on its
    // link, by ARP, as it would a router's second address.
    let ip = |args: &[&str]| {
        let out = lab.extranet.command("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ip(&["route", "del", &format!("{ON_LINK_POOL}/32")]);
    assert!(ip(&["route", "get", ON_LINK_POOL]).contains("dev eth0 src"), "on-link now");

    let ping = |dst: &str, count: u32| {
        let out = lab
            .extranet
            .command("ping")
            .args(["-n", "-c", &count.to_string(), "-i", "0.2", "-W", "1", dst])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for dst in [ROUTED_POOL, ON_LINK_POOL, SERVICE] {
        let text = ping(dst, 3);
        assert!(text.contains("3 received"), "ping {dst} ({engine:?}):\n{text}\n{}", gw.log_text());
        eprintln!("host_stack_e2e {engine:?}: {dst} answers ping: {}", text.lines().last().unwrap_or(""));
    }
    let neigh = ip(&["neigh", "show", ON_LINK_POOL]);
    let mac = gw_mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    assert!(neigh.contains(&mac), "the server learned {ON_LINK_POOL} at the gateway's MAC {mac}: {neigh}");

    // Nobody's address on the same link: no ARP answer, no echo.
    let text = ping(NOBODY, 2);
    assert!(text.contains(" 0 received"), "{NOBODY} must stay silent:\n{text}");
    assert!(!ip(&["neigh", "show", NOBODY]).contains(&mac), "nobody answered ARP for {NOBODY}");

    // What the host stack did, as metrics.
    std::thread::sleep(std::time::Duration::from_millis(500)); // one counters refresh
    let out = lab.gateway.command("curl").args(["-s", "http://127.0.0.1:9180/metrics"]).output().unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout).to_string();
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).unwrap();
    let answers = |kind: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == "hutong_host_answers_total" && s.labels.get("kind") == Some(kind))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => -1.0,
            })
            .unwrap_or_else(|| panic!("no hutong_host_answers_total{{kind={kind:?}}}:\n{metrics}"))
    };
    assert!(answers("echo_reply") >= 9.0, "three pings of three addresses: {metrics}");
    assert!(answers("arp_reply") >= 1.0, "the on-link pool address: {metrics}");
    eprintln!(
        "host_stack_e2e {engine:?}: host stack answered {} echo, {} ARP",
        answers("echo_reply"),
        answers("arp_reply")
    );
    gw.stop();
}
