//! How a frame leaves: its IPv4 header and MACs rewritten for the next hop ([`rewrite_ip`]),
//! the next hop's MAC looked up (a miss reported to the resolver) and learned from ARP
//! ([`glean_arp`]), then the redirect to the egress port ([`transmit`]), the hand-over to the
//! slow path ([`slow_path`], [`unresolved`]) or to the host stack ([`to_host`]).

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_ns, generated::bpf_redirect},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use hutong_common::{
    Drop, Neigh, Neigh6Key, NeighKey, Port, QUEUES_PER_PORT, Stat, V4Key, checksum,
    wire::{ETH_HLEN, ETH_P_8021Q},
};

use crate::{
    counters::{count, count_port},
    maps::{DROPS, NEIGH_MISS, NEIGH_V4, NEIGH_V6, SLOW_PATH, STATS, TX_PORTS, Tables, UNRESOLVED},
    parse::{load, store},
    vlan::{arrival_tag, push_tag},
};

/// The IPv4 header's TTL decrement and new addresses, with its checksum updated incrementally,
/// and the frame's new MACs (destination, source). Addresses as read from the frame.
#[inline(always)]
pub(crate) fn rewrite_ip(
    ctx: &XdpContext,
    (ttl, proto): (u8, u8),
    (src, new_src): (u32, u32),
    (dst, new_dst): (u32, u32),
    (dst_mac, src_mac): ([u8; 6], [u8; 6]),
) -> Result<(), Drop> {
    let mut csum = load::<u16>(ctx, ETH_HLEN + 10)?;
    csum = checksum::replace2(csum, u16::from_ne_bytes([ttl, proto]), u16::from_ne_bytes([ttl - 1, proto]));
    csum = checksum::replace4(csum, src, new_src);
    csum = checksum::replace4(csum, dst, new_dst);
    store(ctx, ETH_HLEN + 10, csum)?;
    store(ctx, ETH_HLEN + 8, [ttl - 1, proto])?;
    store(ctx, ETH_HLEN + 12, new_src)?;
    store(ctx, ETH_HLEN + 16, new_dst)?;
    store(ctx, 0, dst_mac)?;
    store(ctx, 6, src_mac)
}

/// The neighbor entry (the MAC) of IPv4 next hop `key`, or `None`, and then the resolver is
/// asked for it through `NEIGH_MISS`.
#[inline(always)]
pub(crate) fn neighbor(key: NeighKey) -> Option<&'static Neigh> {
    // SAFETY: `HashMap::get` is unsafe as the value may change or go while the reference lives:
    // userspace and `glean_arp` write this table any time. The element's memory stays valid for
    // this run (RCU), and callers copy out only the 6-byte MAC, at once: at worst a frame goes
    // to a MAC that changed as it was read, as with any neighbor table.
    let neigh = unsafe { NEIGH_V4.get(key) };
    if neigh.is_none() {
        // Best effort: if the ring is full userspace is already busy resolving; the counter shows it.
        let _ = NEIGH_MISS.output(key, 0);
    }
    neigh
}

/// [`neighbor`] for an IPv6 next hop.
#[inline(always)]
pub(crate) fn neighbor6(key: Neigh6Key) -> Option<&'static Neigh> {
    // SAFETY: as in `neighbor`: valid for this run, only the MAC copied out, at once.
    let neigh = unsafe { NEIGH_V6.get(key) };
    if neigh.is_none() {
        let _ = NEIGH_MISS.output(key, 0);
    }
    neigh
}

/// Sends the frame that arrived on `port` out of `out`: tagged with its VLAN if it has one
/// (keeping the TPID and priority bits of the tag it arrived with, as the userspace engine
/// does), then redirected through `TX_PORTS` to its interface's slot; if that slot is empty (a
/// loader that did not fill it), straight to the interface.
#[inline(always)]
pub(crate) fn transmit(ctx: &XdpContext, port: &Port, out: &Port) -> u32 {
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
        // SAFETY: a BPF helper with no memory arguments (an ifindex, flags).
        Err(_) => unsafe { bpf_redirect(out.parent, 0) as u32 },
    }
}

/// Hands the frame that arrived on `port` to the host stack as it arrived. A VLAN port's host
/// stack is the slow path (the kernel has no VLAN devices to answer ARP or NDP for it).
#[inline(always)]
pub(crate) fn to_host(ctx: &XdpContext, port: &Port) -> u32 {
    if port.vlan != 0 {
        return slow_path(ctx, port);
    }
    count(&STATS, Stat::ToHost as u32);
    xdp_action::XDP_PASS
}

/// Learns the sender of an ARP packet addressed to one of our addresses, if the sender is on a
/// connected subnet of the port it arrived on. The host stack answers the ARP itself; learning here
/// too means the very first reply towards that host finds its MAC, without waiting for userspace
/// to copy the kernel's neighbor table. Userspace reconciles with the kernel table afterwards.
#[inline(always)]
pub(crate) fn glean_arp(ctx: &XdpContext, t: &Tables, ifindex: u32, vrf: u32) {
    // Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4; sha at 8, spa at 14, tpa at 24.
    let Ok(arp) = load::<[u8; 28]>(ctx, ETH_HLEN) else {
        return;
    };
    if arp[0..6] != [0, 1, 8, 0, 6, 4] {
        return;
    }
    let sender = [arp[14], arp[15], arp[16], arp[17]];
    let target = [arp[24], arp[25], arp[26], arp[27]];
    if !t.is_local(V4Key::new(vrf, target)) {
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
pub(crate) fn slow_path(ctx: &XdpContext, port: &Port) -> u32 {
    if port.vlan != 0 && push_tag(ctx, arrival_tag(port)).is_err() {
        count(&DROPS, Drop::Malformed as u32);
        return xdp_action::XDP_DROP;
    }
    count(&STATS, Stat::SlowPath as u32);
    let queue = ctx.rx_queue_index() % QUEUES_PER_PORT;
    let key = (port.slot as u32).wrapping_mul(QUEUES_PER_PORT).wrapping_add(queue);
    match SLOW_PATH.redirect(key, xdp_action::XDP_PASS as u64) {
        Ok(action) | Err(action) => action,
    }
}

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
    // SAFETY: a per-CPU array's slot, from its lookup: valid for this run, and no other CPU, nor
    // another run (XDP runs to completion on its CPU), touches it while this reference lives.
    let w = unsafe { &mut *w };
    // SAFETY: a BPF helper with no memory arguments.
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
