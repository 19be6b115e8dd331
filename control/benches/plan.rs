//! The national-scale synthetic plan (34 provinces, 2,720 counties, about 100k prefixes):
//! parse, validate and compile every gateway. `cargo bench -p control --bench plan`; the goal
//! is under 2 s and 1 GiB for all of it (memory: `/usr/bin/time -v hutong plan compile ... --all`,
//! see the README).

use std::{hint::black_box, path::Path, time::Duration};

use control::generate::{Scale, generate};
use criterion::{Criterion, criterion_group, criterion_main};

fn national(c: &mut Criterion) {
    let g = generate(&Scale::NATIONAL).expect("the national scale is within the layout");
    eprintln!("national plan: {} nodes, {} gateways, {} prefixes", g.nodes, g.gateways, g.prefixes);
    let file = Path::new("national.yaml");
    let mut group = c.benchmark_group("national");
    group.sample_size(10).measurement_time(Duration::from_secs(35));
    group.bench_function("load", |b| b.iter(|| control::load_str(black_box(&g.yaml), file).unwrap()));
    let lp = control::load_str(&g.yaml, file).unwrap();
    group.bench_function("validate", |b| b.iter(|| control::validate(black_box(&lp)).unwrap()));
    group.bench_function("compile_all", |b| {
        b.iter(|| control::compile::compile_all(black_box(&lp)).unwrap().len())
    });
    group.bench_function("load_validate_compile_all", |b| {
        b.iter(|| {
            let lp = control::load_str(black_box(&g.yaml), file).unwrap();
            control::validate(&lp).unwrap();
            control::compile::compile_all(&lp).unwrap().len()
        })
    });
    group.finish();
}

criterion_group!(benches, national);
criterion_main!(benches);
