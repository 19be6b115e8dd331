//! The `hutong` binary's library: the gateway daemon (its API, slow path, history, pins). The
//! namespace lab, the demo and the showcase are the `hutong-lab` crate; the bench `hutong-bench`.

pub mod addresses;
pub mod api;
pub mod audit;
pub mod files;
pub mod fleet;
pub mod gateway;
pub mod hex;
pub mod history;
pub mod pidfile;
pub mod pins;
pub mod rule_hits;
pub mod slow_path;
pub mod vlan_host;

// The namespace lab, the demo and the showcase are their own crate (`lab/`); the tests and
// `hutong demo` reach them here, as before.
pub use hutong_lab::{self as lab, demo, showcase};
// The acceptance bench (harness, instruments, their XDP programs) is the `hutong-bench` crate.
pub use hutong_bench as bench;
