//! Builds the XDP program (ebpf/xdp) for bpfel-unknown-none with the nightly toolchain and
//! bpf-linker, into OUT_DIR, where `xdp::PROGRAM_OBJECT` embeds it. `scripts/setup.sh` installs the
//! toolchain pieces; without them this fails with aya-build's message naming what is missing.
fn main() -> anyhow::Result<()> {
    // aya-build forwards every line the inner cargo prints as a cargo warning; keep only the ones
    // that matter (errors and compiler warnings), not the "Compiling core" progress.
    // SAFETY: a build script is single-threaded until aya-build spawns its reader threads below.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let package = aya_build::Package {
        name: "hutong-xdp",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/xdp"),
        ..Default::default()
    };
    // aya-build watches the programs' crates; the shared types they compile in live next door.
    println!("cargo:rerun-if-changed={}", concat!(env!("CARGO_MANIFEST_DIR"), "/../ebpf/common"));
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
