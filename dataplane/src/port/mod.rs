//! Ports: where the engine's packets come from and go to. The memory port serves tests and
//! benchmarks; AF_XDP and AF_PACKET ports come with the daemon.

pub mod afxdp;
pub mod memory;

pub use memory::MemoryPorts;
