//! The acceptance bench's programs (`ebpf/bench`): what their maps hold.

use core::mem::size_of;

/// Bytes of the header template the generator writes into every frame: Ethernet, IPv4 and UDP
/// (live frames recycle their pages, and the device under test rewrites headers in place).
pub const GEN_HEADER: usize = 42;

/// `GEN_CONFIG[0]`: the generator's template and how it varies frames over flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Ethernet + IPv4 + UDP of the first flow, checksums filled in (UDP's zero: none).
    pub header: [u8; GEN_HEADER],
    /// Source port of the first flow, host order.
    pub sport: u16,
    /// Flows: frame `i` is flow `i % flows`; flow `f` has the source address + `f % hosts`
    /// and the source port + `f / hosts`.
    pub flows: u32,
    pub hosts: u32,
}

/// `SINK_EXPECT[0]`: what a correctly forwarded frame's addresses look like (network order;
/// a zero mask matches anything).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkExpect {
    pub src: u32,
    pub src_mask: u32,
    pub dst: u32,
    pub dst_mask: u32,
}

/// `SINK_COUNTERS[0]` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// IPv4 frames whose addresses are as expected, and their bytes.
    pub good: u64,
    pub good_bytes: u64,
    /// IPv4 frames with other addresses: wrongly translated.
    pub bad: u64,
    /// Frames that are not IPv4 (the kernel's own IPv6 neighbor discovery, say).
    pub other: u64,
}

pub const MAP_GEN_CONFIG: &str = "GEN_CONFIG";
pub const MAP_SINK_EXPECT: &str = "SINK_EXPECT";
pub const MAP_SINK_COUNTERS: &str = "SINK_COUNTERS";
pub const MAP_CEILING_TX: &str = "CEILING_TX";
pub const PROGRAM_GEN: &str = "bench_gen";
pub const PROGRAM_SINK: &str = "bench_sink";
pub const PROGRAM_CEILING: &str = "bench_ceiling";

const _: () = {
    assert!(size_of::<GenConfig>() == 52);
    assert!(size_of::<SinkExpect>() == 16);
    assert!(size_of::<SinkCounters>() == 32);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers and byte arrays, no implicit padding (asserted sizes).
    unsafe impl aya::Pod for super::GenConfig {}
    unsafe impl aya::Pod for super::SinkExpect {}
    unsafe impl aya::Pod for super::SinkCounters {}
}
