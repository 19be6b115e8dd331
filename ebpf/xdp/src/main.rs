//! The hutong XDP program: stateless netmap between legacy VRFs and the extranet (NPTv6 for
//! IPv6, in `ipv6`), per-VRF LPM routing, neighbor lookup, TTL decrement with incremental
//! checksums, and a redirect to the egress port. Established NAT sessions are forwarded here too, by the flows the slow path
//! writes into `FLOWS` once the userspace engine has decided a connection's first packet.
//! Everything the config does not publish is dropped and counted by reason.
//!
//! Shape notes for the verifier (do not "simplify" these away):
//! - every packet access goes through `ptr_at`, which re-checks `data_end` for that exact range;
//! - the IPv4 header length is masked to at most 60 bytes before it is used as an offset, so the
//!   verifier can bound the L4 pointer;
//! - all lookups happen before the first write, so a dropped packet leaves the program unmodified.
#![no_std]
#![no_main]

mod ipv6;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_redirect, bpf_xdp_adjust_head},
    },
    macros::{map, xdp},
    maps::{Array, DevMap, HashMap, LpmTrie, PerCpuArray, RingBuf, XskMap, lpm_trie::Key},
    programs::XdpContext,
};
use hutong_common::{
    Drop, Flow, FlowKey, MAX_FLOWS, MAX_LOCAL, MAX_NAT_PREFIXES, MAX_NEIGHBORS, MAX_PORTS, MAX_QUEUES,
    MAX_ROUTES, MAX_RULES, MAX_RULES_PER_VRF, MAX_VLAN_PORTS, NEIGH_MISS_BYTES, NETMAP_SESSION_FREE, Neigh,
    NeighKey, Netmap, PORT_BARE, PORT_FLOWS, PORT_NAPT_INSIDE, PORT_NAT_OUT, PORT_SLOW, PolicyRule, Port,
    PortCounters, QUEUES_PER_PORT, RULE_COUNT, RULE_DENY, RULE_DPORTS, RULE_NETMAP, RULE_PERMIT, RULE_PROTO,
    RULE_ROUTE_VIA, RULE_SLOW, RULE_SPORTS, Route, Stat, V4Key, checksum, vlan_port_key,
};

// The config-derived tables, in two generations (see `hutong_common::maps`).
#[map]
static PORTS_0: HashMap<u32, Port> = HashMap::with_max_entries(MAX_PORTS + MAX_VLAN_PORTS, 0);
#[map]
static PORTS_1: HashMap<u32, Port> = HashMap::with_max_entries(MAX_PORTS + MAX_VLAN_PORTS, 0);
#[map]
static LOCAL_V4_0: HashMap<V4Key, u8> = HashMap::with_max_entries(MAX_LOCAL, 0);
#[map]
static LOCAL_V4_1: HashMap<V4Key, u8> = HashMap::with_max_entries(MAX_LOCAL, 0);
#[map]
static NAT_SRC_V4_0: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
static NAT_SRC_V4_1: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
static NAT_DST_V4_0: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
static NAT_DST_V4_1: LpmTrie<V4Key, Netmap> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
static FIB_V4_0: LpmTrie<V4Key, Route> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
static FIB_V4_1: LpmTrie<V4Key, Route> = LpmTrie::with_max_entries(MAX_ROUTES, 0);
#[map]
static NAT_OUT_V4_0: LpmTrie<V4Key, u8> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
static NAT_OUT_V4_1: LpmTrie<V4Key, u8> = LpmTrie::with_max_entries(MAX_NAT_PREFIXES, 0);
#[map]
static RULES_0: Array<PolicyRule> = Array::with_max_entries(MAX_RULES, 0);
#[map]
static RULES_1: Array<PolicyRule> = Array::with_max_entries(MAX_RULES, 0);
/// Egress ports by slot: redirecting through a devmap lets the kernel batch transmissions
/// (flushed once per NAPI poll) instead of sending frame by frame.
#[map]
static TX_PORTS: DevMap = DevMap::with_max_entries(MAX_PORTS, 0);
/// Packets and bytes per port, by its slot.
#[map]
static PORT_COUNTERS: PerCpuArray<PortCounters> = PerCpuArray::with_max_entries(MAX_PORTS, 0);
/// Hits per policy rule, by its position in the config.
#[map]
static RULE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_RULES, 0);
/// `[0]`: the config epoch; its lowest bit is the generation of the tables in use. `[1]`, `[2]`:
/// the digest of the config behind them, for userspace alone (see `XdpEngine::install_or_keep`).
#[map]
static ACTIVE: Array<u32> = Array::with_max_entries(3, 0);
/// Flows of established NAT sessions, written by the slow path (see `hutong_common::Flow`).
#[map]
static FLOWS: HashMap<FlowKey, Flow> = HashMap::with_max_entries(MAX_FLOWS, 0);

/// One generation of the config-derived tables.
struct Tables {
    epoch: u32,
    ports: &'static HashMap<u32, Port>,
    local: &'static HashMap<V4Key, u8>,
    nat_src: &'static LpmTrie<V4Key, Netmap>,
    nat_dst: &'static LpmTrie<V4Key, Netmap>,
    fib: &'static LpmTrie<V4Key, Route>,
    rules: &'static Array<PolicyRule>,
    nat_out: &'static LpmTrie<V4Key, u8>,
}

/// The generation in use, read once per packet so all of a packet's lookups agree.
#[inline(always)]
fn tables() -> Tables {
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
#[map]
static NEIGH_V4: HashMap<NeighKey, Neigh> = HashMap::with_max_entries(MAX_NEIGHBORS, 0);
/// Next hops the program found unresolved; userspace asks the kernel to resolve them.
#[map]
static NEIGH_MISS: RingBuf = RingBuf::with_byte_size(NEIGH_MISS_BYTES, 0);
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Drop::COUNT, 0);
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);
/// The 802.1Q tag of the frame in hand (TPID << 16 | TCI), from its arrival on a VLAN port to
/// its departure (see `forward`).
#[map]
static TAG: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);
/// AF_XDP sockets of the userspace slow path, by receive queue.
#[map]
static SLOW_PATH: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

const ETH_LEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// TCP flags the userspace engine tracks session state by: SYN, FIN, RST.
const TCP_STATE_FLAGS: u8 = 0x07;
/// IPv4 flags/fragment-offset word: the offset bits (more-fragments and DF excluded).
const IP_FRAG_OFFSET_MASK: u16 = 0x1fff;
const IP_MORE_FRAGMENTS: u16 = 0x2000;

#[xdp]
pub fn hutong(ctx: XdpContext) -> u32 {
    count(&STATS, Stat::Received as u32);
    match forward(&ctx) {
        Ok(action) => action,
        Err(reason) => {
            count(&DROPS, reason as u32);
            xdp_action::XDP_DROP
        }
    }
}

/// Per CPU: the start of the current window (ns) and the packets towards unresolved next hops
/// handed to the slow path in it (see [`unresolved`]).
#[map]
static UNRESOLVED: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Packets towards an unresolved next hop each CPU hands the slow path per window; beyond that
/// they are dropped (`no_neighbor`), so a flood towards addresses nobody answers costs the
/// program, not the slow path: 64 per 10 ms, 6,400 a second per CPU.
const UNRESOLVED_PER_WINDOW: u64 = 64;
const UNRESOLVED_WINDOW_NS: u64 = 10_000_000;

/// A packet whose next hop has no MAC yet: the resolver is asked (the miss ring), and the packet
/// goes to the slow path, which holds it until the neighbor answers, as the kernel's ARP queue
/// would, instead of losing the first packets towards every new neighbor. Rate-limited per CPU.
/// The caller has taken back any rule hits it counted: the slow path classifies again.
#[inline(always)]
pub(crate) fn unresolved(ctx: &XdpContext, port: &Port) -> Result<u32, Drop> {
    let Some(w) = UNRESOLVED.get_ptr_mut(0) else { return Err(Drop::NoNeighbor) };
    // Per-CPU slot: no other CPU writes it.
    let w = unsafe { &mut *w };
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(w[0]) >= UNRESOLVED_WINDOW_NS {
        w[0] = now;
        w[1] = 0;
    }
    if w[1] >= UNRESOLVED_PER_WINDOW {
        return Err(Drop::NoNeighbor);
    }
    w[1] += 1;
    Ok(slow_path(ctx, port))
}

#[inline(always)]
fn count(map: &PerCpuArray<u64>, index: u32) {
    if let Some(c) = map.get_ptr_mut(index) {
        // Per-CPU slot: no other CPU writes it, so a plain add is race-free.
        unsafe { *c += 1 };
    }
}

/// A pointer to `T` at `offset`, or `Malformed` if the frame is too short.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Drop> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Drop::Malformed);
    }
    Ok((start + offset) as *mut T)
}

#[inline(always)]
fn read_u16(ctx: &XdpContext, offset: usize) -> Result<u16, Drop> {
    Ok(unsafe { ptr_at::<[u8; 2]>(ctx, offset)?.read_unaligned() }).map(u16::from_be_bytes)
}

// Inlined into the entry: as a call of its own, its `Result` comes back through a pointer to the
// caller's stack, which the verifier refuses ("cannot return stack pointer to the caller").
#[inline(always)]
fn forward(ctx: &XdpContext) -> Result<u32, Drop> {
    let t = tables();
    // --- parse first, as the userspace engine does: the same frame gets the same drop reason ----
    let mut ethertype = read_u16(ctx, 12)?;
    let mut l3 = ETH_LEN;
    // The 802.1Q (or 802.1ad) tag as TPID << 16 | TCI; 0: untagged.
    let mut tag = 0u32;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        tag = ((ethertype as u32) << 16) | read_u16(ctx, 14)? as u32;
        ethertype = read_u16(ctx, 16)?;
        l3 = ETH_LEN + 4;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            return Err(Drop::UnsupportedProtocol);
        }
    }
    let (ipv4, ipv6) = match ethertype {
        ETH_P_IPV4 => (Some(validate_ipv4(ctx, l3)?), None),
        ETH_P_IPV6 => (None, Some(ipv6::validate(ctx, l3)?)),
        ETH_P_ARP => (None, None),
        _ => return Err(Drop::UnsupportedProtocol),
    };
    // --- the port: the interface, and the VLAN of a tagged frame ---------------------------------
    let ifindex = ctx.ingress_ifindex() as u32;
    let iface = unsafe { t.ports.get(ifindex) }.ok_or(Drop::UnknownPort)?;
    let (port, key) = if tag == 0 {
        if iface.flags & PORT_BARE != 0 {
            return Err(Drop::UnknownPort);
        }
        (iface, ifindex)
    } else {
        let key = vlan_port_key(iface.slot, tag as u16);
        (unsafe { t.ports.get(key) }.ok_or(Drop::UnknownPort)?, key)
    };
    count_port(ctx, port.slot, false);
    // From here on the frame is untagged: the tag goes back on (or another one) as it leaves.
    // It waits in `TAG`, not in a register: a register would split every path below in two
    // for the verifier (tagged, untagged), and the program would no longer fit its budget.
    // Only a VLAN port (`port.vlan != 0`) is found from a tagged frame, so that says whether.
    if tag != 0 {
        pop_tag(ctx)?;
        if let Some(slot) = TAG.get_ptr_mut(0) {
            // Per CPU, and read only by this run of the program.
            unsafe { *slot = tag };
        }
    }
    if let Some((len, next)) = ipv6 {
        return ipv6::forward6(ctx, &t, port, len, next);
    }
    let Some((total_len, frag_off, more_frags, proto)) = ipv4 else {
        glean_arp(ctx, &t, key, port.vrf);
        // ARP for a pool's or a service's address: the kernel holds no such address, the slow
        // path's host stack answers (where it is on the port's subnet).
        if port.flags & PORT_NAT_OUT != 0 {
            let tpa = unsafe { ptr_at::<u32>(ctx, ETH_LEN + 24)?.read_unaligned() };
            if lookup_out(t.nat_out, port.vrf, tpa) {
                return Ok(slow_path(ctx, port));
            }
        }
        return Ok(to_host(ctx, port));
    };
    let ip = ptr_at::<[u8; 20]>(ctx, ETH_LEN)?;
    let ihl = ((unsafe { (*ip)[0] } & 0x0f) as usize) * 4;
    let ttl = unsafe { (*ip)[8] };
    let src = unsafe { ptr_at::<u32>(ctx, ETH_LEN + 12)?.read_unaligned() };
    let dst = unsafe { ptr_at::<u32>(ctx, ETH_LEN + 16)?.read_unaligned() };

    // --- the gateway's own addresses go to its host stack -------------------------------------
    let vrf = port.vrf;
    if unsafe { t.local.get(V4Key::new(vrf, dst.to_ne_bytes())) }.is_some() {
        return Ok(to_host(ctx, port));
    }
    // TTL expiry is answered with ICMP, and ICMP errors carry a packet to translate too: both are
    // the slow path's (RFC 1812 time exceeded, RFC 5508).
    if ttl <= 1 {
        return Ok(slow_path(ctx, port));
    }
    if proto == IPPROTO_ICMP && frag_off == 0 {
        let kind = unsafe { *ptr_at::<u8>(ctx, ETH_LEN + (ihl & 0x3c))? };
        if kind == 3 || kind == 11 || kind == 12 {
            return Ok(slow_path(ctx, port));
        }
    }
    // An established NAT session's packet: the slow path decided its flow already. Only whole
    // datagrams: a fragment's translation is remembered by the userspace engine alone.
    if port.flags & PORT_FLOWS != 0 && frag_off == 0 && !more_frags {
        if let Some(verdict) = by_flow(ctx, &t, port, proto, ihl, ttl, src, dst, total_len)? {
            return Ok(verdict);
        }
    }
    // To a pool's or a service's outside address, and no flow: a session's packet the program
    // was not handed (its first answer, SYN/FIN/RST, a later fragment), or a new session.
    if port.flags & PORT_NAT_OUT != 0 && lookup_out(t.nat_out, vrf, dst) {
        return Ok(slow_path(ctx, port));
    }
    // The config asks for something the program does not implement on this port.
    if port.flags & PORT_SLOW != 0 {
        return Ok(slow_path(ctx, port));
    }
    // A NAPT pool's inside: sessions decide first (the slow path's), but for sources no session
    // can have.
    if port.flags & PORT_NAPT_INSIDE != 0
        && !lookup_nat(t.nat_src, vrf, src).is_some_and(|nm| nm.flags & NETMAP_SESSION_FREE != 0)
    {
        return Ok(slow_path(ctx, port));
    }

    // --- classify: the port VRF's rules in order; none denies everything ------------------------
    let ports = if frag_off == 0 && (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        let p = unsafe { *ptr_at::<[u8; 4]>(ctx, ETH_LEN + (ihl & 0x3c))? };
        Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
    } else {
        None
    };
    let (decided, via) = classify(&t, port, src, dst, proto, ports, false)?;
    // A new session: the slow path creates it, and classifies (and counts) the packet again.
    if decided == RULE_SLOW {
        let _ = classify(&t, port, src, dst, proto, ports, true);
        return Ok(slow_path(ctx, port));
    }
    // --- translate: netmap the source (legacy -> extranet) or the destination (the reverse) -----
    let (new_src, new_dst, out_vrf) = match decided {
        RULE_NETMAP => {
            if let Some(nm) = lookup_nat(t.nat_src, vrf, src) {
                (nm.apply(src), dst, nm.vrf_out)
            } else if let Some(nm) = lookup_nat(t.nat_dst, vrf, dst) {
                (src, nm.apply(dst), nm.vrf_out)
            } else {
                return Err(Drop::NoTranslation);
            }
        }
        RULE_PERMIT | RULE_ROUTE_VIA => (src, dst, vrf),
        _ => return Err(Drop::NoTranslation),
    };

    // --- route (or the rule's fixed next hop) and resolve the next hop ---------------------------
    let route = if decided == RULE_ROUTE_VIA {
        via
    } else {
        *t.fib
            .get(Key::new(V4Key::VRF_BITS + 32, V4Key::new(out_vrf, new_dst.to_ne_bytes())))
            .ok_or(Drop::NoRoute)?
    };
    let out_ifindex = route.ifindex;
    let out_port = unsafe { t.ports.get(out_ifindex) }.ok_or(Drop::NoRoute)?;
    let src_mac = out_port.mac;
    let nexthop = if route.nexthop == [0; 4] { new_dst.to_ne_bytes() } else { route.nexthop };
    let nkey = NeighKey { ifindex: out_ifindex, addr: nexthop };
    let neigh = unsafe { NEIGH_V4.get(nkey) };
    if neigh.is_none() {
        // Best effort: if the ring is full userspace is already busy resolving; the counter shows it.
        let _ = NEIGH_MISS.output(nkey, 0);
    }
    // Over the egress MTU (fragmentation-needed with DF, or a drop), or no MAC for the next hop
    // yet (held until it answers, see `unresolved`): the slow path's. It classifies the packet
    // again, so the hits counted here are taken back (one call for both: the program's size).
    let too_big = total_len > out_port.mtu as usize;
    if too_big || neigh.is_none() {
        let _ = classify(&t, port, src, dst, proto, ports, true);
        return if too_big { Ok(slow_path(ctx, port)) } else { unresolved(ctx, port) };
    }
    let Some(neigh) = neigh else { return Err(Drop::NoNeighbor) };
    let dst_mac = neigh.mac;

    // --- L4 checksum location: only a first fragment (or a whole datagram) carries it -----------
    let l4_csum: Option<usize> = if frag_off != 0 || (new_src == src && new_dst == dst) {
        None
    } else {
        match proto {
            IPPROTO_TCP => Some(16),
            IPPROTO_UDP => Some(6),
            _ => None,
        }
    };
    // Mask keeps the offset provably within 60 bytes for the verifier.
    let l4 = ETH_LEN + (ihl & 0x3c);

    // --- rewrite (no drops past this point) ------------------------------------------------------
    if let Some(off) = l4_csum {
        let csum_ptr = ptr_at::<u16>(ctx, l4 + off)?;
        let old = unsafe { csum_ptr.read_unaligned() };
        // A zero UDP checksum means "none" (RFC 768) and stays zero.
        if !(proto == IPPROTO_UDP && old == 0) {
            let mut new = checksum::replace4(old, src, new_src);
            new = checksum::replace4(new, dst, new_dst);
            if proto == IPPROTO_UDP && new == 0 {
                new = 0xffff;
            }
            unsafe { csum_ptr.write_unaligned(new) };
        }
    }
    rewrite_ip(ctx, (ttl, proto), (src, new_src), (dst, new_dst), (dst_mac, src_mac))?;
    Ok(transmit(ctx, port, out_port))
}

/// Forwards a packet by its flow in `FLOWS`, if it has one of the current epoch: the addresses,
/// ports (or ICMP echo identifier) and TTL rewritten with incremental checksums, exactly as the
/// userspace engine did to the flow's first packet. `None`: no flow; the packet goes on through
/// the rest of the program. SYN, FIN and RST segments never match: the userspace engine keeps
/// the TCP state (and with it the session's timeout), so they are its to see.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn by_flow(
    ctx: &XdpContext,
    t: &Tables,
    port: &Port,
    proto: u8,
    ihl: usize,
    ttl: u8,
    src: u32,
    dst: u32,
    total_len: usize,
) -> Result<Option<u32>, Drop> {
    let l4 = ETH_LEN + (ihl & 0x3c);
    // One read per header (a 1-byte read at a variable offset is beyond this verifier's range
    // tracking once the compiler folds its bounds check).
    let (sport, dport) = match proto {
        IPPROTO_TCP => {
            let h = unsafe { *ptr_at::<[u8; 14]>(ctx, l4)? };
            if h[13] & TCP_STATE_FLAGS != 0 {
                return Ok(None);
            }
            ([h[0], h[1]], [h[2], h[3]])
        }
        IPPROTO_UDP => {
            let h = unsafe { *ptr_at::<[u8; 8]>(ctx, l4)? };
            ([h[0], h[1]], [h[2], h[3]])
        }
        IPPROTO_ICMP => {
            let h = unsafe { *ptr_at::<[u8; 8]>(ctx, l4)? };
            if h[0] != 0 && h[0] != 8 {
                return Ok(None);
            }
            ([h[4], h[5]], [h[0], 0])
        }
        _ => return Ok(None),
    };
    let key = FlowKey {
        vrf: port.vrf,
        src: src.to_ne_bytes(),
        dst: dst.to_ne_bytes(),
        sport,
        dport,
        proto,
        _pad: [0; 3],
    };
    let Some(flow) = FLOWS.get_ptr_mut(&key) else { return Ok(None) };
    // The map value stays valid while we hold it (RCU); copy it once.
    let f = unsafe { *flow };
    if f.epoch != t.epoch {
        return Ok(None);
    }
    let Some(out_port) = (unsafe { t.ports.get(f.ifindex) }) else { return Ok(None) };
    let src_mac = out_port.mac;
    if total_len > out_port.mtu as usize {
        return Ok(Some(slow_path(ctx, port)));
    }
    let nkey = NeighKey { ifindex: f.ifindex, addr: f.nexthop };
    let Some(neigh) = (unsafe { NEIGH_V4.get(nkey) }) else {
        let _ = NEIGH_MISS.output(nkey, 0);
        return Err(Drop::NoNeighbor);
    };
    let dst_mac = neigh.mac;
    let new_src = u32::from_ne_bytes(f.src);
    let new_dst = u32::from_ne_bytes(f.dst);
    let (old_sp, old_dp) = (u16::from_ne_bytes(sport), u16::from_ne_bytes(dport));
    let (new_sp, new_dp) = (u16::from_ne_bytes(f.sport), u16::from_ne_bytes(f.dport));

    // --- rewrite (no drops past this point) ------------------------------------------------------
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let off = if proto == IPPROTO_TCP { 16 } else { 6 };
            let csum_ptr = ptr_at::<u16>(ctx, l4 + off)?;
            let old = unsafe { csum_ptr.read_unaligned() };
            // A zero UDP checksum means "none" (RFC 768) and stays zero.
            if !(proto == IPPROTO_UDP && old == 0) {
                let mut new = checksum::replace4(old, src, new_src);
                new = checksum::replace4(new, dst, new_dst);
                new = checksum::replace2(new, old_sp, new_sp);
                new = checksum::replace2(new, old_dp, new_dp);
                if proto == IPPROTO_UDP && new == 0 {
                    new = 0xffff;
                }
                unsafe { csum_ptr.write_unaligned(new) };
            }
            unsafe {
                ptr_at::<[u8; 2]>(ctx, l4)?.write_unaligned(f.sport);
                ptr_at::<[u8; 2]>(ctx, l4 + 2)?.write_unaligned(f.dport);
            }
        }
        _ => {
            // ICMP echo: only the identifier; the ICMP checksum covers no pseudo-header.
            if old_sp != new_sp {
                let csum_ptr = ptr_at::<u16>(ctx, l4 + 2)?;
                unsafe {
                    csum_ptr.write_unaligned(checksum::replace2(csum_ptr.read_unaligned(), old_sp, new_sp));
                    ptr_at::<[u8; 2]>(ctx, l4 + 4)?.write_unaligned(f.sport);
                }
            }
        }
    }
    rewrite_ip(ctx, (ttl, proto), (src, new_src), (dst, new_dst), (dst_mac, src_mac))?;
    unsafe {
        // Coarse (about 16 ms), so a busy flow does not write its cache line on every packet.
        let now = bpf_ktime_get_ns();
        if (*flow).last_seen >> 24 != now >> 24 {
            (*flow).last_seen = now;
        }
    }
    if f.rule != 0 {
        count_rule(f.rule - 1, 1);
    }
    count(&STATS, Stat::FlowHit as u32);
    Ok(Some(transmit(ctx, port, out_port)))
}

/// No rule decided (`scan`'s answer).
const NO_RULE: u32 = u32::MAX;
/// `scan`'s packed packet word: the packet carries ports; the scan takes its hits back.
const SCAN_PORTS: u64 = 1 << 40;
const SCAN_UNDO: u64 = 1 << 41;

/// Classifies by the port VRF's rules: the deciding action (deny drops here; no match is the
/// default deny) and, for route-via, its next hop. `undo` takes back the hits of an earlier
/// call for the same packet (it goes to the slow path, which classifies it again).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn classify(
    t: &Tables,
    port: &Port,
    src: u32,
    dst: u32,
    proto: u8,
    ports: Option<(u16, u16)>,
    undo: bool,
) -> Result<(u8, Route), Drop> {
    let span = ((port.rules_first as u32) << 16) | port.rules_count as u32;
    let (sp, dp, has) = ports.map_or((0u64, 0u64, 0), |(s, d)| (s as u64, d as u64, SCAN_PORTS));
    let word = ((proto as u64) << 32) | (sp << 16) | dp | has | if undo { SCAN_UNDO } else { 0 };
    let pos = scan(t.epoch & 1, span, src, dst, word);
    if pos == NO_RULE {
        return Err(Drop::NoTranslation);
    }
    let r = t.rules.get(pos).ok_or(Drop::NoTranslation)?;
    match r.action {
        RULE_DENY => Err(Drop::PolicyDeny),
        action => Ok((action, Route { ifindex: r.via_ifindex, nexthop: r.via_nexthop })),
    }
}

/// Scans rules `first..first + count` (`span` = first << 16 | count) of table generation `generation`
/// in order, as `dataplane::engine::classify` does: `count` rules count and go on, the first
/// other match decides. Every match's hit counter moves (up, or down with `SCAN_UNDO`).
/// Returns the deciding rule's position, or `NO_RULE`. A subprogram of scalars only, so the
/// verifier walks its bounded loop once, apart from the rest of the program.
#[inline(never)]
fn scan(generation: u32, span: u32, src: u32, dst: u32, word: u64) -> u32 {
    let rules = if generation == 0 { &RULES_0 } else { &RULES_1 };
    let (first, count) = (span >> 16, span & 0xffff);
    let delta = if word & SCAN_UNDO != 0 { u64::MAX } else { 1 };
    for i in 0..MAX_RULES_PER_VRF {
        if i >= count {
            break;
        }
        let pos = first + i;
        let Some(r) = rules.get(pos) else { break };
        if src & r.src_mask != r.src || dst & r.dst_mask != r.dst {
            continue;
        }
        if !l4_matches(r.flags, r.proto, r.sport_lo, r.sport_hi, r.dport_lo, r.dport_hi, word) {
            continue;
        }
        count_rule(r.index, delta);
        if r.action != RULE_COUNT {
            return pos;
        }
    }
    NO_RULE
}

/// Whether a rule's protocol and port ranges (by its `flags`) admit the packet described by a
/// scan word: destination port in bits 0-15, source port 16-31, protocol 32-39, `SCAN_PORTS`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn l4_matches(
    flags: u8,
    proto: u8,
    sport_lo: u16,
    sport_hi: u16,
    dport_lo: u16,
    dport_hi: u16,
    word: u64,
) -> bool {
    if flags & RULE_PROTO != 0 && proto != (word >> 32) as u8 {
        return false;
    }
    if flags & (RULE_SPORTS | RULE_DPORTS) == 0 {
        return true;
    }
    // A rule on ports cannot match a packet whose ports are unknown.
    if word & SCAN_PORTS == 0 {
        return false;
    }
    let (sp, dp) = ((word >> 16) as u16, word as u16);
    if flags & RULE_SPORTS != 0 && (sp < sport_lo || sp > sport_hi) {
        return false;
    }
    !(flags & RULE_DPORTS != 0 && (dp < dport_lo || dp > dport_hi))
}

/// The IPv4 header's TTL decrement and new addresses, with its checksum updated incrementally,
/// and the frame's new MACs (destination, source). Addresses as read from the frame.
#[inline(always)]
fn rewrite_ip(
    ctx: &XdpContext,
    (ttl, proto): (u8, u8),
    (src, new_src): (u32, u32),
    (dst, new_dst): (u32, u32),
    (dst_mac, src_mac): ([u8; 6], [u8; 6]),
) -> Result<(), Drop> {
    let ip_csum_ptr = ptr_at::<u16>(ctx, ETH_LEN + 10)?;
    let ttl_ptr = ptr_at::<[u8; 2]>(ctx, ETH_LEN + 8)?;
    unsafe {
        let mut csum = ip_csum_ptr.read_unaligned();
        csum =
            checksum::replace2(csum, u16::from_ne_bytes([ttl, proto]), u16::from_ne_bytes([ttl - 1, proto]));
        csum = checksum::replace4(csum, src, new_src);
        csum = checksum::replace4(csum, dst, new_dst);
        ip_csum_ptr.write_unaligned(csum);
        ttl_ptr.write_unaligned([ttl - 1, proto]);
        ptr_at::<u32>(ctx, ETH_LEN + 12)?.write_unaligned(new_src);
        ptr_at::<u32>(ctx, ETH_LEN + 16)?.write_unaligned(new_dst);
        ptr_at::<[u8; 6]>(ctx, 0)?.write_unaligned(dst_mac);
        ptr_at::<[u8; 6]>(ctx, 6)?.write_unaligned(src_mac);
    }
    Ok(())
}

/// The tag a frame that arrived on `port` had (TPID << 16 | TCI), or 0: untagged.
#[inline(always)]
fn arrival_tag(port: &Port) -> u32 {
    if port.vlan == 0 { 0 } else { TAG.get(0).copied().unwrap_or(0) }
}

/// Sends the frame that arrived on `port` out of `out`: tagged with its VLAN if it has one
/// (keeping the TPID and priority bits of the tag it arrived with, as the userspace engine
/// does), then redirected through `TX_PORTS` to its interface's slot; if that slot is empty (a
/// loader that did not fill it), straight to the interface.
#[inline(always)]
fn transmit(ctx: &XdpContext, port: &Port, out: &Port) -> u32 {
    if out.vlan != 0 {
        let tag = arrival_tag(port);
        let vid = out.vlan as u32;
        let new = if tag != 0 { (tag & 0xffff_f000) | vid } else { ((ETH_P_8021Q as u32) << 16) | vid };
        if push_tag(ctx, new).is_err() {
            count(&DROPS, Drop::Malformed as u32);
            return xdp_action::XDP_DROP;
        }
    }
    count(&STATS, Stat::Forwarded as u32);
    count_port(ctx, out.slot, true);
    match TX_PORTS.redirect(out.slot as u32, 0) {
        Ok(action) => action,
        Err(_) => unsafe { bpf_redirect(out.parent, 0) as u32 },
    }
}

/// Removes the frame's 802.1Q tag (the MACs move up four bytes).
#[inline(always)]
fn pop_tag(ctx: &XdpContext) -> Result<(), Drop> {
    let macs = unsafe { *ptr_at::<[u8; 12]>(ctx, 0)? };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, 4) } != 0 {
        return Err(Drop::Malformed);
    }
    unsafe { ptr_at::<[u8; 12]>(ctx, 0)?.write_unaligned(macs) };
    Ok(())
}

/// Inserts an 802.1Q tag, `tag` = TPID << 16 | TCI, after the MACs.
#[inline(always)]
fn push_tag(ctx: &XdpContext, tag: u32) -> Result<(), Drop> {
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -4) } != 0 {
        return Err(Drop::Malformed);
    }
    let macs = unsafe { *ptr_at::<[u8; 12]>(ctx, 4)? };
    unsafe {
        ptr_at::<[u8; 12]>(ctx, 0)?.write_unaligned(macs);
        ptr_at::<[u8; 4]>(ctx, 12)?.write_unaligned(tag.to_be_bytes());
    }
    Ok(())
}

/// Hands the frame that arrived on `port` to the host stack as it arrived. A VLAN port's host
/// stack is the slow path (the kernel has no VLAN devices to answer ARP or NDP for it).
#[inline(always)]
fn to_host(ctx: &XdpContext, port: &Port) -> u32 {
    if port.vlan != 0 {
        return slow_path(ctx, port);
    }
    count(&STATS, Stat::ToHost as u32);
    xdp_action::XDP_PASS
}

/// Counts the frame as received on (or sent out of) the port in slot `slot`.
#[inline(always)]
fn count_port(ctx: &XdpContext, slot: u16, tx: bool) {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(c) = PORT_COUNTERS.get_ptr_mut(slot as u32) {
        // Per-CPU slot: no other CPU writes it.
        unsafe {
            if tx {
                (*c).tx_packets += 1;
                (*c).tx_bytes += len;
            } else {
                (*c).rx_packets += 1;
                (*c).rx_bytes += len;
            }
        }
    }
}

#[inline(always)]
fn count_rule(index: u32, n: u64) {
    if let Some(c) = RULE_HITS.get_ptr_mut(index) {
        // Per-CPU slot: no other CPU writes it.
        unsafe { *c = (*c).wrapping_add(n) };
    }
}

/// Learns the sender of an ARP packet addressed to one of our addresses, if the sender is on a
/// connected subnet of the port it arrived on. The host stack answers the ARP itself; learning here
/// too means the very first reply towards that host finds its MAC, without waiting for userspace
/// to copy the kernel's neighbor table. Userspace reconciles with the kernel table afterwards.
#[inline(always)]
fn glean_arp(ctx: &XdpContext, t: &Tables, ifindex: u32, vrf: u32) {
    // Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4; sha at 8, spa at 14, tpa at 24.
    let Ok(arp) = ptr_at::<[u8; 28]>(ctx, ETH_LEN) else {
        return;
    };
    let arp = unsafe { &*arp };
    if arp[0..6] != [0, 1, 8, 0, 6, 4] {
        return;
    }
    let sender = [arp[14], arp[15], arp[16], arp[17]];
    let target = [arp[24], arp[25], arp[26], arp[27]];
    if unsafe { t.local.get(V4Key::new(vrf, target)) }.is_none() {
        return;
    }
    let connected = t
        .fib
        .get(Key::new(V4Key::VRF_BITS + 32, V4Key::new(vrf, sender)))
        .is_some_and(|r| r.ifindex == ifindex && r.nexthop == [0; 4]);
    if connected {
        let mac = [arp[8], arp[9], arp[10], arp[11], arp[12], arp[13]];
        let _ = NEIGH_V4.insert(NeighKey { ifindex, addr: sender }, Neigh { mac, _pad: [0; 2] }, 0);
    }
}

/// Hands the frame, unmodified (its tag put back), to the userspace engine through the AF_XDP
/// socket of its interface and receive queue. Without one (no slow path running) the frame goes
/// to the host stack instead, which does not forward.
#[inline(always)]
fn slow_path(ctx: &XdpContext, port: &Port) -> u32 {
    if port.vlan != 0 && push_tag(ctx, arrival_tag(port)).is_err() {
        count(&DROPS, Drop::Malformed as u32);
        return xdp_action::XDP_DROP;
    }
    count(&STATS, Stat::SlowPath as u32);
    let queue = unsafe { (*ctx.ctx).rx_queue_index } % QUEUES_PER_PORT;
    let key = (port.slot as u32).wrapping_mul(QUEUES_PER_PORT).wrapping_add(queue);
    match SLOW_PATH.redirect(key, xdp_action::XDP_PASS as u64) {
        Ok(action) | Err(action) => action,
    }
}

/// Validates the IPv4 header at `l3` and the transport header a whole datagram or first
/// fragment must carry, exactly as `dataplane::packet::parse` does. Returns the total length,
/// the fragment offset, the more-fragments flag and the protocol.
#[inline(always)]
fn validate_ipv4(ctx: &XdpContext, l3: usize) -> Result<(usize, u16, bool, u8), Drop> {
    let ip = ptr_at::<[u8; 20]>(ctx, l3)?;
    let vihl = unsafe { (*ip)[0] };
    if vihl >> 4 != 4 {
        return Err(Drop::Malformed);
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Drop::Malformed);
    }
    let total_len = read_u16(ctx, l3 + 2)? as usize;
    if total_len < ihl || l3 + total_len > ctx.data_end() - ctx.data() {
        return Err(Drop::Malformed);
    }
    let proto = unsafe { (*ip)[9] };
    let frag_word = read_u16(ctx, l3 + 6)?;
    let frag_off = frag_word & IP_FRAG_OFFSET_MASK;
    let more_frags = frag_word & IP_MORE_FRAGMENTS != 0;
    if frag_off == 0 {
        let l4 = l3 + (ihl & 0x3c);
        let end = l3 + (total_len & 0xffff);
        let need = match proto {
            IPPROTO_TCP => 20,
            IPPROTO_UDP | IPPROTO_ICMP => 8,
            _ => 0,
        };
        if l4 + need > end {
            return Err(Drop::Malformed);
        }
        if proto == IPPROTO_TCP {
            let data_off = ((unsafe { *ptr_at::<u8>(ctx, l4 + 12)? } >> 4) as usize) * 4;
            if data_off < 20 || l4 + data_off > end {
                return Err(Drop::Malformed);
            }
        }
    }
    Ok((total_len, frag_off, more_frags, proto))
}

#[inline(always)]
fn lookup_out(map: &LpmTrie<V4Key, u8>, vrf: u32, addr: u32) -> bool {
    map.get(Key::new(V4Key::VRF_BITS + 32, V4Key::new(vrf, addr.to_ne_bytes()))).is_some()
}

#[inline(always)]
fn lookup_nat(map: &LpmTrie<V4Key, Netmap>, vrf: u32, addr: u32) -> Option<&Netmap> {
    map.get(Key::new(V4Key::VRF_BITS + 32, V4Key::new(vrf, addr.to_ne_bytes())))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
