//! The XDP engine's userspace side. The program itself is `ebpf/xdp`; here is everything the
//! daemon does around it:
//! - [`loader`]: load the embedded program, pin and fill its maps, attach it, read its counters;
//! - [`tables`]: a [`Config`](crate::Config) turned into the exact contents of those maps;
//! - [`flows`]: the established NAT sessions the userspace engine hands to the program;
//! - [`kernel_neighbors`]: next-hop MACs borrowed from the kernel's neighbor tables.

pub mod flows;
pub mod kernel_neighbors;
pub mod loader;
mod pin_layout;
pub mod tables;

pub use loader::{FlowTable, NeighborMaps, PROGRAM_OBJECT, TestOutcome, XdpEngine, action};
pub use pin_layout::{fnv1a, layout};
