//! The acceptance bench's XDP programs (`ebpf/bench`) from userspace: the live-frames
//! generator, the counting sink and the raw redirect ceiling. The harness around them (`hutong
//! bench`: topologies, devices under test, the search for the highest rate, the report) is issue
//! 7's and not built yet; these are its measuring instruments, tested in `tests/bench_xdp.rs`.

use std::time::Duration;

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, DevMap, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use hutong_common::bench::{
    GEN_HEADER, GenConfig, MAP_CEILING_TX, MAP_GEN_CONFIG, MAP_SINK_COUNTERS, MAP_SINK_EXPECT,
    PROGRAM_CEILING, PROGRAM_GEN, PROGRAM_SINK, SinkCounters, SinkExpect,
};

/// The bench programs' object, built for bpfel-unknown-none by build.rs.
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hutong-bench-xdp"));

fn load(program: &str) -> Result<Ebpf> {
    let mut ebpf = Ebpf::load(BENCH_OBJECT).context("loading the bench object")?;
    let p: &mut Xdp = ebpf.program_mut(program).context("no such bench program")?.try_into()?;
    p.load().with_context(|| format!("the kernel rejected {program} (verifier)"))?;
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
    header: [u8; GEN_HEADER],
}

impl Generator {
    pub fn load(config: GenConfig) -> Result<Generator> {
        let mut ebpf = load(PROGRAM_GEN)?;
        let mut c: Array<_, GenConfig> =
            Array::try_from(ebpf.map_mut(MAP_GEN_CONFIG).context(MAP_GEN_CONFIG)?)?;
        c.set(0, config, 0)?;
        Ok(Generator { ebpf, header: config.header })
    }

    /// Sends `frames` frames of `len` bytes (at least the header) out of `ifindex` (which must
    /// be in the caller's namespace), `batch` at a time; returns how long the kernel took.
    pub fn run(&mut self, ifindex: u32, len: usize, frames: u32, batch: u32) -> Result<Duration> {
        let mut frame = vec![0u8; len.max(GEN_HEADER)];
        frame[..GEN_HEADER].copy_from_slice(&self.header);
        // struct xdp_md: data, data_end (the frame's length), data_meta, ingress_ifindex, ...
        let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let p: &mut Xdp = self.ebpf.program_mut(PROGRAM_GEN).context("no generator")?.try_into()?;
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ctx_in: Some(&ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(batch),
            ..TestRunOptions::new()
        };
        Ok(p.test_run(opts).context("BPF_PROG_TEST_RUN with live frames")?.duration * frames)
    }
}

/// The sink: counts, on one interface, frames whose addresses are as expected and the rest.
pub struct Sink {
    ebpf: Ebpf,
}

impl Sink {
    pub fn attach(ifindex: u32, expect: SinkExpect) -> Result<Sink> {
        let mut ebpf = load(PROGRAM_SINK)?;
        let mut e: Array<_, SinkExpect> =
            Array::try_from(ebpf.map_mut(MAP_SINK_EXPECT).context(MAP_SINK_EXPECT)?)?;
        e.set(0, expect, 0)?;
        attach(&mut ebpf, PROGRAM_SINK, ifindex)?;
        Ok(Sink { ebpf })
    }

    /// Its counters, summed over CPUs.
    pub fn counters(&self) -> Result<SinkCounters> {
        let m: PerCpuArray<_, SinkCounters> =
            PerCpuArray::try_from(self.ebpf.map(MAP_SINK_COUNTERS).context(MAP_SINK_COUNTERS)?)?;
        let mut sum = SinkCounters::default();
        for c in m.get(&0, 0)?.iter() {
            sum.good += c.good;
            sum.good_bytes += c.good_bytes;
            sum.bad += c.bad;
            sum.other += c.other;
        }
        Ok(sum)
    }
}

/// The raw XDP ceiling: everything arriving on one interface is redirected to another.
pub struct Ceiling {
    _ebpf: Ebpf,
}

impl Ceiling {
    pub fn attach(from: u32, to: u32) -> Result<Ceiling> {
        let mut ebpf = load(PROGRAM_CEILING)?;
        let mut tx: DevMap<_> = DevMap::try_from(ebpf.map_mut(MAP_CEILING_TX).context(MAP_CEILING_TX)?)?;
        tx.set(0, to, None, 0)?;
        attach(&mut ebpf, PROGRAM_CEILING, from)?;
        Ok(Ceiling { _ebpf: ebpf })
    }
}
