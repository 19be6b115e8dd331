//! The XDP engine's userspace side: load the embedded program, fill its maps from [`MapContents`],
//! attach it to ports, read its counters, and run it on single frames (BPF_PROG_TEST_RUN).
//!
//! Hitless restart: a gateway runs with a pin directory on bpffs, where every map and every XDP
//! link is pinned. Stopped for an upgrade ([`XdpEngine::keep_forwarding`]), the process exits and
//! the kernel keeps running the attached program over the pinned maps. Started again, the new
//! process loads its program over the same maps (so sessions, neighbors and counters carry on)
//! and swaps it into the pinned links atomically (`bpf_link_update`), so no packet meets a
//! detached interface. A full stop ([`XdpEngine::shutdown`]) removes the pins and detaches.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{
        TestRun, TestRunOptions, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use hutong_common::{
    Drop, Flow, FlowKey, MAP_ACTIVE, MAP_DROPS, MAP_FIB_V4, MAP_FIB_V6, MAP_FLOWS, MAP_LOCAL_V4,
    MAP_LOCAL_V6, MAP_NAT_DST_V4, MAP_NAT_OUT_V4, MAP_NAT_SRC_V4, MAP_NEIGH_MISS, MAP_NEIGH_V4, MAP_NEIGH_V6,
    MAP_NPT_DST_V6, MAP_NPT_SRC_V6, MAP_PORT_COUNTERS, MAP_PORTS, MAP_RULE_HITS, MAP_RULES, MAP_RULES_V6,
    MAP_SLOW_PATH, MAP_STATS, MAP_TX_PORTS, MAX_PORTS, MAX_RULES, Neigh, Neigh6Key, NeighKey, Netmap, Npt6,
    PROGRAM, PolicyRule, PolicyRule6, Port, PortCounters, Route, Route6, Stat, V4Key, V6Key,
};

use super::{
    flows::FlowMap,
    pin_layout::{LAYOUT_PREFIX, layout_dir_name, pinned_maps},
    tables::MapContents,
};
use crate::counters::Counters;

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

/// The maps the neighbor resolver owns: the tables the program reads and the misses it reports.
pub struct NeighborMaps {
    pub table: HashMap<MapData, NeighKey, Neigh>,
    pub table6: HashMap<MapData, Neigh6Key, Neigh>,
    pub misses: RingBuf<MapData>,
}

pub struct XdpEngine {
    ebpf: Ebpf,
    drops: PerCpuArray<MapData, u64>,
    stats: PerCpuArray<MapData, u64>,
    /// The pin directory, when maps and links are pinned.
    pins: Option<PathBuf>,
    /// Links held open (and pinned, with a pin directory), by pin path.
    links: Vec<(PathBuf, FdLink)>,
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
        let ebpf = Ebpf::load(PROGRAM_OBJECT).context("loading the XDP object")?;
        Self::finish_load(ebpf, None)
    }

    /// Loads the program over the maps pinned in `dir`, creating and pinning them if absent.
    /// Returns the engine and whether it adopted existing state.
    pub fn load_pinned(dir: &Path) -> Result<(XdpEngine, bool)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} (is bpffs mounted on /sys/fs/bpf?)", dir.display()))?;
        let ours = layout_dir_name();
        let found: Vec<String> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(LAYOUT_PREFIX))
            .collect();
        let adopted = match found.as_slice() {
            [] => false,
            [one] if *one == ours => true,
            other => bail!(
                "{} holds pinned maps of another layout ({}; this build is {ours}): stop that gateway fully \
                 (SIGTERM) or remove the directory",
                dir.display(),
                other.join(", ")
            ),
        };
        let paths: Vec<(&str, PathBuf)> = pinned_maps().map(|m| (m, dir.join(m))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(PROGRAM_OBJECT).context("loading the XDP object over pinned maps")?;
        std::fs::create_dir_all(dir.join(&ours))?;
        Ok((Self::finish_load(ebpf, Some(dir.to_path_buf()))?, adopted))
    }

    fn finish_load(mut ebpf: Ebpf, pins: Option<PathBuf>) -> Result<XdpEngine> {
        let program: &mut Xdp = program(&mut ebpf)?;
        program.load().context("the kernel rejected the XDP program (verifier)")?;
        let drops = PerCpuArray::try_from(take(&mut ebpf, MAP_DROPS)?)?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, MAP_STATS)?)?;
        Ok(XdpEngine { ebpf, drops, stats, pins, links: Vec::new() })
    }

    /// Applies the tables atomically: the generation not in use is made to hold exactly them
    /// (entries written, leftovers of an older config removed), then `ACTIVE` moves to the next
    /// epoch, whose lowest bit names that generation, with one map write. A packet reads
    /// `ACTIVE` once, so it sees the old tables or the new ones, and only flows decided under
    /// the same epoch. Returns the new epoch.
    pub fn install(&mut self, t: &MapContents) -> Result<u32> {
        // The generation about to be rewritten was live until the last flip: wait until no
        // packet that read `ACTIVE` before that flip can still be using it.
        synchronize_rcu();
        let active: Array<_, u32> = Array::try_from(map(&mut self.ebpf, MAP_ACTIVE)?)?;
        let epoch = active.get(&0, 0).context(MAP_ACTIVE)?.wrapping_add(1);
        let next = (epoch & 1) as usize;
        let mut ports: HashMap<_, u32, Port> = HashMap::try_from(map(&mut self.ebpf, MAP_PORTS[next])?)?;
        for (ifindex, port) in &t.ports {
            ports.insert(ifindex, port, 0).context("PORTS")?;
        }
        let keep: HashSet<u32> = t.ports.iter().map(|(i, _)| *i).collect();
        let stale: Vec<u32> = ports.keys().filter_map(|k| k.ok()).filter(|k| !keep.contains(k)).collect();
        for k in stale {
            let _ = ports.remove(&k);
        }
        sync_set(&mut HashMap::try_from(map(&mut self.ebpf, MAP_LOCAL_V4[next])?)?, &t.local)
            .context(MAP_LOCAL_V4[next])?;
        sync_set(&mut HashMap::try_from(map(&mut self.ebpf, MAP_LOCAL_V6[next])?)?, &t.local6)
            .context(MAP_LOCAL_V6[next])?;
        for (name, entries) in [(MAP_NAT_SRC_V4[next], &t.nat_src), (MAP_NAT_DST_V4[next], &t.nat_dst)] {
            let mut trie: LpmTrie<_, V4Key, Netmap> = LpmTrie::try_from(map(&mut self.ebpf, name)?)?;
            sync_trie(&mut trie, entries).context(name)?;
        }
        for (name, entries) in [(MAP_NPT_SRC_V6[next], &t.npt_src), (MAP_NPT_DST_V6[next], &t.npt_dst)] {
            let mut trie: LpmTrie<_, V6Key, Npt6> = LpmTrie::try_from(map(&mut self.ebpf, name)?)?;
            sync_trie(&mut trie, entries).context(name)?;
        }
        let mut out: LpmTrie<_, V4Key, u8> = LpmTrie::try_from(map(&mut self.ebpf, MAP_NAT_OUT_V4[next])?)?;
        sync_trie(&mut out, &t.nat_out).context(MAP_NAT_OUT_V4[next])?;
        let mut fib: LpmTrie<_, V4Key, Route> = LpmTrie::try_from(map(&mut self.ebpf, MAP_FIB_V4[next])?)?;
        sync_trie(&mut fib, &t.fib).context(MAP_FIB_V4[next])?;
        let mut fib6: LpmTrie<_, V6Key, Route6> = LpmTrie::try_from(map(&mut self.ebpf, MAP_FIB_V6[next])?)?;
        sync_trie(&mut fib6, &t.fib6).context(MAP_FIB_V6[next])?;
        // Ports do not change while a gateway runs: the devmap is written in place, and before
        // the flip, so a new slot is never used before it has its interface.
        let mut tx: aya::maps::DevMap<_> = aya::maps::DevMap::try_from(map(&mut self.ebpf, MAP_TX_PORTS)?)?;
        for (ifindex, port) in t.interfaces() {
            tx.set(port.slot as u32, *ifindex, None, 0).context(MAP_TX_PORTS)?;
        }
        let mut rules: Array<_, PolicyRule> = Array::try_from(map(&mut self.ebpf, MAP_RULES[next])?)?;
        for (i, r) in t.rules.iter().enumerate() {
            rules.set(i as u32, r, 0).context(MAP_RULES[next])?;
        }
        let mut rules6: Array<_, PolicyRule6> = Array::try_from(map(&mut self.ebpf, MAP_RULES_V6[next])?)?;
        for (i, r) in t.rules6.iter().enumerate() {
            rules6.set(i as u32, r, 0).context(MAP_RULES_V6[next])?;
        }

        let mut active: Array<_, u32> = Array::try_from(map(&mut self.ebpf, MAP_ACTIVE)?)?;
        active.set(0, epoch, 0).context(MAP_ACTIVE)?;
        // Whatever config digest was recorded no longer describes the tables.
        active.set(1, 0, 0).context(MAP_ACTIVE)?;
        active.set(2, 0, 0).context(MAP_ACTIVE)?;
        Ok(epoch)
    }

    /// The config epoch the program runs.
    pub fn epoch(&mut self) -> Result<u32> {
        let active: Array<_, u32> = Array::try_from(map(&mut self.ebpf, MAP_ACTIVE)?)?;
        active.get(&0, 0).context(MAP_ACTIVE)
    }

    /// Like [`XdpEngine::install`], but if the pinned tables were installed from a config with
    /// this `digest` (a keep-forwarding restart with the same config and interfaces), leaves
    /// them, and the epoch, as they are: the flows the program forwards by stay valid, and the
    /// slow path can adopt them. Returns the epoch and whether it was kept. A digest of 0 means
    /// "unknown" and is never kept.
    pub fn install_or_keep(&mut self, t: &MapContents, digest: u64) -> Result<(u32, bool)> {
        let active: Array<_, u32> = Array::try_from(map(&mut self.ebpf, MAP_ACTIVE)?)?;
        let epoch = active.get(&0, 0).context(MAP_ACTIVE)?;
        let stored = (active.get(&1, 0)? as u64) | ((active.get(&2, 0)? as u64) << 32);
        if digest != 0 && stored == digest && epoch != 0 {
            return Ok((epoch, true));
        }
        let epoch = self.install(t)?;
        let mut active: Array<_, u32> = Array::try_from(map(&mut self.ebpf, MAP_ACTIVE)?)?;
        active.set(1, digest as u32, 0).context(MAP_ACTIVE)?;
        active.set(2, (digest >> 32) as u32, 0).context(MAP_ACTIVE)?;
        Ok((epoch, false))
    }

    /// Attaches the program to an interface, natively where the driver supports XDP. With a pin
    /// directory the link is pinned as `link-<name>`, and an existing pinned link (a previous
    /// process that kept forwarding) gets this program swapped in atomically instead.
    /// Returns whether an existing link was taken over.
    pub fn attach(&mut self, ifindex: u32, name: &str) -> Result<bool> {
        let Some(dir) = self.pins.clone() else {
            let program: &mut Xdp = program(&mut self.ebpf)?;
            let id = program
                .attach_to_if_index(ifindex, XdpMode::Default)
                .with_context(|| format!("attaching XDP to {name} (ifindex {ifindex})"))?;
            let link = FdLink::try_from(program.take_link(id)?).context("an XDP link without an fd")?;
            self.links.push((PathBuf::new(), link));
            return Ok(false);
        };
        let path = dir.join(format!("link-{name}"));
        let program: &mut Xdp = program(&mut self.ebpf)?;
        if let Ok(pinned) = PinnedLink::from_pin(&path) {
            let fd = FdLink::from(pinned);
            // A link pinned for an interface that was since deleted (and perhaps recreated under
            // the same name) is severed: its ifindex reads 0, or another one. It forwards
            // nothing; unpin it and attach afresh rather than fail the start.
            match link_ifindex(&fd) {
                Some(i) if i == ifindex => {
                    let link = XdpLink::try_from(fd).context("the pinned link is not an XDP link")?;
                    let id = program
                        .attach_to_link(link)
                        .with_context(|| format!("replacing the program on {name}"))?;
                    let link =
                        FdLink::try_from(program.take_link(id)?).context("an XDP link without an fd")?;
                    self.links.push((path, link));
                    return Ok(true);
                }
                was => {
                    log::warn!(
                        "the link pinned at {} was for ifindex {was:?}, not {name}'s {ifindex} (the interface was recreated): replaced",
                        path.display()
                    );
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing the stale link {}", path.display()))?;
                }
            }
        }
        let id = program
            .attach_to_if_index(ifindex, XdpMode::Default)
            .with_context(|| format!("attaching XDP to {name} (ifindex {ifindex})"))?;
        let link = FdLink::try_from(program.take_link(id)?).context("an XDP link without an fd")?;
        let pinned = link.pin(&path).with_context(|| format!("pinning the link at {}", path.display()))?;
        self.links.push((path, FdLink::from(pinned)));
        Ok(false)
    }

    /// Ends this process's hold and leaves the program attached over the pinned maps; the next
    /// `hutong gateway run` with the same pin directory takes over. Without pins this is a
    /// full stop.
    pub fn keep_forwarding(self) {
        // Dropping closes our fds; pinned links and maps stay in the kernel.
        drop(self);
    }

    /// Detaches from every interface and removes the pins.
    pub fn shutdown(mut self) -> Result<()> {
        for (path, link) in self.links.drain(..) {
            if !path.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&path);
            }
            // With the pin gone, closing the last fd destroys the link: the program detaches.
            drop(link);
        }
        if let Some(dir) = self.pins.take() {
            for m in pinned_maps() {
                let _ = std::fs::remove_file(dir.join(m));
            }
            let _ = std::fs::remove_dir(dir.join(layout_dir_name()));
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(())
    }

    /// Hands the neighbor maps to the resolver; callable once.
    pub fn take_neighbor_maps(&mut self) -> Result<NeighborMaps> {
        Ok(NeighborMaps {
            table: HashMap::try_from(take(&mut self.ebpf, MAP_NEIGH_V4)?)?,
            table6: HashMap::try_from(take(&mut self.ebpf, MAP_NEIGH_V6)?)?,
            misses: RingBuf::try_from(take(&mut self.ebpf, MAP_NEIGH_MISS)?)?,
        })
    }

    /// Hits of the first `n` policy rules (by position in the config), summed over CPUs.
    pub fn rule_hits(&self, n: usize) -> Result<Vec<u64>> {
        let hits: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(MAP_RULE_HITS).context("the object has no map RULE_HITS")?)?;
        (0..n.min(MAX_RULES as usize)).map(|i| Ok(hits.get(&(i as u32), 0)?.iter().sum())).collect()
    }

    /// Each port slot's counters, summed over CPUs, for the first `n` slots.
    pub fn port_counters(&self, n: usize) -> Result<Vec<PortCounters>> {
        let map = self.ebpf.map(MAP_PORT_COUNTERS).context("the object has no map PORT_COUNTERS")?;
        let counters: PerCpuArray<_, PortCounters> = PerCpuArray::try_from(map)?;
        (0..n.min(MAX_PORTS as usize))
            .map(|i| {
                let mut sum = PortCounters::default();
                for c in counters.get(&(i as u32), 0)?.iter() {
                    sum.rx_packets += c.rx_packets;
                    sum.rx_bytes += c.rx_bytes;
                    sum.tx_packets += c.tx_packets;
                    sum.tx_bytes += c.tx_bytes;
                }
                Ok(sum)
            })
            .collect()
    }

    /// Hands the flow map to the slow path; callable once.
    pub fn take_flows(&mut self) -> Result<FlowTable> {
        Ok(FlowTable(HashMap::try_from(take(&mut self.ebpf, MAP_FLOWS)?)?))
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

    /// Runs the program `repeat` times on `frame` in the kernel (the same buffer each time, so
    /// rewrites accumulate) and returns the kernel's average time per run.
    pub fn test_run_repeat(
        &mut self,
        frame: &[u8],
        ingress_ifindex: u32,
        repeat: u32,
    ) -> Result<std::time::Duration> {
        let md: [u32; 6] = [0, frame.len() as u32, 0, ingress_ifindex, 0, 0];
        let ctx: Vec<u8> = md.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let program: &mut Xdp = program(&mut self.ebpf)?;
        let opts =
            TestRunOptions { data_in: Some(frame), ctx_in: Some(&ctx), repeat, ..TestRunOptions::new() };
        Ok(program.test_run(opts).context("BPF_PROG_TEST_RUN")?.duration)
    }

    /// Puts an AF_XDP socket in the slow path's slot for port `slot`, queue `queue`.
    pub fn set_slow_path(&mut self, slot: u16, queue: u32, fd: std::os::fd::RawFd) -> Result<()> {
        let mut xsks: aya::maps::XskMap<_> =
            aya::maps::XskMap::try_from(map(&mut self.ebpf, MAP_SLOW_PATH)?)?;
        let key = slot as u32 * hutong_common::QUEUES_PER_PORT + queue;
        xsks.set(key, fd, 0)
            .with_context(|| format!("adding the slow-path socket of port {slot} queue {queue}"))?;
        Ok(())
    }

    /// Neighbor entries can be written directly too (tests, and static neighbors).
    pub fn neighbor_table(&mut self) -> Result<HashMap<&mut MapData, NeighKey, Neigh>> {
        Ok(HashMap::try_from(map(&mut self.ebpf, MAP_NEIGH_V4)?)?)
    }

    pub fn neighbor6_table(&mut self) -> Result<HashMap<&mut MapData, Neigh6Key, Neigh>> {
        Ok(HashMap::try_from(map(&mut self.ebpf, MAP_NEIGH_V6)?)?)
    }
}

/// Waits for an RCU grace period: every XDP program run that began before the call has ended
/// (programs run inside RCU read-side sections). `membarrier(MEMBARRIER_CMD_GLOBAL)` is the
/// one system call that does exactly `synchronize_rcu()`; where it is unavailable (nohz_full
/// kernels refuse it) a pause far longer than any program run stands in.
fn synchronize_rcu() {
    // SAFETY: membarrier(2) takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_GLOBAL, 0) };
    if r != 0 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The program's `FLOWS` map (see [`crate::xdp::flows`]).
pub struct FlowTable(pub HashMap<MapData, FlowKey, Flow>);

impl FlowMap for FlowTable {
    fn insert(&mut self, key: &FlowKey, flow: &Flow) -> bool {
        self.0.insert(key, flow, 0).is_ok()
    }

    fn remove(&mut self, key: &FlowKey) {
        let _ = self.0.remove(key);
    }

    fn last_seen(&self, key: &FlowKey) -> Option<u64> {
        self.0.get(key, 0).ok().map(|f| f.last_seen)
    }

    fn entries(&self) -> Vec<(FlowKey, Flow)> {
        self.0.iter().filter_map(|e| e.ok()).collect()
    }
}

/// Makes a hash of keys (to 1) hold exactly `keys`.
fn sync_set<K: aya::Pod + Eq + std::hash::Hash>(
    set: &mut HashMap<&mut MapData, K, u8>,
    keys: &[K],
) -> Result<()> {
    for key in keys {
        set.insert(key, 1, 0)?;
    }
    let stale: Vec<K> = set.keys().filter_map(|k| k.ok()).filter(|k| !keys.contains(k)).collect();
    for k in stale {
        let _ = set.remove(&k);
    }
    Ok(())
}

/// Writes `entries` into an LPM trie and removes every other key.
fn sync_trie<K: aya::Pod + Eq + std::hash::Hash, V: aya::Pod>(
    trie: &mut LpmTrie<&mut MapData, K, V>,
    entries: &[crate::xdp::tables::Lpm<K, V>],
) -> Result<()> {
    for (bits, key, value) in entries {
        trie.insert(&Key::new(*bits, *key), value, 0)?;
    }
    let wanted: HashSet<(u32, K)> = entries.iter().map(|(b, k, _)| (*b, *k)).collect();
    let stale: Vec<Key<K>> = trie
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
        .collect();
    for k in stale {
        let _ = trie.remove(&k);
    }
    Ok(())
}

/// The interface an XDP link is attached to, from the fdinfo of this process's fd for it
/// (`ifindex:`, 0 once the interface is gone). aya's `LinkInfo` carries the link's id but not
/// its interface, and `FdLink` does not lend its fd, so the fd is found by the id.
fn link_ifindex(link: &FdLink) -> Option<u32> {
    let id = link.info().ok()?.id();
    let wanted = format!("{id}");
    for entry in std::fs::read_dir("/proc/self/fdinfo").ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        if field("link_id:") == Some(wanted.as_str()) {
            return field("ifindex:").and_then(|v| v.parse().ok());
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aya_obj::{EbpfSectionKind, Object};
    use hutong_common::ALL_MAPS;

    use super::*;

    /// The maps the compiled program defines (its `.data`, `.rodata` and `.bss` sections,
    /// which aya turns into maps too, are not maps of the program's own).
    fn object_maps() -> BTreeSet<String> {
        let obj = Object::parse(PROGRAM_OBJECT).expect("the program object parses");
        obj.maps
            .iter()
            .filter(|(_, m)| matches!(m.section_kind(), EbpfSectionKind::Maps | EbpfSectionKind::BtfMaps))
            .map(|(name, _)| name.clone())
            .collect()
    }

    #[test]
    fn all_maps_is_exactly_the_maps_of_the_program_object() {
        let listed: BTreeSet<String> = ALL_MAPS.iter().map(|m| m.to_string()).collect();
        assert_eq!(listed.len(), ALL_MAPS.len(), "ALL_MAPS names a map twice");
        let object = object_maps();
        let unlisted: Vec<_> = object.difference(&listed).collect();
        let absent: Vec<_> = listed.difference(&object).collect();
        assert!(
            unlisted.is_empty() && absent.is_empty(),
            "in the program but not in hutong_common::ALL_MAPS: {unlisted:?}; \
             in ALL_MAPS but not in the program: {absent:?}"
        );
    }
}
