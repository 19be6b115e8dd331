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
//!
//! This file is the entry and the pipeline (`forward`: parse, port, the IPv4 decisions in
//! order); the rest by concern: `maps` (every map, and the table generation a packet uses),
//! `parse` (`ptr_at`, IPv4 validation), `vlan` (tags), `flow` (established sessions by
//! `FLOWS`), `classify` (the rule scan), `xmit` (neighbors, the rewrite, and the ways out:
//! redirect, slow path, host stack), `counters`, and `ipv6`. The wire-format numbers come from
//! `hutong_common::wire`, shared with the userspace engine. Everything `forward` calls is
//! `#[inline(always)]` (the rule scans alone are subprograms): keep it so, the verifier's
//! budget depends on it.
#![no_std]
#![no_main]

mod classify;
mod counters;
mod flow;
mod ipv6;
mod maps;
mod parse;
mod vlan;
mod xmit;

use aya_ebpf::{bindings::xdp_action, macros::xdp, maps::lpm_trie::Key, programs::XdpContext};
use hutong_common::{
    Drop, NETMAP_SESSION_FREE, NeighKey, PORT_BARE, PORT_FLOWS, PORT_NAPT_INSIDE, PORT_NAT_OUT, PORT_SLOW,
    RULE_NETMAP, RULE_PERMIT, RULE_ROUTE_VIA, RULE_SLOW, Stat, V4Key, checksum, vlan_port_key,
    wire::{
        ETH_HLEN, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, VLAN_HLEN,
        checksum_absent, checksum_to_send, is_icmp_error, is_vlan_tpid,
    },
};

use crate::{
    classify::classify,
    counters::{count, count_port},
    flow::by_flow,
    maps::{DROPS, STATS, TAG, lookup_nat, lookup_out, tables},
    parse::{ptr_at, read_u16, validate_ipv4},
    vlan::pop_tag,
    xmit::{glean_arp, neighbor, rewrite_ip, slow_path, to_host, transmit, unresolved},
};

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

// Inlined into the entry: as a call of its own, its `Result` comes back through a pointer to the
// caller's stack, which the verifier refuses ("cannot return stack pointer to the caller").
// Not cut into stages (issue 17) yet: every cut tried (ingress, local, decide, forward, rewrite
// as `#[inline(always)]` helpers, with or without decide and forward left here) was refused,
// by a stack slot reused across types ("pointer arithmetic on map_ptr prohibited") or by the
// 1,000,000-instruction budget.
#[inline(always)]
fn forward(ctx: &XdpContext) -> Result<u32, Drop> {
    let t = tables();
    // --- parse first, as the userspace engine does: the same frame gets the same drop reason ----
    let mut ethertype = read_u16(ctx, 12)?;
    let mut l3 = ETH_HLEN;
    // The 802.1Q (or 802.1ad) tag as TPID << 16 | TCI; 0: untagged.
    let mut tag = 0u32;
    if is_vlan_tpid(ethertype) {
        tag = ((ethertype as u32) << 16) | read_u16(ctx, 14)? as u32;
        ethertype = read_u16(ctx, 16)?;
        l3 = ETH_HLEN + VLAN_HLEN;
        if is_vlan_tpid(ethertype) {
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
            let tpa = unsafe { ptr_at::<u32>(ctx, ETH_HLEN + 24)?.read_unaligned() };
            if lookup_out(t.nat_out, port.vrf, tpa) {
                return Ok(slow_path(ctx, port));
            }
        }
        return Ok(to_host(ctx, port));
    };
    let ip = ptr_at::<[u8; 20]>(ctx, ETH_HLEN)?;
    let ihl = ((unsafe { (*ip)[0] } & 0x0f) as usize) * 4;
    let ttl = unsafe { (*ip)[8] };
    let src = unsafe { ptr_at::<u32>(ctx, ETH_HLEN + 12)?.read_unaligned() };
    let dst = unsafe { ptr_at::<u32>(ctx, ETH_HLEN + 16)?.read_unaligned() };

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
        let kind = unsafe { *ptr_at::<u8>(ctx, ETH_HLEN + (ihl & 0x3c))? };
        if is_icmp_error(kind) {
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
        let p = unsafe { *ptr_at::<[u8; 4]>(ctx, ETH_HLEN + (ihl & 0x3c))? };
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
    let neigh = neighbor(NeighKey { ifindex: out_ifindex, addr: nexthop });
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
    let l4 = ETH_HLEN + (ihl & 0x3c);

    // --- rewrite (no drops past this point) ------------------------------------------------------
    if let Some(off) = l4_csum {
        let csum_ptr = ptr_at::<u16>(ctx, l4 + off)?;
        let old = unsafe { csum_ptr.read_unaligned() };
        // A zero UDP checksum means "none" (RFC 768) and stays zero.
        if !checksum_absent(false, proto, old) {
            let mut new = checksum::replace4(old, src, new_src);
            new = checksum::replace4(new, dst, new_dst);
            // A computed zero is sent as 0xffff.
            unsafe { csum_ptr.write_unaligned(checksum_to_send(proto, new)) };
        }
    }
    rewrite_ip(ctx, (ttl, proto), (src, new_src), (dst, new_dst), (dst_mac, src_mac))?;
    Ok(transmit(ctx, port, out_port))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
