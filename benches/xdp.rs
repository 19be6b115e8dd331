//! ns/packet of the XDP program in the kernel (BPF_PROG_TEST_RUN with a repeat count), per case,
//! to set beside the userspace engine's figures from `benches/dataplane.rs`. Needs root (it loads
//! the program and makes a network namespace); without it, it says so and measures nothing.
//!
//! The kernel runs the program repeatedly on one buffer, so rewrites accumulate. The forwarding
//! case therefore uses a config whose netmaps map 10.20.0.0/24 and 198.18.20.0/24 onto each other
//! in both directions: every run translates the previous run's output back, and TTL 255 leaves
//! room for the 200 runs of one call before the slow path would take over. The established-NAPT
//! case runs a second program instance with a NAPT pool on the legacy VRF, and two flows that
//! translate into each other (address and port both ways), as the slow path would have written
//! them for an established session. The NPTv6 case loops the same way: fd20::/48 and
//! 2001:db8:20::/48 translate into each other from the legacy VRF.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::{
    Action, Netmap, Rule,
    config::NatPool,
    netlink,
    xdp::{XdpEngine, action, tables},
};
use etherparse::PacketBuilder;
use hutong::lab::{Netns, netns::lab_tag};
use hutong_common::{Flow, FlowKey, Neigh, Neigh6Key, NeighKey};

const RUNS_PER_CALL: u32 = 200;

fn config() -> dataplane::Config {
    let lp = control::load_str(hutong::demo::DEMO_PLAN, std::path::Path::new("plan.yaml")).unwrap();
    control::validate(&lp).unwrap();
    let mut c = control::compile(&lp, hutong::demo::DEMO_GATEWAY).unwrap();
    c.netmaps.push(Netmap {
        inside_vrf: 1,
        inside: "198.18.20.0/24".parse().unwrap(),
        outside_vrf: 0,
        outside: "10.20.0.0/24".parse().unwrap(),
    });
    c.policies.push(Rule {
        name: "bench-loop".into(),
        vrf: 1,
        src: Some("198.18.20.0/24".parse().unwrap()),
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Netmap,
    });
    // IPv6: NPTv6 both ways from the legacy VRF, and a default route to the server.
    for (inside, outside) in [("fd20::/48", "2001:db8:20::/48"), ("2001:db8:20::/48", "fd20::/48")] {
        c.nptv6.push(dataplane::Nptv6 {
            inside_vrf: 1,
            inside: inside.parse().unwrap(),
            outside_vrf: 0,
            outside: outside.parse().unwrap(),
        });
        c.policies.push(Rule {
            name: format!("bench-npt-{inside}"),
            vrf: 1,
            src: Some(inside.parse().unwrap()),
            dst: None,
            proto: None,
            src_ports: None,
            dst_ports: None,
            action: Action::Nptv6,
        });
    }
    c.ports[1].addresses.push("2001:db8:19::1/64".parse().unwrap());
    c.routes.push(dataplane::RouteConfig {
        vrf: 0,
        prefix: "::/0".parse().unwrap(),
        port: "uplink0".into(),
        via: Some(SERVER6.into()),
    });
    c
}

const SERVER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn xdp(c: &mut Criterion) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("xdp bench SKIPPED: it needs root to load the program; nothing was measured");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = Netns::create(&format!("{}-bench", lab_tag())).unwrap();
    let (legacy, uplink) = rt.block_on(async {
        let h = ns.netlink().unwrap();
        h.link().add(rtnetlink::LinkVeth::new("legacy0", "uplink0").build()).execute().await.unwrap();
        (netlink::link(&h, "legacy0").await.unwrap(), netlink::link(&h, "uplink0").await.unwrap())
    });
    let load = |config: &dataplane::Config| {
        let t = tables::build(config, |n| match n {
            "legacy0" => Some(legacy),
            "uplink0" => Some(uplink),
            _ => None,
        })
        .unwrap();
        let mut engine = XdpEngine::load().unwrap();
        let epoch = engine.install(&t).unwrap();
        engine
            .neighbor_table()
            .unwrap()
            .insert(
                NeighKey { ifindex: uplink.ifindex, addr: [198, 19, 0, 2] },
                Neigh { mac: [2; 6], _pad: [0; 2] },
                0,
            )
            .unwrap();
        engine
            .neighbor6_table()
            .unwrap()
            .insert(
                Neigh6Key { ifindex: uplink.ifindex, addr: SERVER6 },
                Neigh { mac: [2; 6], _pad: [0; 2] },
                0,
            )
            .unwrap();
        (engine, epoch)
    };
    let (engine, _) = load(&config());
    let mut napt_config = config();
    napt_config.nat_pools.push(NatPool::defaults(
        "bench".into(),
        1,
        0,
        vec!["198.18.30.0/31".parse().unwrap()],
    ));
    let (napt_engine, epoch) = load(&napt_config);
    let mut engines = [engine, napt_engine];
    let frame = |src: [u8; 4], sport: u16| {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0x20, 10], legacy.mac)
            .ipv4(src, [198, 19, 0, 2], 255)
            .tcp(sport, 443, 1, 1000)
            .ack(1);
        let mut v = Vec::new();
        b.write(&mut v, &[0; 6]).unwrap();
        v
    };
    let forward = frame([10, 20, 0, 10], 40000);
    let denied = frame([10, 20, 1, 10], 40000);
    let nptv6 = {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0x20, 10], legacy.mac)
            .ipv6([0xfd, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10], SERVER6, 255)
            .tcp(40000, 443, 1, 1000)
            .ack(1);
        let mut v = Vec::new();
        b.write(&mut v, &[0; 6]).unwrap();
        v
    };
    // 10.20.0.77:40000 <-> 198.18.30.1:1024, both arriving on the legacy port.
    let napt = frame([10, 20, 0, 77], 40000);
    let mut flows = engines[1].take_flows().unwrap();
    let ends = [([10, 20, 0, 77], 40000u16), ([198, 18, 30, 1], 1024u16)];
    for (from, to) in [(ends[0], ends[1]), (ends[1], ends[0])] {
        let key = FlowKey {
            vrf: 1,
            src: from.0,
            dst: [198, 19, 0, 2],
            sport: from.1.to_be_bytes(),
            dport: 443u16.to_be_bytes(),
            proto: 6,
            _pad: [0; 3],
        };
        let flow = Flow {
            src: to.0,
            dst: [198, 19, 0, 2],
            sport: to.1.to_be_bytes(),
            dport: 443u16.to_be_bytes(),
            ifindex: uplink.ifindex,
            nexthop: [198, 19, 0, 2],
            epoch,
            rule: 0,
            _pad: 0,
            last_seen: 0,
        };
        flows.0.insert(key, flow, 0).unwrap();
    }
    // The cases do what they claim.
    let one = ns.run(|| engines[0].test_run(&forward, legacy.ifindex)).unwrap().unwrap();
    assert_eq!(one.action, action::REDIRECT);
    let one = ns.run(|| engines[1].test_run(&napt, legacy.ifindex)).unwrap().unwrap();
    assert_eq!((one.action, &one.frame[26..30]), (action::REDIRECT, &[198, 18, 30, 1][..]));
    let one = ns.run(|| engines[0].test_run(&denied, legacy.ifindex)).unwrap().unwrap();
    assert_eq!(one.action, action::DROP);
    let one = ns.run(|| engines[0].test_run(&nptv6, legacy.ifindex)).unwrap().unwrap();
    assert_eq!((one.action, &one.frame[22..26]), (action::REDIRECT, &[0x20, 1, 0xd, 0xb8][..]));

    let mut g = c.benchmark_group("xdp");
    g.throughput(Throughput::Elements(RUNS_PER_CALL as u64));
    let cases = [
        ("netmap+route/64B", 0, &forward),
        ("napt-established/64B", 1, &napt),
        ("default-deny/64B", 0, &denied),
        ("nptv6+route/74B", 0, &nptv6),
    ];
    for (name, e, f) in cases {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let per_run = ns
                        .run(|| engines[e].test_run_repeat(f, legacy.ifindex, RUNS_PER_CALL))
                        .unwrap()
                        .unwrap();
                    total += per_run * RUNS_PER_CALL;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, xdp);
criterion_main!(benches);
