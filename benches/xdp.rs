//! ns/packet of the XDP program in the kernel (BPF_PROG_TEST_RUN with a repeat count), per case,
//! to set beside the userspace engine's figures from `benches/dataplane.rs`. Needs root (it loads
//! the program and makes a network namespace); without it, it says so and measures nothing.
//!
//! The kernel runs the program repeatedly on one buffer, so rewrites accumulate. The forwarding
//! case therefore uses a config whose netmaps map 10.20.0.0/24 and 198.18.20.0/24 onto each other
//! in both directions: every run translates the previous run's output back, and TTL 255 leaves
//! room for the 200 runs of one call before the slow path would take over.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::{
    Action, Netmap, Rule, netlink, tables,
    xdp::{XdpEngine, action},
};
use etherparse::PacketBuilder;
use hutong::lab::{Netns, netns::lab_tag};
use hutong_common::{Neigh, NeighKey};

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
    c
}

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
    let t = tables::build(&config(), |n| match n {
        "legacy0" => Some(legacy),
        "uplink0" => Some(uplink),
        _ => None,
    })
    .unwrap();
    let mut engine = XdpEngine::load().unwrap();
    engine.install(&t).unwrap();
    engine
        .neighbor_table()
        .unwrap()
        .insert(
            NeighKey { ifindex: uplink.ifindex, addr: [198, 19, 0, 2] },
            Neigh { mac: [2; 6], _pad: [0; 2] },
            0,
        )
        .unwrap();
    let frame = |src: [u8; 4]| {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0x20, 10], legacy.mac)
            .ipv4(src, [198, 19, 0, 2], 255)
            .udp(40000, 53);
        let mut v = Vec::new();
        b.write(&mut v, &[0; 18]).unwrap();
        v
    };
    let forward = frame([10, 20, 0, 10]);
    let denied = frame([10, 20, 1, 10]);
    // The cases do what they claim.
    let one = ns.run(|| engine.test_run(&forward, legacy.ifindex)).unwrap().unwrap();
    assert_eq!(one.action, action::REDIRECT);
    let one = ns.run(|| engine.test_run(&denied, legacy.ifindex)).unwrap().unwrap();
    assert_eq!(one.action, action::DROP);

    let mut g = c.benchmark_group("xdp");
    g.throughput(Throughput::Elements(RUNS_PER_CALL as u64));
    for (name, f) in [("netmap+route/64B", &forward), ("default-deny/64B", &denied)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let per_run =
                        ns.run(|| engine.test_run_repeat(f, legacy.ifindex, RUNS_PER_CALL)).unwrap().unwrap();
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
