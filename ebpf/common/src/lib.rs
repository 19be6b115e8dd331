//! Types shared by the XDP program and userspace: map keys and values, the closed list of drop
//! reasons and statistics, the checksum arithmetic both engines use, and the wire-format facts
//! (EtherTypes, protocol numbers, header bits) both engines parse by ([`wire`]).
//!
//! Every type here is `#[repr(C)]` with explicit padding, and its layout is pinned by `const`
//! assertions: the BPF program and the loader are compiled by different compilers for different
//! targets, so a silent layout change would corrupt every map lookup.
//!
//! Byte order: addresses, masks and translation targets are stored as the raw network-order bytes
//! read straight from the packet (`u32::from_ne_bytes(octets)`), so the program applies masks
//! without swapping. Keys of LPM tries are big-endian throughout because the trie matches bits
//! from the first byte on.
#![no_std]

pub mod bench;
pub mod checksum;
pub mod counters;
pub mod maps;
pub mod wire;

pub use counters::{Drop, Stat};
pub use maps::*;
