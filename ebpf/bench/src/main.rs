//! The acceptance bench's XDP programs (see `hutong bench`, issue 7):
//! - `bench_gen`, run by BPF_PROG_TEST_RUN with live frames: writes the header template into
//!   every frame (live frames recycle their pages, with whatever a device under test rewrote
//!   in them), varies the source address and port over the configured flows, optionally
//!   stamps the time and waits for each frame's turn at a set rate, and transmits;
//!   (replying to learned flows instead, for session capacity: `GenConfig::reply`);
//! - `bench_sink`: counts what arrives, telling correctly translated frames from the rest,
//!   histograms stamped frames' latency, learns each tagged flow's translation, and counts
//!   frames of an earlier run apart (by their IPv4 identification);
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
    bench::{
        GEN_HEADER, GenConfig, GenState, IP_ID_AT, LATENCY_BUCKETS, Learned, SinkCounters, SinkExpect,
        TAG_AT, flow_source, latency_bucket,
    },
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
/// Each flow's translation as the sink saw it; sized by the loader where it is used (session
/// capacity), one entry otherwise.
#[map]
static LEARNED: Array<Learned> = Array::with_max_entries(1, 0);

/// Clock reads one invocation spends waiting for its frame's time (about 15 µs here) before it
/// gives up and sends nothing: the verifier walks every iteration, so the bound stays small.
const SPIN: u32 = 512;
/// How far (in frames) a paced generator that fell behind may catch up in a burst.
const CATCH_UP: u64 = 32;

/// A pointer to `T` at `offset` in the frame, or `None` if the frame is too short: the range is
/// checked against `data_end`, as the verifier wants before any access.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    if ctx.data() + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((ctx.data() + offset) as *mut T)
}

/// The `N` bytes at `offset` in the frame, or `None` if the frame is too short.
#[inline(always)]
fn load<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let p = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: `ptr_at` checked [offset, offset + N) against data_end: the bytes are the frame's,
    // readable for this whole run; bytes have no alignment and no invalid values.
    Some(unsafe { *p })
}

/// Writes `bytes` at `offset` in the frame, or `None` (nothing written) if it is too short.
#[inline(always)]
fn store<const N: usize>(ctx: &XdpContext, offset: usize, bytes: [u8; N]) -> Option<()> {
    let p = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: `ptr_at` checked [offset, offset + N) against data_end: the bytes are the frame's,
    // which an XDP program may write; no reference into the frame is held.
    unsafe { *p = bytes };
    Some(())
}

/// The time (ns since boot, `CLOCK_MONOTONIC`).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: a BPF helper with no memory arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let (Some(c), Some(st)) = (GEN_CONFIG.get(0), GEN_STATE.get_ptr_mut(0)) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(hdr) = ptr_at::<[u8; GEN_HEADER]>(&ctx, 0) else { return xdp_action::XDP_ABORTED };
    // SAFETY: a per-CPU array's slot, from its lookup: valid for this run, and no other CPU, nor
    // another run (XDP runs to completion on its CPU), touches it while this reference lives.
    let st = unsafe { &mut *st };
    if c.limit != 0 && st.sent >= c.limit {
        return xdp_action::XDP_DROP; // done: the rest of the run's invocations send nothing
    }
    // At full rate and unstamped the clock is not read: the ceiling stays the generator's.
    let timed = c.interval_ns != 0 || c.stamp != 0;
    let mut now = if timed { now() } else { 0 };
    if c.interval_ns != 0 {
        if st.due == 0 {
            st.due = now;
        }
        for _ in 0..SPIN {
            if now >= st.due {
                break;
            }
            now = self::now();
        }
        if now < st.due {
            return xdp_action::XDP_DROP; // not yet: this invocation sends nothing
        }
        // Behind by more than a short burst: start counting from now, the offered rate is then
        // lower than asked, and the harness measures what was offered.
        st.due = if now - st.due > CATCH_UP * c.interval_ns { now } else { st.due } + c.interval_ns;
    }
    let flows = if c.flows == 0 { 1 } else { c.flows as u64 };
    let f = c.first_flow.wrapping_add(st.sent) % flows;
    st.sent += 1;
    if timed {
        if st.first == 0 {
            st.first = now;
        }
        st.last = now;
    }
    let mut h = c.header;
    // The address (source 26..30, or a reply's destination 30..34) and port (34..36 or
    // 36..38) that make the flow, with the IPv4 header checksum (24..26) kept right
    // incrementally; the UDP checksum stays zero (none).
    let old = if c.reply != 0 {
        u32::from_ne_bytes([h[30], h[31], h[32], h[33]])
    } else {
        u32::from_ne_bytes([h[26], h[27], h[28], h[29]])
    };
    let (addr, port) = if c.reply != 0 {
        match LEARNED.get(f as u32) {
            Some(l) if l.addr != 0 => (l.addr, l.port),
            _ => return xdp_action::XDP_DROP, // never learned: nothing to reply to
        }
    } else {
        let (host, port) = flow_source(f, c.hosts);
        ((u32::from_be(old).wrapping_add(host)).to_be(), c.sport.wrapping_add(port))
    };
    let csum = checksum::replace4(u16::from_ne_bytes([h[24], h[25]]), old, addr);
    let [a, b, c2, d] = addr.to_ne_bytes();
    [h[24], h[25]] = csum.to_ne_bytes();
    let [p0, p1] = port.to_be_bytes();
    if c.reply != 0 {
        (h[30], h[31], h[32], h[33]) = (a, b, c2, d);
        (h[36], h[37]) = (p0, p1);
    } else {
        (h[26], h[27], h[28], h[29]) = (a, b, c2, d);
        (h[34], h[35]) = (p0, p1);
    }
    // SAFETY: `ptr_at` checked [0, GEN_HEADER) against data_end above, and the frame has not
    // moved since (no head adjustment); written as bytes, no alignment needed.
    unsafe { hdr.write_unaligned(h) };
    // A frame too short for the stamp or the tag goes without (`store` writes nothing).
    if c.stamp != 0 {
        let _ = store(&ctx, GEN_HEADER, now.to_ne_bytes());
    }
    if c.tag != 0 {
        let _ = store(&ctx, TAG_AT, (f as u32).to_ne_bytes());
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_sink(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let Some(c) = SINK_COUNTERS.get_ptr_mut(0) else { return xdp_action::XDP_DROP };
    let Some(e) = SINK_EXPECT.get(0) else { return xdp_action::XDP_DROP };
    // Some(true): IPv4 as expected; Some(false): IPv4 otherwise; None: not IPv4 (or too short
    // for its UDP ports).
    let mut tag = None;
    let mut source = (0, 0);
    let mut late = false;
    let verdict = match load::<38>(&ctx, 0) {
        Some(f) if f[12] == 0x08 && f[13] == 0x00 => {
            let id = u16::from_be_bytes([f[IP_ID_AT], f[IP_ID_AT + 1]]);
            late = e.by_run != 0 && id != e.run;
            let src = u32::from_ne_bytes([f[26], f[27], f[28], f[29]]);
            let dst = u32::from_ne_bytes([f[30], f[31], f[32], f[33]]);
            source = (src, u16::from_be_bytes([f[34], f[35]]));
            if e.reply_hosts != 0 || e.learn != 0 {
                tag = load::<4>(&ctx, TAG_AT).map(u32::from_ne_bytes);
            }
            let mut expected = src & e.src_mask == e.src;
            if e.reply_hosts == 0 {
                expected &= dst & e.dst_mask == e.dst;
            } else {
                // A reply goes back exactly to the flow it answers, or it is wrong.
                let dport = u16::from_be_bytes([f[36], f[37]]);
                expected &= tag.is_some_and(|t| {
                    let (host, port) = flow_source(t as u64, e.reply_hosts);
                    dst == u32::from_be(e.dst).wrapping_add(host).to_be()
                        && dport == e.reply_port.wrapping_add(port)
                });
            }
            Some(expected)
        }
        _ => None,
    };
    // SAFETY: `c`, a per-CPU array's slot from its lookup: valid for this run, and no other CPU,
    // nor another run (XDP runs to completion on its CPU), touches it meanwhile. `l`, a
    // `LEARNED` entry from its lookup: an array's, valid for this run; shared by the CPUs, but
    // a flow's frames that reach two CPUs at once write the same translation to it.
    unsafe {
        match verdict {
            Some(_) if late => (*c).late += 1,
            Some(true) => {
                (*c).good += 1;
                (*c).good_bytes += len;
                if e.stamped != 0 {
                    latency(&ctx);
                }
                if e.learn != 0
                    && let Some(t) = tag
                    && let Some(l) = LEARNED.get_ptr_mut(t)
                {
                    if (*l).addr == 0 {
                        (*c).learned += 1;
                    }
                    (*l).addr = source.0;
                    (*l).port = source.1;
                }
            }
            Some(false) => (*c).bad += 1,
            None => (*c).other += 1,
        }
    }
    xdp_action::XDP_DROP
}

/// A good, stamped frame's latency into its histogram bucket.
#[inline(always)]
fn latency(ctx: &XdpContext) {
    let Some(t) = load::<8>(ctx, GEN_HEADER) else { return };
    let sent = u64::from_ne_bytes(t);
    if sent == 0 {
        return; // an unstamped run's frame (each run's pages start as its zeroed template)
    }
    if let Some(b) = SINK_LATENCY.get_ptr_mut(latency_bucket(now().saturating_sub(sent))) {
        // SAFETY: a per-CPU array's slot, as in `bench_sink`: valid, and written by this run alone.
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
