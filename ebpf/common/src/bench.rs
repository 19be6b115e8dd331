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
    /// Non-zero: every frame carries the time it was made (`bpf_ktime_get_ns`, native order) in
    /// the 8 bytes after the header, for the sink's latency histogram.
    pub stamp: u8,
    /// Non-zero: every frame carries its flow's number at [`TAG_AT`] (u32, native order), which
    /// translation leaves alone: the sink learns each flow's translation by it, and replies
    /// are checked against the flow they answer.
    pub tag: u8,
    /// Non-zero: replies to learned flows (session capacity's validation, RFC 9693): flow `f`'s
    /// destination address and port are `LEARNED[f]`'s (what the device translated the
    /// flow's source to), not varied; a flow never learned is counted sent but not sent.
    pub reply: u8,
    pub pad: u8,
    /// Nanoseconds between frames; 0 sends at full rate. The program waits for each frame's
    /// time itself (a bounded spin, then a frame not sent), so frames leave evenly spaced
    /// instead of in the bursts a paced series of runs would make.
    pub interval_ns: u64,
    /// Frames to send in all, counted in `GEN_STATE`; the invocations after that send nothing.
    pub limit: u64,
    /// The first frame's flow: frame `n` of a run is flow `first_flow + n`.
    pub first_flow: u64,
}

impl GenConfig {
    /// Frames from `header`, varied over `flows` flows of `hosts` hosts from source port
    /// `sport`; how a run sends (rate, stamps, count, first flow) is set per run.
    pub const fn new(header: [u8; GEN_HEADER], sport: u16, flows: u32, hosts: u32) -> GenConfig {
        GenConfig {
            header,
            sport,
            flows,
            hosts,
            stamp: 0,
            tag: 0,
            reply: 0,
            pad: 0,
            interval_ns: 0,
            limit: 0,
            first_flow: 0,
        }
    }
}

/// Where a tagged frame carries its flow's number: after the header and the time stamp.
pub const TAG_AT: usize = GEN_HEADER + 8;

/// Flow `f`'s source as the generator varies it over `hosts` hosts: (added to the template's
/// address, added to its port).
#[inline(always)]
pub fn flow_source(f: u64, hosts: u32) -> (u32, u16) {
    let hosts = if hosts == 0 { 1 } else { hosts as u64 };
    ((f % hosts) as u32, (f / hosts) as u16)
}

/// `LEARNED[f]`: where the device under test translated flow `f`'s source to (network order
/// address, host order port), as the sink saw it; all zero until then.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    pub addr: u32,
    pub port: u16,
    pub pad: u16,
}

/// `GEN_STATE[0]` (per CPU; the harness keeps a run on one CPU): where a run stands.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenState {
    /// Frames sent, and the next frame's time (0: not started).
    pub sent: u64,
    pub due: u64,
    /// When the first and the last frame were sent.
    pub first: u64,
    pub last: u64,
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
    /// Non-zero: good frames carry the generator's time stamp; their latency is histogrammed.
    pub stamped: u32,
    /// Non-zero: the frames are replies to the generator's flows (tagged), and a good one goes
    /// exactly to the flow it answers, whatever `dst_mask` says: to address `dst` and port
    /// `reply_port`, each plus its part of the tag's [`flow_source`] over `reply_hosts` hosts.
    pub reply_hosts: u32,
    pub reply_port: u16,
    /// Non-zero: a good tagged frame's source address and port are remembered as its flow's
    /// translation (`LEARNED`), for the replies.
    pub learn: u16,
    /// Non-zero: only frames whose IPv4 identification is `run` belong to the run being
    /// counted (the harness writes each run's into the generator's template); a frame of an
    /// earlier run, released late from a device's backlog, is counted `late`, never good or
    /// bad, so one run's frames cannot spill into the next run's count.
    pub by_run: u16,
    pub run: u16,
}

/// Where the IPv4 identification sits in the generator's frames (Ethernet, then IPv4 at 14):
/// translation leaves it alone, so it names the run a frame came from.
pub const IP_ID_AT: usize = 18;

/// `SINK_LATENCY` (per CPU): good frames by latency, [`LATENCY_BUCKETS`] log-linear buckets.
pub const LATENCY_BUCKETS: u32 = 496;

/// The latency bucket of `ns`: exact below 8 ns, then eight buckets per power of two (each
/// within 12.5% of its values), so 496 buckets cover every u64.
#[inline(always)]
pub fn latency_bucket(ns: u64) -> u32 {
    if ns < 8 {
        return ns as u32;
    }
    let e = 63 - ns.leading_zeros(); // floor(log2 ns), at least 3
    8 * (e - 2) + ((ns >> (e - 3)) & 7) as u32
}

/// The smallest latency in bucket `b` (the inverse of [`latency_bucket`]).
pub fn latency_floor(b: u32) -> u64 {
    if b < 8 {
        return b as u64;
    }
    let (e, sub) = (b / 8 + 2, (b % 8) as u64);
    (8 + sub) << (e - 3)
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
    /// Good frames whose flow was learned for the first time (`SinkExpect::learn`).
    pub learned: u64,
    /// IPv4 frames of an earlier run (`SinkExpect::by_run`), whatever their addresses.
    pub late: u64,
}

pub const MAP_GEN_CONFIG: &str = "GEN_CONFIG";
pub const MAP_SINK_EXPECT: &str = "SINK_EXPECT";
pub const MAP_SINK_COUNTERS: &str = "SINK_COUNTERS";
pub const MAP_SINK_LATENCY: &str = "SINK_LATENCY";
pub const MAP_GEN_STATE: &str = "GEN_STATE";
pub const MAP_CEILING_TX: &str = "CEILING_TX";
pub const MAP_LEARNED: &str = "LEARNED";
pub const PROGRAM_GEN: &str = "bench_gen";
pub const PROGRAM_SINK: &str = "bench_sink";
pub const PROGRAM_CEILING: &str = "bench_ceiling";

const _: () = {
    assert!(size_of::<GenConfig>() == 80);
    assert!(size_of::<GenState>() == 32);
    assert!(size_of::<SinkExpect>() == 32);
    assert!(size_of::<SinkCounters>() == 48);
    assert!(size_of::<Learned>() == 8);
};

#[cfg(feature = "user")]
mod pod {
    macro_rules! pod {
        ($($t:ty),* $(,)?) => {$(
            // SAFETY: repr(C), integers and byte arrays, no implicit padding (asserted sizes):
            // every bit pattern is valid and no byte is uninitialised.
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(super::GenConfig, super::SinkExpect, super::SinkCounters, super::GenState, super::Learned);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_ordered_and_their_floors_invert_them() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 40, u64::MAX / 3, u64::MAX]) {
            let b = latency_bucket(ns);
            assert!(b >= last && b < LATENCY_BUCKETS, "{ns} in bucket {b}");
            last = b;
            let floor = latency_floor(b);
            assert!(floor <= ns, "{ns}: bucket {b} starts at {floor}");
            // Within 12.5% of the bucket's floor.
            assert!(ns - floor <= floor / 8 + 1, "{ns}: bucket {b} starts at {floor}");
            assert_eq!(latency_bucket(floor), b);
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }
}
