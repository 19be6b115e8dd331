//! Plan tools at three sizes (3k, 20k and 50k nodes, each county a gateway): `check` (load and
//! validate), `compile --all` and `diff` of a plan with itself. `cargo bench -p control --bench
//! plan`; docs/plan.md has the figures. The goal: near-linear growth, 50k nodes checked in
//! under 5 s, the national example's diff with itself in under 2 s.

use std::{hint::black_box, path::Path, time::Duration};

use control::generate::{Scale, generate};
use criterion::{Criterion, criterion_group, criterion_main};

fn sizes(c: &mut Criterion) {
    for (name, scale) in [("3k", Scale::NATIONAL), ("20k", Scale::NODES_20K), ("50k", Scale::NODES_50K)] {
        let g = generate(&scale).expect("within the layout");
        eprintln!(
            "{name}: {} nodes, {} gateways, {} prefixes, {:.1} MB of YAML",
            g.nodes,
            g.gateways,
            g.prefixes,
            g.yaml.len() as f64 / 1e6
        );
        let file = Path::new("generated.yaml");
        let mut group = c.benchmark_group(format!("plan_{name}"));
        group.sample_size(10).measurement_time(Duration::from_secs(if name == "3k" { 20 } else { 60 }));
        group.bench_function("check", |b| {
            b.iter(|| {
                let lp = control::load_str(black_box(&g.yaml), file).unwrap();
                control::validate(&lp).unwrap();
                lp
            })
        });
        let lp = control::load_str(&g.yaml, file).unwrap();
        group.bench_function("compile_all", |b| {
            b.iter(|| control::compile::compile_all(black_box(&lp)).unwrap().len())
        });
        let other = control::load_str(&g.yaml, file).unwrap();
        group.bench_function("diff_with_itself", |b| {
            b.iter(|| assert!(control::diff::diff(black_box(&lp), black_box(&other)).unwrap().is_empty()))
        });
        group.finish();
    }
}

criterion_group!(benches, sizes);
criterion_main!(benches);
