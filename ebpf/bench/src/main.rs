//! The acceptance bench's XDP programs (see `hutong bench`, issue 7):
//! - `bench_gen`, run by BPF_PROG_TEST_RUN with live frames: writes the header template into
//!   every frame (live frames recycle their pages, with whatever a device under test rewrote
//!   in them), varies the source address and port over the configured flows, optionally
//!   stamps the time and waits for each frame's turn at a set rate, and transmits;
//! - `bench_sink`: counts what arrives, telling correctly translated frames from the rest, and
//!   histograms stamped frames' latency;
//! - `bench_ceiling`: the raw XDP ceiling, a redirect to the one port in `CEILING_TX`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, DevMap, PerCpuArray},
    programs::XdpContext,
};
use hutong_common::{
    bench::{GEN_HEADER, GenConfig, GenState, LATENCY_BUCKETS, SinkCounters, SinkExpect, latency_bucket},
    checksum,
};

#[map]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(1, 0);
/// Where the run stands on each CPU: frames sent, the next frame's time, the first and last.
#[map]
static GEN_STATE: PerCpuArray<GenState> = PerCpuArray::with_max_entries(1, 0);
#[map]
static SINK_EXPECT: Array<SinkExpect> = Array::with_max_entries(1, 0);
#[map]
static SINK_COUNTERS: PerCpuArray<SinkCounters> = PerCpuArray::with_max_entries(1, 0);
#[map]
static SINK_LATENCY: PerCpuArray<u64> = PerCpuArray::with_max_entries(LATENCY_BUCKETS, 0);
#[map]
static CEILING_TX: DevMap = DevMap::with_max_entries(1, 0);

/// Clock reads one invocation spends waiting for its frame's time (about 15 µs here) before it
/// gives up and sends nothing: the verifier walks every iteration, so the bound stays small.
const SPIN: u32 = 512;
/// How far (in frames) a paced generator that fell behind may catch up in a burst.
const CATCH_UP: u64 = 32;

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    if ctx.data() + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((ctx.data() + offset) as *mut T)
}

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let (Some(c), Some(st)) = (GEN_CONFIG.get(0), GEN_STATE.get_ptr_mut(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(hdr) = ptr_at::<[u8; GEN_HEADER]>(&ctx, 0) else { return xdp_action::XDP_ABORTED };
    // Per CPU: no other CPU touches this state.
    let st = unsafe { &mut *st };
    if c.limit != 0 && st.sent >= c.limit {
        return xdp_action::XDP_DROP; // done: the rest of the run's invocations send nothing
    }
    // At full rate and unstamped the clock is not read: the ceiling stays the generator's.
    let timed = c.interval_ns != 0 || c.stamp != 0;
    let mut now = if timed { unsafe { bpf_ktime_get_ns() } } else { 0 };
    if c.interval_ns != 0 {
        if st.due == 0 {
            st.due = now;
        }
        for _ in 0..SPIN {
            if now >= st.due {
                break;
            }
            now = unsafe { bpf_ktime_get_ns() };
        }
        if now < st.due {
            return xdp_action::XDP_DROP; // not yet: this invocation sends nothing
        }
        // Behind by more than a short burst: start counting from now, the offered rate is then
        // lower than asked, and the harness measures what was offered.
        st.due = if now - st.due > CATCH_UP * c.interval_ns { now } else { st.due } + c.interval_ns;
    }
    let flows = if c.flows == 0 { 1 } else { c.flows as u64 };
    let hosts = if c.hosts == 0 { 1 } else { c.hosts as u64 };
    let f = c.first_flow.wrapping_add(st.sent) % flows;
    st.sent += 1;
    if timed {
        if st.first == 0 {
            st.first = now;
        }
        st.last = now;
    }
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
    if c.stamp != 0
        && let Some(t) = ptr_at::<[u8; 8]>(&ctx, GEN_HEADER)
    {
        unsafe { t.write_unaligned(now.to_ne_bytes()) };
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let Some(c) = SINK_COUNTERS.get_ptr_mut(0) else { return xdp_action::XDP_DROP };
    // Some((true, stamped)): IPv4 as expected; Some((false, _)): IPv4 otherwise; None: not IPv4.
    let verdict = match (ptr_at::<[u8; 34]>(&ctx, 0), SINK_EXPECT.get(0)) {
        (Some(f), Some(e)) => {
            let f = unsafe { *f };
            let src = u32::from_ne_bytes([f[26], f[27], f[28], f[29]]);
            let dst = u32::from_ne_bytes([f[30], f[31], f[32], f[33]]);
            let expected = src & e.src_mask == e.src && dst & e.dst_mask == e.dst;
            (f[12] == 0x08 && f[13] == 0x00).then_some((expected, e.stamped != 0))
        }
        _ => None,
    };
    // Per CPU: no other CPU touches these counters.
    unsafe {
        match verdict {
            Some((true, stamped)) => {
                (*c).good += 1;
                (*c).good_bytes += len;
                if stamped {
                    latency(&ctx);
                }
            }
            Some((false, _)) => (*c).bad += 1,
            None => (*c).other += 1,
        }
    }
    xdp_action::XDP_DROP
}

/// A good, stamped frame's latency into its histogram bucket.
#[inline(always)]
fn latency(ctx: &XdpContext) {
    let Some(t) = ptr_at::<[u8; 8]>(ctx, GEN_HEADER) else { return };
    let sent = u64::from_ne_bytes(unsafe { *t });
    if sent == 0 {
        return; // an unstamped run's frame (each run's pages start as its zeroed template)
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(b) = SINK_LATENCY.get_ptr_mut(latency_bucket(now.saturating_sub(sent))) {
        unsafe { *b += 1 };
    }
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
