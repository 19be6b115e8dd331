//! Helpers shared by the system tests.
// Each test crate compiles this module on its own and uses only part of it.
#![allow(dead_code)]

/// Kernel-level tests need root (XDP, network namespaces). Without it they fail loudly rather than
/// pass quietly: `make test` runs them as root, and CI is root.
pub fn require_root(test: &str) {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "{test} needs root (it loads XDP programs and creates network namespaces); run `sudo make test`"
        );
    }
}

/// The demo plan compiled for its gateway, exactly as `hutong plan compile` does.
pub fn demo_config() -> dataplane::Config {
    let lp = control::load_str(hutong::demo::DEMO_PLAN, std::path::Path::new("configs/demo/plan.yaml"))
        .expect("demo plan parses");
    control::validate(&lp).expect("demo plan is valid");
    control::compile(&lp, hutong::demo::DEMO_GATEWAY).expect("demo plan compiles")
}
