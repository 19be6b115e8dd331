//! The acceptance bench's XDP programs (`ebpf/bench`) from userspace: the live-frames
//! generator (full rate or paced, optionally time-stamping frames), the counting sink with its
//! latency histogram, the responder for session capacity (a sink that learns each flow's
//! translation and a generator replying to those flows), and the raw redirect ceiling. The
//! harness around them is `hutong bench`; these are its measuring instruments, tested in
//! `tests/bench_xdp.rs`.

use std::time::Duration;

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMap, PerCpuArray, PerCpuValues},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use hutong_common::{
    bench::{
        GEN_HEADER, GenConfig, GenState, IP_ID_AT, LATENCY_BUCKETS, MAP_CEILING_TX, MAP_GEN_CONFIG,
        MAP_GEN_STATE, MAP_LEARNED, MAP_SINK_COUNTERS, MAP_SINK_EXPECT, MAP_SINK_LATENCY, PROGRAM_CEILING,
        PROGRAM_GEN, PROGRAM_SINK, SinkCounters, SinkExpect, TAG_AT,
    },
    checksum,
};

/// The bench programs' object, built for bpfel-unknown-none by build.rs.
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hutong-bench-xdp"));

/// The bench object with `programs` loaded, room for `learned` flows in `LEARNED` (the map is
/// preallocated: one entry unless a responder needs more).
fn load(programs: &[&str], learned: u32) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_LEARNED, learned.max(1))
        .load(BENCH_OBJECT)
        .context("loading the bench object")?;
    for &program in programs {
        let p: &mut Xdp = ebpf.program_mut(program).context("no such bench program")?.try_into()?;
        p.load().with_context(|| format!("the kernel rejected {program} (verifier)"))?;
    }
    Ok(ebpf)
}

fn attach(ebpf: &mut Ebpf, program: &str, ifindex: u32) -> Result<()> {
    let p: &mut Xdp = ebpf.program_mut(program).context("no such bench program")?.try_into()?;
    p.attach_to_if_index(ifindex, XdpMode::Default).with_context(|| format!("attaching {program}"))?;
    Ok(())
}

/// The generator: BPF_PROG_TEST_RUN with live frames, transmitting out of one interface.
pub struct Generator {
    ebpf: Ebpf,
    config: GenConfig,
}

/// How a run sends: how many frames, at what rate, from which flow.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub frames: u64,
    /// Frames a second; `None` is the generator's full rate.
    pub rate: Option<f64>,
    /// Frames the kernel makes before it transmits them (`xdp_live_frames` batch size).
    pub batch: u32,
    /// Stamp each frame with the time it was made, for the sink's latency histogram.
    pub stamp: bool,
    /// The first frame's flow (each run starts its count here).
    pub first_flow: u64,
    /// The IPv4 identification every frame of the run carries (0: the template's own). A sink
    /// expecting it (`SinkExpect::by_run`) counts frames of other runs as late.
    pub run: u16,
}

impl Pace {
    /// `frames` at full rate, in batches of 64, unstamped, from flow 0, with the template's
    /// identification.
    pub fn full(frames: u64) -> Pace {
        Pace { frames, rate: None, batch: 64, stamp: false, first_flow: 0, run: 0 }
    }
}

/// What a run offered: frames sent, over how long.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Offered {
    pub sent: u64,
    pub took: Duration,
}

impl Offered {
    /// Frames a second.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// Keeps the calling thread on the CPU it runs on until dropped: the generator's state is per
/// CPU, and a paced run is a series of runs that must continue one count and one clock.
struct Pinned(nix::sched::CpuSet);

impl Pinned {
    fn here() -> Result<(Pinned, usize)> {
        use nix::{sched, unistd::Pid};
        let old = sched::sched_getaffinity(Pid::from_raw(0))?;
        // SAFETY: no arguments, no memory; -1 is its error.
        let cpu = unsafe { libc::sched_getcpu() };
        let cpu = usize::try_from(cpu).context("sched_getcpu")?;
        let mut one = sched::CpuSet::new();
        one.set(cpu)?;
        sched::sched_setaffinity(Pid::from_raw(0), &one)?;
        Ok((Pinned(old), cpu))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.0);
    }
}

impl Generator {
    pub fn load(config: GenConfig) -> Result<Generator> {
        let ebpf = load(&[PROGRAM_GEN], 1)?;
        Ok(Generator { ebpf, config })
    }

    /// Sends `len`-byte frames (at least the header) out of `ifindex` (which must be in the
    /// caller's namespace) as `pace` says. A paced run spaces frames in the program itself, and its time is
    /// from the first frame's to the last's; a full-rate run's is the kernel's.
    pub fn send(&mut self, ifindex: u32, len: usize, pace: Pace) -> Result<Offered> {
        let (_pinned, cpu) = Pinned::here()?;
        let interval_ns = pace.rate.map_or(0, |r| (1e9 / r.max(1.0)).round().max(1.0) as u64);
        let mut config = GenConfig {
            stamp: pace.stamp.into(),
            interval_ns,
            limit: pace.frames,
            first_flow: pace.first_flow,
            ..self.config
        };
        if pace.run != 0 {
            set_ip_id(&mut config.header, pace.run);
        }
        let mut c: Array<_, GenConfig> =
            Array::try_from(self.ebpf.map_mut(MAP_GEN_CONFIG).context(MAP_GEN_CONFIG)?)?;
        c.set(0, config, 0)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut state: PerCpuArray<_, GenState> =
            PerCpuArray::try_from(self.ebpf.map_mut(MAP_GEN_STATE).context(MAP_GEN_STATE)?)?;
        state.set(0, PerCpuValues::try_from(vec![GenState::default(); cpus])?, 0)?;

        let mut frame = vec![0u8; len.max(TAG_AT + 4)];
        frame[..GEN_HEADER].copy_from_slice(&config.header);
        // struct xdp_md: data, data_end (the frame's length), data_meta, ingress_ifindex, ...
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        // Each run costs tens of milliseconds to set up (measured here: 24 ms), so a run asks
        // for all the frames left at once.
        let expected = Duration::from_nanos(interval_ns.saturating_mul(pace.frames));
        let give_up = std::time::Instant::now() + expected * 2 + Duration::from_secs(2);
        let mut kernel = Duration::ZERO;
        let st = loop {
            let st = self.state(cpu)?;
            if st.sent >= pace.frames || std::time::Instant::now() > give_up {
                break st;
            }
            // A paced invocation that waited its bound out sends nothing: ask for several per
            // frame left (past the limit they return at once), so that slow rates do not pay
            // a run's setup every few frames.
            let left = pace.frames - st.sent;
            let repeat = u32::try_from(if pace.rate.is_some() { left.saturating_mul(8) } else { left })
                .unwrap_or(u32::MAX);
            let p: &mut Xdp = self.ebpf.program_mut(PROGRAM_GEN).context("no generator")?.try_into()?;
            let opts = TestRunOptions {
                data_in: Some(&frame),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(pace.batch.clamp(1, 256)),
                ..TestRunOptions::new()
            };
            kernel += p.test_run(opts).context("BPF_PROG_TEST_RUN with live frames")?.duration * repeat;
        };
        let took = match pace.rate {
            None if !pace.stamp => kernel,
            _ if st.sent > 1 => Duration::from_nanos((st.last - st.first) * st.sent / (st.sent - 1)),
            _ => kernel,
        };
        Ok(Offered { sent: st.sent, took })
    }

    fn state(&self, cpu: usize) -> Result<GenState> {
        let m: PerCpuArray<_, GenState> =
            PerCpuArray::try_from(self.ebpf.map(MAP_GEN_STATE).context(MAP_GEN_STATE)?)?;
        let all = m.get(&0, 0)?;
        all.get(cpu).copied().context("the generator's CPU has no state")
    }
}

/// Writes `id` into a frame header's IPv4 identification, keeping its header checksum right.
fn set_ip_id(h: &mut [u8; GEN_HEADER], id: u16) {
    let old = u16::from_ne_bytes([h[IP_ID_AT], h[IP_ID_AT + 1]]);
    let new = id.to_be();
    let check = checksum::replace2(u16::from_ne_bytes([h[24], h[25]]), old, new);
    [h[IP_ID_AT], h[IP_ID_AT + 1]] = new.to_ne_bytes();
    [h[24], h[25]] = check.to_ne_bytes();
}

/// The sink: counts, on one interface, frames whose addresses are as expected and the rest.
pub struct Sink {
    ebpf: Ebpf,
}

/// Attaches `ebpf`'s loaded sink to `ifindex`, expecting `expect`.
fn attach_sink(ebpf: &mut Ebpf, ifindex: u32, expect: SinkExpect) -> Result<()> {
    set_expect(ebpf, expect)?;
    attach(ebpf, PROGRAM_SINK, ifindex)
}

fn set_expect(ebpf: &mut Ebpf, expect: SinkExpect) -> Result<()> {
    let mut e: Array<_, SinkExpect> =
        Array::try_from(ebpf.map_mut(MAP_SINK_EXPECT).context(MAP_SINK_EXPECT)?)?;
    Ok(e.set(0, expect, 0)?)
}

/// A sink's counters, summed over CPUs.
fn sink_counters(ebpf: &Ebpf) -> Result<SinkCounters> {
    let m: PerCpuArray<_, SinkCounters> =
        PerCpuArray::try_from(ebpf.map(MAP_SINK_COUNTERS).context(MAP_SINK_COUNTERS)?)?;
    let mut sum = SinkCounters::default();
    for c in m.get(&0, 0)?.iter() {
        sum.good += c.good;
        sum.good_bytes += c.good_bytes;
        sum.bad += c.bad;
        sum.other += c.other;
        sum.learned += c.learned;
        sum.late += c.late;
    }
    Ok(sum)
}

impl Sink {
    pub fn attach(ifindex: u32, expect: SinkExpect) -> Result<Sink> {
        Sink::learning(ifindex, expect, 1)
    }

    /// A sink with room to learn flows `0..flows` (`SinkExpect::learn`): `learned` then counts
    /// distinct flows, however often each arrives.
    pub fn learning(ifindex: u32, expect: SinkExpect, flows: u32) -> Result<Sink> {
        let mut ebpf = load(&[PROGRAM_SINK], flows)?;
        attach_sink(&mut ebpf, ifindex, expect)?;
        Ok(Sink { ebpf })
    }

    /// Expects `expect` from now on (a new run's identification, say).
    pub fn expect(&mut self, expect: SinkExpect) -> Result<()> {
        set_expect(&mut self.ebpf, expect)
    }

    /// Good frames by latency bucket (see `hutong_common::bench::latency_bucket`), summed
    /// over CPUs; empty unless the generator stamps frames and the sink expects them stamped.
    pub fn latency(&self) -> Result<Vec<u64>> {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_SINK_LATENCY).context(MAP_SINK_LATENCY)?)?;
        (0..LATENCY_BUCKETS).map(|b| Ok(m.get(&b, 0)?.iter().sum())).collect()
    }

    /// Its counters, summed over CPUs.
    pub fn counters(&self) -> Result<SinkCounters> {
        sink_counters(&self.ebpf)
    }
}

/// The far end of session capacity (RFC 9693): a sink on one interface that learns where the
/// device translated each tagged flow to (`SinkExpect::learn`), and a generator over the same
/// maps that replies to those flows out of the same interface.
pub struct Responder {
    generator: Generator,
}

impl Responder {
    /// The sink on `ifindex` (learning set in `expect`), with room for flows `0..flows`;
    /// replies are `reply`'s template (source the server, destination each learned flow's).
    pub fn attach(ifindex: u32, expect: SinkExpect, flows: u32, reply: GenConfig) -> Result<Responder> {
        let mut ebpf = load(&[PROGRAM_GEN, PROGRAM_SINK], flows)?;
        attach_sink(&mut ebpf, ifindex, SinkExpect { learn: 1, ..expect })?;
        Ok(Responder { generator: Generator { ebpf, config: GenConfig { reply: 1, tag: 1, ..reply } } })
    }

    /// What its sink counted (`learned`: flows whose translation it knows).
    pub fn counters(&self) -> Result<SinkCounters> {
        sink_counters(&self.generator.ebpf)
    }

    /// Its sink expects `expect` from now on (learning stays on).
    pub fn expect(&mut self, expect: SinkExpect) -> Result<()> {
        set_expect(&mut self.generator.ebpf, SinkExpect { learn: 1, ..expect })
    }

    /// Replies to flows `pace.first_flow..` as `pace` says, out of `ifindex` (the sink's); a
    /// flow never learned counts as sent but sends nothing.
    pub fn reply(&mut self, ifindex: u32, len: usize, pace: Pace) -> Result<Offered> {
        self.generator.send(ifindex, len, pace)
    }
}

/// The raw XDP ceiling: everything arriving on one interface is redirected to another.
pub struct Ceiling {
    _ebpf: Ebpf,
}

impl Ceiling {
    pub fn attach(from: u32, to: u32) -> Result<Ceiling> {
        let mut ebpf = load(&[PROGRAM_CEILING], 1)?;
        let mut tx: DevMap<_> = DevMap::try_from(ebpf.map_mut(MAP_CEILING_TX).context(MAP_CEILING_TX)?)?;
        tx.set(0, to, None, 0)?;
        attach(&mut ebpf, PROGRAM_CEILING, from)?;
        Ok(Ceiling { _ebpf: ebpf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_identification_keeps_the_header_checksum_right() {
        let mut h = [0u8; GEN_HEADER];
        h[12..14].copy_from_slice(&[0x08, 0x00]);
        h[14..34]
            .copy_from_slice(&[0x45, 0, 0, 46, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 20, 0, 1, 198, 19, 0, 2]);
        let fresh = |h: &[u8; GEN_HEADER]| {
            let mut ip = h[14..34].to_vec();
            ip[10..12].fill(0);
            checksum::finish(checksum::sum(&ip, 0)).to_ne_bytes()
        };
        [h[24], h[25]] = fresh(&h);
        for id in [1, 0xffff, 0x1234, 7] {
            set_ip_id(&mut h, id);
            assert_eq!(u16::from_be_bytes([h[18], h[19]]), id);
            assert_eq!([h[24], h[25]], fresh(&h), "identification {id:#x}");
        }
    }
}
