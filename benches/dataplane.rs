//! Per-stage and whole-pipeline benchmarks of the userspace engine, one core, 64-byte frames.
//! `cargo bench --bench dataplane`; criterion reports time per batch and elements/s (packets or
//! lookups per second). `docs/performance.md` records the figures next to the goals.

use std::{hint::black_box, net::Ipv4Addr};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::{
    Action, Config, Rule,
    buffer::Packet,
    config::NatPool,
    engine::{Engine, Iface},
    fib::Lpm4,
    nat::sessions::Table,
};
use etherparse::PacketBuilder;
use ipnet::Ipv4Net;
use rand::{Rng, SeedableRng, rngs::SmallRng};

const L_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const U_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x22];
const BATCH: usize = 256;

fn demo_config() -> Config {
    let lp = control::load_str(hutong::demo::DEMO_PLAN, std::path::Path::new("plan.yaml")).unwrap();
    control::validate(&lp).unwrap();
    control::compile(&lp, hutong::demo::DEMO_GATEWAY).unwrap()
}

fn engine_for(config: Config) -> Engine {
    let ifaces =
        vec![Iface { name: "legacy0".into(), mac: L_MAC }, Iface { name: "uplink0".into(), mac: U_MAC }];
    let mut e = Engine::new(config, ifaces).unwrap();
    e.set_neighbor(1, None, "198.19.0.2".parse().unwrap(), [2, 0, 0, 0, 0x19, 2]);
    e
}

fn demo_engine() -> Engine {
    engine_for(demo_config())
}

/// The demo gateway doing NAPT for its legacy network onto a /24 of plan addresses.
fn napt_config() -> Config {
    let mut c = demo_config();
    c.ports[0].addresses = vec!["10.20.0.1/16".parse().unwrap()];
    c.nat_pools = vec![NatPool::defaults("city".into(), 1, 0, vec!["198.18.30.0/24".parse().unwrap()])];
    c.policies = vec![Rule {
        name: "napt".into(),
        vrf: 1,
        src: Some("10.20.0.0/16".parse().unwrap()),
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Napt { pool: "city".into() },
    }];
    c
}

/// Flow `i` of a NAPT benchmark: hosts 10.20.x.y, 400 source ports each.
fn flow(i: u32) -> ([u8; 4], u16) {
    let host = 256 + i / 400; // skip 10.20.0.x so the gateway's own .1 is never a source
    ([10, 20, (host >> 8) as u8, host as u8], 10_000 + (i % 400) as u16)
}

/// A 60-byte frame (64 on the wire with the FCS): Ethernet, IPv4, UDP, 18 bytes of payload.
fn frame64(src: [u8; 4], sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0x20, 0x0a], L_MAC)
        .ipv4(src, [198, 19, 0, 2], 64)
        .udp(sport, 53);
    let mut v = Vec::new();
    b.write(&mut v, &[0; 18]).unwrap();
    assert_eq!(v.len(), 60);
    v
}

fn pipeline(c: &mut Criterion) {
    let mut engine = demo_engine();
    let template: Vec<Packet> = (0..BATCH)
        .map(|i| Packet::new(0, &frame64([10, 20, 0, (i % 250 + 1) as u8], 1024 + i as u16)))
        .collect();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("netmap+route/64B", |b| {
        b.iter_batched_ref(|| template.clone(), |batch| engine.process(batch, 0), BatchSize::SmallInput)
    });
    let denied: Vec<Packet> =
        (0..BATCH).map(|i| Packet::new(0, &frame64([10, 20, 1, (i % 250) as u8], 9))).collect();
    g.bench_function("default-deny/64B", |b| {
        b.iter_batched_ref(|| denied.clone(), |batch| engine.process(batch, 0), BatchSize::SmallInput)
    });
    // IPv6 through NPTv6 (fd20::/48 → 2001:db8:20::/48) and a default route: 74-byte frames.
    let mut c6 = demo_config();
    c6.ports[1].addresses.push("2001:db8:19::1/64".parse().unwrap());
    c6.nptv6.push(dataplane::Nptv6 {
        inside_vrf: 1,
        inside: "fd20::/48".parse().unwrap(),
        outside_vrf: 0,
        outside: "2001:db8:20::/48".parse().unwrap(),
    });
    c6.routes.push(dataplane::RouteConfig {
        vrf: 0,
        prefix: "::/0".parse().unwrap(),
        port: "uplink0".into(),
        via: Some("2001:db8:19::2".parse().unwrap()),
    });
    c6.policies.push(Rule {
        name: "npt".into(),
        vrf: 1,
        src: Some("fd20::/48".parse().unwrap()),
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Nptv6,
    });
    let mut engine6 = engine_for(c6);
    engine6.set_neighbor(1, None, "2001:db8:19::2".parse().unwrap(), [2, 0, 0, 0, 0x19, 2]);
    let server6: std::net::Ipv6Addr = "2001:db8:19::2".parse().unwrap();
    let six: Vec<Packet> = (0..BATCH)
        .map(|i| {
            let mut src = [0xfd, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            src[15] = (i % 250 + 1) as u8;
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0x20, 0x0a], L_MAC)
                .ipv6(src, server6.octets(), 64)
                .udp(1024 + i as u16, 53);
            let mut v = Vec::new();
            b.write(&mut v, &[0; 12]).unwrap();
            Packet::new(0, &v)
        })
        .collect();
    g.bench_function("nptv6+route/74B", |b| {
        b.iter_batched_ref(|| six.clone(), |batch| engine6.process(batch, 0), BatchSize::SmallInput)
    });
    g.finish();
}

/// NAPT with 100k established flows, and the rate at which new sessions are set up.
fn napt(c: &mut Criterion) {
    const FLOWS: u32 = 100_000;
    let mut engine = engine_for(napt_config());
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| {
            let (src, sport) = flow(i);
            frame64(src, sport)
        })
        .collect();
    for chunk in frames.chunks(256) {
        let mut batch: Vec<Packet> = chunk.iter().map(|f| Packet::new(0, f)).collect();
        engine.process(&mut batch, 0);
    }
    assert_eq!(engine.nat().sessions().len(), FLOWS as usize);
    let mut rng = SmallRng::seed_from_u64(11);
    let template: Vec<Packet> =
        (0..BATCH).map(|_| Packet::new(0, &frames[rng.random_range(0..FLOWS as usize)])).collect();
    let mut g = c.benchmark_group("napt");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("established-100k-flows/64B", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |batch| engine.process(batch, 1_000_000_000),
            BatchSize::SmallInput,
        )
    });
    // New sessions: every packet opens one. A fresh engine is built (untimed) whenever the
    // previous one has used its hosts' port blocks.
    let new_frames: Vec<Packet> = (0..200_000)
        .map(|i| {
            let (src, sport) = flow(i);
            Packet::new(0, &frame64(src, sport))
        })
        .collect();
    g.bench_function("new-sessions/64B", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut e = engine_for(napt_config());
            let mut next = 0usize;
            for _ in 0..iters {
                if next + BATCH > new_frames.len() {
                    e = engine_for(napt_config());
                    next = 0;
                }
                let mut batch = new_frames[next..next + BATCH].to_vec();
                next += BATCH;
                let t = std::time::Instant::now();
                e.process(&mut batch, 0);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    let table = Table::new(1 << 20);
    eprintln!("napt: session state {} bytes per session at capacity", table.bytes_per_session());
}

/// Our one-pass parser against etherparse's slicer on the same frame (DESIGN: keep the faster).
fn parse(c: &mut Criterion) {
    let f = frame64([10, 20, 0, 10], 4000);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hutong", |b| b.iter(|| dataplane::packet::parse(black_box(&f)).unwrap()));
    g.bench_function("etherparse", |b| {
        b.iter(|| etherparse::SlicedPacket::from_ethernet(black_box(&f)).unwrap())
    });
    g.finish();
}

/// IPv4 LPM with 1M prefixes shaped like a routing table (mostly /24, some /16-/23, a few
/// longer), looked up at random addresses.
fn lpm(c: &mut Criterion) {
    let mut rng = SmallRng::seed_from_u64(7);
    let routes: Vec<(Ipv4Net, u32)> = (0..1_000_000u32)
        .map(|i| {
            let len = match rng.random_range(0..100) {
                0..60 => 24,
                60..90 => rng.random_range(16..24),
                90..98 => rng.random_range(8..16),
                _ => rng.random_range(25..=32),
            };
            (Ipv4Net::new(Ipv4Addr::from(rng.random::<u32>()), len).unwrap().trunc(), i % 1000)
        })
        .collect();
    // Probes inside installed prefixes reach the deeper levels; random ones mostly stop at the
    // first, so both are measured.
    let inside: Vec<u32> = routes
        .iter()
        .step_by(250)
        .map(|(n, _)| u32::from(n.network()) | (rng.random::<u32>() & !u32::from(n.netmask())))
        .collect();
    let t = Lpm4::build(routes);
    eprintln!("lpm: 1M prefixes, {} MiB of tables", t.memory() >> 20);
    let probes: Vec<u32> = (0..4096).map(|_| rng.random()).collect();
    let mut g = c.benchmark_group("lpm4");
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("1M-prefixes/random", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for p in &probes {
                hits = hits.wrapping_add(t.lookup(black_box(*p)).unwrap_or(0));
            }
            hits
        })
    });
    g.throughput(Throughput::Elements(inside.len() as u64));
    g.bench_function("1M-prefixes/addresses-in-prefixes", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for p in &inside {
                hits = hits.wrapping_add(t.lookup(black_box(*p)).unwrap_or(0));
            }
            hits
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline, napt, parse, lpm);
criterion_main!(benches);
