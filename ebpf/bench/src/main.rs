//! The acceptance bench's XDP programs (see `hutong bench`, issue 7):
//! - `bench_gen`, run by BPF_PROG_TEST_RUN with live frames: writes the header template into
//!   every frame (live frames recycle their pages, with whatever a device under test rewrote
//!   in them), varies the source address and port over the configured flows, and transmits;
//! - `bench_sink`: counts what arrives, telling correctly translated frames from the rest;
//! - `bench_ceiling`: the raw XDP ceiling, a redirect to the one port in `CEILING_TX`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, DevMap, PerCpuArray},
    programs::XdpContext,
};
use hutong_common::{
    bench::{GEN_HEADER, GenConfig, SinkCounters, SinkExpect},
    checksum,
};

#[map]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);
/// Frames generated on each CPU: the next frame's flow.
#[map]
static GEN_NEXT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
#[map]
static SINK_EXPECT: Array<SinkExpect> = Array::with_max_entries(1, 0);
#[map]
static SINK_COUNTERS: PerCpuArray<SinkCounters> = PerCpuArray::with_max_entries(1, 0);
#[map]
static CEILING_TX: DevMap = DevMap::with_max_entries(1, 0);

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    if ctx.data() + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((ctx.data() + offset) as *mut T)
}

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let (Some(c), Some(next)) = (GEN_CONFIG.get(0), GEN_NEXT.get_ptr_mut(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(hdr) = ptr_at::<[u8; GEN_HEADER]>(&ctx, 0) else { return xdp_action::XDP_ABORTED };
    // Per CPU: no other CPU touches this counter.
    let i = unsafe {
        let i = *next;
        *next = i.wrapping_add(1);
        i
    };
    let flows = if c.flows == 0 { 1 } else { c.flows as u64 };
    let hosts = if c.hosts == 0 { 1 } else { c.hosts as u64 };
    let f = i % flows;
    let mut h = c.header;
    // Source address (bytes 26..30) and port (34..36), with the IPv4 header checksum (24..26)
    // kept right incrementally; the UDP checksum stays zero (none).
    let old = u32::from_ne_bytes([h[26], h[27], h[28], h[29]]);
    let src = (u32::from_be(old).wrapping_add((f % hosts) as u32)).to_be();
    let csum = checksum::replace4(u16::from_ne_bytes([h[24], h[25]]), old, src);
    let [a, b, c2, d] = src.to_ne_bytes();
    (h[26], h[27], h[28], h[29]) = (a, b, c2, d);
    [h[24], h[25]] = csum.to_ne_bytes();
    [h[34], h[35]] = c.sport.wrapping_add((f / hosts) as u16).to_be_bytes();
    unsafe { hdr.write_unaligned(h) };
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let Some(c) = SINK_COUNTERS.get_ptr_mut(0) else { return xdp_action::XDP_DROP };
    // Some(true): IPv4 as expected; Some(false): IPv4 otherwise; None: not IPv4.
    let verdict = match (ptr_at::<[u8; 34]>(&ctx, 0), SINK_EXPECT.get(0)) {
        (Some(f), Some(e)) => {
            let f = unsafe { *f };
            let src = u32::from_ne_bytes([f[26], f[27], f[28], f[29]]);
            let dst = u32::from_ne_bytes([f[30], f[31], f[32], f[33]]);
            (f[12] == 0x08 && f[13] == 0x00).then_some(src & e.src_mask == e.src && dst & e.dst_mask == e.dst)
        }
        _ => None,
    };
    // Per CPU: no other CPU touches these counters.
    unsafe {
        match verdict {
            Some(true) => {
                (*c).good += 1;
                (*c).good_bytes += len;
            }
            Some(false) => (*c).bad += 1,
            None => (*c).other += 1,
        }
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_ceiling(_ctx: XdpContext) -> u32 {
    CEILING_TX.redirect(0, 0).unwrap_or(xdp_action::XDP_ABORTED)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
