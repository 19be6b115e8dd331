//! The XDP engine's userspace side: load the embedded program, fill its maps from [`Tables`],
//! attach it to ports, read its counters, and run it on single frames (BPF_PROG_TEST_RUN).

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode},
};
use hutong_common::{
    Drop, MAP_DROPS, MAP_FIB_V4, MAP_LOCAL_V4, MAP_NAT_DST_V4, MAP_NAT_SRC_V4, MAP_NEIGH_MISS, MAP_NEIGH_V4,
    MAP_PORTS, MAP_STATS, Neigh, NeighKey, Netmap, PROGRAM, Port, Route, Stat, V4Key,
};

use crate::{counters::Counters, tables::Tables};

/// The program object, built for bpfel-unknown-none by build.rs.
pub static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hutong-xdp"));

/// XDP verdicts as the kernel numbers them.
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;
}

/// The maps the neighbor resolver owns: the table the program reads and the misses it reports.
pub struct NeighborMaps {
    pub table: HashMap<MapData, NeighKey, Neigh>,
    pub misses: RingBuf<MapData>,
}

pub struct XdpEngine {
    ebpf: Ebpf,
    drops: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
}

/// What one BPF_PROG_TEST_RUN call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub action: u32,
    pub frame: Vec<u8>,
}

impl XdpEngine {
    /// Loads the program into the kernel (the verifier runs here) without attaching it.
    pub fn load() -> Result<XdpEngine> {
        let mut ebpf = Ebpf::load(PROGRAM_OBJECT).context("loading the XDP object")?;
        let program: &mut Xdp = program(&mut ebpf)?;
        program.load().context("the kernel rejected the XDP program (verifier)")?;
        let drops = PerCpuArray::try_from(take(&mut ebpf, MAP_DROPS)?)?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, MAP_STATS)?)?;
        Ok(XdpEngine { ebpf, drops, stats })
    }

    /// Writes the tables into the program's maps.
    pub fn install(&mut self, t: &Tables) -> Result<()> {
        let mut ports: HashMap<_, u32, Port> = HashMap::try_from(map(&mut self.ebpf, MAP_PORTS)?)?;
        for (ifindex, port) in &t.ports {
            ports.insert(ifindex, port, 0).context("PORTS")?;
        }
        let mut local: HashMap<_, V4Key, u8> = HashMap::try_from(map(&mut self.ebpf, MAP_LOCAL_V4)?)?;
        for key in &t.local {
            local.insert(key, 1, 0).context("LOCAL_V4")?;
        }
        for (name, entries) in [(MAP_NAT_SRC_V4, &t.nat_src), (MAP_NAT_DST_V4, &t.nat_dst)] {
            let mut trie: LpmTrie<_, V4Key, Netmap> = LpmTrie::try_from(map(&mut self.ebpf, name)?)?;
            for (bits, key, value) in entries {
                trie.insert(&Key::new(*bits, *key), value, 0).context(name)?;
            }
        }
        let mut fib: LpmTrie<_, V4Key, Route> = LpmTrie::try_from(map(&mut self.ebpf, MAP_FIB_V4)?)?;
        for (bits, key, value) in &t.fib {
            fib.insert(&Key::new(*bits, *key), value, 0).context(MAP_FIB_V4)?;
        }
        Ok(())
    }

    /// Attaches the program to an interface, natively where the driver supports XDP.
    pub fn attach(&mut self, ifindex: u32) -> Result<()> {
        let program: &mut Xdp = program(&mut self.ebpf)?;
        program
            .attach_to_if_index(ifindex, XdpMode::Default)
            .with_context(|| format!("attaching XDP to ifindex {ifindex}"))?;
        Ok(())
    }

    /// Hands the neighbor maps to the resolver; callable once.
    pub fn take_neighbor_maps(&mut self) -> Result<NeighborMaps> {
        Ok(NeighborMaps {
            table: HashMap::try_from(take(&mut self.ebpf, MAP_NEIGH_V4)?)?,
            misses: RingBuf::try_from(take(&mut self.ebpf, MAP_NEIGH_MISS)?)?,
        })
    }

    /// The program's counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let sum = |a: &PerCpuArray<MapData, u64>, i: u32| -> Result<u64> { Ok(a.get(&i, 0)?.iter().sum()) };
        let mut c = Counters::default();
        for s in Stat::ALL {
            c.stats.push((s.name(), sum(&self.stats, s as u32)?));
        }
        for d in Drop::ALL {
            c.drops.push((d.name(), sum(&self.drops, d as u32)?));
        }
        Ok(c)
    }

    /// Runs the program once on `frame` as if it arrived on `ingress_ifindex`, which must exist
    /// in the caller's network namespace (the kernel checks).
    pub fn test_run(&mut self, frame: &[u8], ingress_ifindex: u32) -> Result<TestOutcome> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let md: [u32; 6] = [0, frame.len() as u32, 0, ingress_ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut out = vec![0u8; frame.len() + 256];
        let program: &mut Xdp = program(&mut self.ebpf)?;
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::new()
        };
        let result = program.test_run(opts).context("BPF_PROG_TEST_RUN")?;
        out.truncate(result.data_size_out as usize);
        Ok(TestOutcome { action: result.return_value, frame: out })
    }

    /// Neighbor entries can be written directly too (tests, and static neighbors).
    pub fn neighbor_table(&mut self) -> Result<HashMap<&mut MapData, NeighKey, Neigh>> {
        Ok(HashMap::try_from(map(&mut self.ebpf, MAP_NEIGH_V4)?)?)
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let p = ebpf.program_mut(PROGRAM).context("the object has no hutong program")?;
    Ok(p.try_into()?)
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name).with_context(|| format!("the object has no map {name}"))
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).with_context(|| format!("the object has no map {name} (or it was taken)"))
}
