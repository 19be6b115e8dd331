//! Per-stage and whole-pipeline benchmarks of the userspace engine, one core, 64-byte frames.
//! `cargo bench --bench dataplane`; criterion reports time per batch and elements/s (packets or
//! lookups per second). The README records the figures next to the goals.

use std::{hint::black_box, net::Ipv4Addr};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::{
    buffer::Packet,
    engine::{Engine, Iface},
    fib::Lpm4,
};
use etherparse::PacketBuilder;
use ipnet::Ipv4Net;
use rand::{Rng, SeedableRng, rngs::SmallRng};

const L_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const U_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x22];
const BATCH: usize = 256;

fn demo_engine() -> Engine {
    let lp = control::load_str(hutong::demo::DEMO_PLAN, std::path::Path::new("plan.yaml")).unwrap();
    control::validate(&lp).unwrap();
    let config = control::compile(&lp, hutong::demo::DEMO_GATEWAY).unwrap();
    let ifaces =
        vec![Iface { name: "legacy0".into(), mac: L_MAC }, Iface { name: "uplink0".into(), mac: U_MAC }];
    let mut e = Engine::new(config, ifaces).unwrap();
    e.set_neighbor(1, None, "198.19.0.2".parse().unwrap(), [2, 0, 0, 0, 0x19, 2]);
    e
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
    g.finish();
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
    g.finish();
}

criterion_group!(benches, pipeline, parse, lpm);
criterion_main!(benches);
