//! Every map of the program (`hutong_common::ALL_MAPS` lists their names; a test of
//! `dataplane` holds the two equal), and the selectors of the table generation a packet uses.
//!
//! The config-derived tables exist twice (see `hutong_common::maps`): [`tables`] reads `ACTIVE`
//! once per packet and hands out references to one generation, so every lookup of the packet
//! agrees. The selectors choose by branches, never through a table of map references: those
//! would sit in .rodata, where map relocations do not reach.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMap, HashMap, LpmTrie, PerCpuArray, RingBuf, XskMap, lpm_trie::Key},
};
use hutong_common::{
    Drop, Flow, FlowKey, MAX_FLOWS, MAX_LOCAL, MAX_NAT_PREFIXES, MAX_NEIGHBORS, MAX_NPT_PREFIXES, MAX_PORTS,
    MAX_QUEUES, MAX_ROUTES, MAX_RULES, MAX_RULES_V6, MAX_VLAN_PORTS, NEIGH_MISS_BYTES, Neigh, Neigh6Key,
    NeighKey, Netmap, Npt6, PolicyRule, PolicyRule6, Port, PortCounters, Route, Route6, Stat, V4Key, V6Key,
};

// The config-derived tables, in two generations (see `hutong_common::maps`).
#[map]
pub(crate) static PORTS_0: HashMap<u32, Port> = HashMap::with_max_entries(MAX_PORTS + MAX_VLAN_PORTS, 0);
#[map]
pub(crate) static PORTS_1: HashMap<u32, Port> = HashMap::with_max_entries(MAX_PORTS + MAX_VLAN_PORTS, 0);
#[map]
pub(crate) static LOCAL_V4_0: HashMap<V4Key, u8> = HashMap::with_max_entries(MAX_LOCAL, 0);
#[map]
pub(crate) static LOCAL_V4_1: HashMap<V4Key, u8> = HashMap::with_max_entries(MAX_LOCAL, 0);
#[map]
pub(crate) static NAT_SRC_V4_0: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
pub(crate) static NAT_SRC_V4_1: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
pub(crate) static NAT_DST_V4_0: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
pub(crate) static NAT_DST_V4_1: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
pub(crate) static FIB_V4_0: LpmTrie<V4Key, Route> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
pub(crate) static FIB_V4_1: LpmTrie<V4Key, Route> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
pub(crate) static NAT_OUT_V4_0: LpmTrie<V4Key, u8> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
pub(crate) static NAT_OUT_V4_1: LpmTrie<V4Key, u8> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
pub(crate) static RULES_0: Array<PolicyRule> = Array::with_max_entries(MAX_RULES, 0);
#[map]
pub(crate) static RULES_1: Array<PolicyRule> = Array::with_max_entries(MAX_RULES, 0);
/// Egress ports by slot: redirecting through a devmap lets the kernel batch transmissions
/// (flushed once per NAPI poll) instead of sending frame by frame.
#[map]
pub(crate) static TX_PORTS: DevMap = DevMap::with_max_entries(MAX_PORTS, 0);
/// Packets and bytes per port, by its slot.
#[map]
pub(crate) static PORT_COUNTERS: PerCpuArray<PortCounters> = PerCpuArray::with_max_entries(MAX_PORTS, 0);
/// Hits per policy rule, by its position in the config.
#[map]
pub(crate) static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_RULES, 0);
/// `[0]`: the config epoch; its lowest bit is the generation of the tables in use. `[1]`, `[2]`:
/// the digest of the config behind them, for userspace alone (see `XdpEngine::install_or_keep`).
#[map]
pub(crate) static ACTIVE: Array<u32> = Array::with_max_entries(3, 0);
/// Flows of established NAT sessions, written by the slow path (see `hutong_common::Flow`).
#[map]
pub(crate) static FLOWS: HashMap<FlowKey, Flow> = HashMap::with_max_entries(MAX_FLOWS, 0);
#[map]
pub(crate) static NEIGH_V4: HashMap<NeighKey, Neigh> = HashMap::with_max_entries(MAX_NEIGHBORS, 0);
/// Next hops the program found unresolved; userspace asks the kernel to resolve them.
#[map]
pub(crate) static NEIGH_MISS: RingBuf = RingBuf::with_byte_size(NEIGH_MISS_BYTES, 0);
#[map]
pub(crate) static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Drop::COUNT, 0);
#[map]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);
/// The 802.1Q tag of the frame in hand (TPID << 16 | TCI), from its arrival on a VLAN port to
/// its departure (see `crate::forward`).
#[map]
pub(crate) static TAG: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
/// AF_XDP sockets of the userspace slow path, by receive queue.
#[map]
pub(crate) static SLOW_PATH: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);
/// Per CPU: the start of the current window (ns) and the packets towards unresolved next hops
/// handed to the slow path in it (see [`crate::xmit::unresolved`]).
#[map]
pub(crate) static UNRESOLVED: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

// The IPv6 tables, in two generations too.
#[map]
pub(crate) static LOCAL_V6_0: HashMap<V6Key, u8> = HashMap::with_max_entries(MAX_LOCAL, 0);
#[map]
pub(crate) static LOCAL_V6_1: HashMap<V6Key, u8> = HashMap::with_max_entries(MAX_LOCAL, 0);
#[map]
pub(crate) static NPT_SRC_V6_0: LpmTrie<V6Key, Npt6> = LpmTrie::with_max_entries(MAX_NPT_PREFIXES, 0);
#[map]
pub(crate) static NPT_SRC_V6_1: LpmTrie<V6Key, Npt6> = LpmTrie::with_max_entries(MAX_NPT_PREFIXES, 0);
#[map]
pub(crate) static NPT_DST_V6_0: LpmTrie<V6Key, Npt6> = LpmTrie::with_max_entries(MAX_NPT_PREFIXES, 0);
#[map]
pub(crate) static NPT_DST_V6_1: LpmTrie<V6Key, Npt6> = LpmTrie::with_max_entries(MAX_NPT_PREFIXES, 0);
#[map]
pub(crate) static FIB_V6_0: LpmTrie<V6Key, Route6> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
pub(crate) static FIB_V6_1: LpmTrie<V6Key, Route6> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
pub(crate) static RULES_V6_0: Array<PolicyRule6> = Array::with_max_entries(MAX_RULES_V6, 0);
#[map]
pub(crate) static RULES_V6_1: Array<PolicyRule6> = Array::with_max_entries(MAX_RULES_V6, 0);
/// IPv6 next hops' MACs, as `NEIGH_V4` (one table, not a generation's).
#[map]
pub(crate) static NEIGH_V6: HashMap<Neigh6Key, Neigh> = HashMap::with_max_entries(MAX_NEIGHBORS, 0);

/// One generation of the config-derived tables.
pub(crate) struct Tables {
    pub(crate) epoch: u32,
    pub(crate) ports: &'static HashMap<u32, Port>,
    pub(crate) local: &'static HashMap<V4Key, u8>,
    pub(crate) nat_src: &'static LpmTrie<V4Key, Netmap>,
    pub(crate) nat_dst: &'static LpmTrie<V4Key, Netmap>,
    pub(crate) fib: &'static LpmTrie<V4Key, Route>,
    pub(crate) rules: &'static Array<PolicyRule>,
    pub(crate) nat_out: &'static LpmTrie<V4Key, u8>,
}

impl Tables {
    /// The port `key` (an ifindex, or a `vlan_port_key`) of this generation.
    #[inline(always)]
    pub(crate) fn port(&self, key: u32) -> Option<&'static Port> {
        // SAFETY: `HashMap::get` is unsafe as another writer could change or remove the value
        // while the reference lives. None does: userspace writes the generation not in use,
        // flips `ACTIVE`, and waits for RCU before it writes this one again (`XdpEngine::install`),
        // so this generation stays as it is while a packet that read `ACTIVE` may use it.
        unsafe { self.ports.get(key) }
    }

    /// Whether `key` is one of the gateway's own IPv4 addresses, in this generation.
    #[inline(always)]
    pub(crate) fn is_local(&self, key: V4Key) -> bool {
        // SAFETY: as in `port`: this generation is not written while a packet may use it.
        unsafe { self.local.get(key) }.is_some()
    }
}

/// The generation in use, read once per packet so all of a packet's lookups agree.
#[inline(always)]
pub(crate) fn tables() -> Tables {
    let epoch = ACTIVE.get(0).copied().unwrap_or(0);
    if epoch & 1 == 0 {
        Tables {
            epoch,
            ports: &PORTS_0,
            local: &LOCAL_V4_0,
            nat_src: &NAT_SRC_V4_0,
            nat_dst: &NAT_DST_V4_0,
            fib: &FIB_V4_0,
            rules: &RULES_0,
            nat_out: &NAT_OUT_V4_0,
        }
    } else {
        Tables {
            epoch,
            ports: &PORTS_1,
            local: &LOCAL_V4_1,
            nat_src: &NAT_SRC_V4_1,
            nat_dst: &NAT_DST_V4_1,
            fib: &FIB_V4_1,
            rules: &RULES_1,
            nat_out: &NAT_OUT_V4_1,
        }
    }
}

/// One generation of the IPv6 tables (see [`tables`]).
pub(crate) struct Tables6 {
    pub(crate) local: &'static HashMap<V6Key, u8>,
    pub(crate) npt_src: &'static LpmTrie<V6Key, Npt6>,
    pub(crate) npt_dst: &'static LpmTrie<V6Key, Npt6>,
    pub(crate) fib: &'static LpmTrie<V6Key, Route6>,
    pub(crate) rules: &'static Array<PolicyRule6>,
}

impl Tables6 {
    /// Whether `key` is one of the gateway's own IPv6 addresses, in this generation.
    #[inline(always)]
    pub(crate) fn is_local(&self, key: V6Key) -> bool {
        // SAFETY: as in `Tables::port`: this generation is not written while a packet may use it.
        unsafe { self.local.get(key) }.is_some()
    }
}

/// The generation `generation` of the IPv6 tables. Chosen by branches, never through a table
/// of map references: those would sit in .rodata, where map relocations do not reach.
#[inline(always)]
pub(crate) fn tables6(generation: u32) -> Tables6 {
    if generation & 1 == 0 {
        Tables6 {
            local: &LOCAL_V6_0,
            npt_src: &NPT_SRC_V6_0,
            npt_dst: &NPT_DST_V6_0,
            fib: &FIB_V6_0,
            rules: &RULES_V6_0,
        }
    } else {
        Tables6 {
            local: &LOCAL_V6_1,
            npt_src: &NPT_SRC_V6_1,
            npt_dst: &NPT_DST_V6_1,
            fib: &FIB_V6_1,
            rules: &RULES_V6_1,
        }
    }
}

#[inline(always)]
pub(crate) fn lookup_out(map: &LpmTrie<V4Key, u8>, vrf: u32, addr: u32) -> bool {
    map.get(Key::new(V4Key::VRF_BITS + 32, V4Key::new(vrf, addr.to_ne_bytes()))).is_some()
}

#[inline(always)]
pub(crate) fn lookup_nat(map: &LpmTrie<V4Key, Netmap>, vrf: u32, addr: u32) -> Option<&Netmap> {
    map.get(Key::new(V4Key::VRF_BITS + 32, V4Key::new(vrf, addr.to_ne_bytes())))
}
