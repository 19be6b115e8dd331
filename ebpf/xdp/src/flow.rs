//! The fast path of established NAT sessions: a packet that has a flow in `FLOWS` (written by
//! the slow path once the userspace engine decided the connection's first packet) is rewritten
//! as that engine rewrote the first one, and sent, without classifying it again.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use hutong_common::{
    Drop, Flow, FlowKey, NeighKey, Port, Stat, checksum,
    wire::{
        ETH_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, TCP_STATE_FLAGS, checksum_absent, checksum_to_send,
        is_icmp_echo,
    },
};

use crate::{
    counters::{count, count_rule},
    maps::{FLOWS, STATS, Tables},
    parse::{load, store},
    xmit::{neighbor, rewrite_ip, slow_path, transmit},
};

/// Forwards a packet by its flow in `FLOWS`, if it has one of the current epoch: the addresses,
/// ports (or ICMP echo identifier) and TTL rewritten with incremental checksums, exactly as the
/// userspace engine did to the flow's first packet. `None`: no flow; the packet goes on through
/// the rest of the program. SYN, FIN and RST segments never match: the userspace engine keeps
/// the TCP state (and with it the session's timeout), so they are its to see.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn by_flow(
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
    let l4 = ETH_HLEN + (ihl & 0x3c);
    let Some((sport, dport)) = flow_ports(ctx, proto, l4)? else { return Ok(None) };
    let key = FlowKey {
        vrf: port.vrf,
        src: src.to_ne_bytes(),
        dst: dst.to_ne_bytes(),
        sport,
        dport,
        proto,
        _pad: [0; 3],
    };
    let Some(flow) = FLOWS.get_ptr_mut(key) else { return Ok(None) };
    // SAFETY: a map value pointer from a lookup stays valid for this program run (RCU), even if
    // the slow path removes the flow meanwhile; `Flow` is plain data, copied here once.
    let f = unsafe { *flow };
    if f.epoch != t.epoch {
        return Ok(None);
    }
    let Some(out_port) = t.port(f.ifindex) else { return Ok(None) };
    let src_mac = out_port.mac;
    if total_len > out_port.mtu as usize {
        return Ok(Some(slow_path(ctx, port)));
    }
    let neigh = neighbor(NeighKey { ifindex: f.ifindex, addr: f.nexthop }).ok_or(Drop::NoNeighbor)?;
    let dst_mac = neigh.mac;
    let new_src = u32::from_ne_bytes(f.src);
    let new_dst = u32::from_ne_bytes(f.dst);

    // --- rewrite (no drops past this point) ------------------------------------------------------
    rewrite_l4(ctx, proto, l4, (src, new_src), (dst, new_dst), (sport, dport), &f)?;
    rewrite_ip(ctx, (ttl, proto), (src, new_src), (dst, new_dst), (dst_mac, src_mac))?;
    // SAFETY: a BPF helper with no memory arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: the flow's pointer from its lookup, valid for this run (see above). Only its
    // aligned u64 `last_seen` is read and written; a racing write (the flow's packet on another
    // CPU) writes a time as well, and either is a fine last-seen time.
    unsafe {
        // Coarse (about 16 ms), so a busy flow does not write its cache line on every packet.
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

/// A flow's source and destination ports as `FlowKey` holds them (network order).
type Ports = ([u8; 2], [u8; 2]);

/// The ingress of a flow: the packet's ports as `FlowKey` holds them (ICMP echo: the identifier,
/// and the type). `None`: a packet no flow can have (SYN, FIN, RST; not an echo; another
/// protocol).
#[inline(always)]
fn flow_ports(ctx: &XdpContext, proto: u8, l4: usize) -> Result<Option<Ports>, Drop> {
    // One read per header (a 1-byte read at a variable offset is beyond this verifier's range
    // tracking once the compiler folds its bounds check).
    Ok(Some(match proto {
        IPPROTO_TCP => {
            let h = load::<[u8; 14]>(ctx, l4)?;
            if h[13] & TCP_STATE_FLAGS != 0 {
                return Ok(None);
            }
            ([h[0], h[1]], [h[2], h[3]])
        }
        IPPROTO_UDP => {
            let h = load::<[u8; 8]>(ctx, l4)?;
            ([h[0], h[1]], [h[2], h[3]])
        }
        IPPROTO_ICMP => {
            let h = load::<[u8; 8]>(ctx, l4)?;
            if !is_icmp_echo(h[0]) {
                return Ok(None);
            }
            ([h[4], h[5]], [h[0], 0])
        }
        _ => return Ok(None),
    }))
}

/// The flow's rewrite of the transport header at `l4`: the ports (or the ICMP echo identifier)
/// as `f` says, with the checksum kept right incrementally for them and for the addresses.
#[inline(always)]
fn rewrite_l4(
    ctx: &XdpContext,
    proto: u8,
    l4: usize,
    (src, new_src): (u32, u32),
    (dst, new_dst): (u32, u32),
    (sport, dport): ([u8; 2], [u8; 2]),
    f: &Flow,
) -> Result<(), Drop> {
    let (old_sp, old_dp) = (u16::from_ne_bytes(sport), u16::from_ne_bytes(dport));
    let (new_sp, new_dp) = (u16::from_ne_bytes(f.sport), u16::from_ne_bytes(f.dport));
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let off = if proto == IPPROTO_TCP { 16 } else { 6 };
            let old = load::<u16>(ctx, l4 + off)?;
            // A zero UDP checksum means "none" (RFC 768) and stays zero.
            if !checksum_absent(false, proto, old) {
                let mut new = checksum::replace4(old, src, new_src);
                new = checksum::replace4(new, dst, new_dst);
                new = checksum::replace2(new, old_sp, new_sp);
                new = checksum::replace2(new, old_dp, new_dp);
                // A computed zero is sent as 0xffff.
                store(ctx, l4 + off, checksum_to_send(proto, new))?;
            }
            store(ctx, l4, f.sport)?;
            store(ctx, l4 + 2, f.dport)?;
        }
        _ => {
            // ICMP echo: only the identifier; the ICMP checksum covers no pseudo-header.
            if old_sp != new_sp {
                let csum = load::<u16>(ctx, l4 + 2)?;
                store(ctx, l4 + 2, checksum::replace2(csum, old_sp, new_sp))?;
                store(ctx, l4 + 4, f.sport)?;
            }
        }
    }
    Ok(())
}
