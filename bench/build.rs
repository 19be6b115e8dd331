//! Builds the acceptance bench's XDP programs (ebpf/bench: generator, sink, responder, ceiling)
//! for bpfel-unknown-none with the nightly toolchain and bpf-linker, into OUT_DIR, where
//! `instruments::BENCH_OBJECT` embeds them (as dataplane/build.rs does for the gateway's program).
fn main() -> anyhow::Result<()> {
    // SAFETY: a build script is single-threaded until aya-build spawns its reader threads below.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let bench = aya_build::Package {
        name: "hutong-bench-xdp",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/bench"),
        ..Default::default()
    };
    // aya-build watches the program's crate; the shared types it compiles in live next door.
    println!("cargo:rerun-if-changed={}", concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/common"));
    aya_build::build_ebpf([bench], aya_build::Toolchain::default())
}
