//! The hutong XDP program: stateless netmap between legacy VRFs and the extranet (NPTv6 for
//! IPv6, in `ipv6`), per-VRF LPM routing, neighbor lookup, TTL decrement with incremental
//! checksums, and a redirect to the egress port. Established NAT sessions are forwarded here
//! too, by the flows the slow path writes into `FLOWS` once the userspace engine has decided a
//! connection's first packet.
//! Everything the config does not publish is dropped and counted by reason.
//!
//! Shape notes for the verifier (do not "simplify" these away):
//! - every packet access goes through `ptr_at` (by `parse::load`, `load_into` and `store`, which
//!   hold the program's only `unsafe` reads and write of the frame), which re-checks `data_end`
//!   for that exact range;
//! - the IPv4 header length is masked to at most 60 bytes before it is used as an offset, so the
//!   verifier can bound the L4 pointer;
//! - all lookups happen before the first write, so a dropped packet leaves the program unmodified;
//! - the IPv4 rule scan (`classify::hutong_scan`) is a global function: the verifier checks it
//!   once, on its own, instead of again at every call in every state the rest of the program
//!   reaches it in (793,147 instructions processed before, about 330,000 now). `ipv6::scan6`
//!   stays a static subprogram: as a global one the total rose (394,159 to 526,156);
//! - the stages hand each other scalars (and structs of scalars); a map value (`&Port`) is only
//!   passed down into a stage, never returned out of one.
//!
//! This file is the entry and the IPv4 pipeline: `forward`, and its stages in the userspace
//! engine's order and names: ingress (`parse`, the port), `local`, decide (`classify`,
//! `translate`), forward (`egress`), `rewrite`; ARP in `arp`. The rest by concern: `maps`
//! (every map, and the table generation a packet uses), `parse` (`ptr_at`, `load`, `store`,
//! IPv4 validation), `vlan` (tags), `flow` (established sessions by `FLOWS`), `classify` (the
//! rule scan), `xmit` (neighbors, the rewrite, and the ways out: redirect, slow path, host
//! stack), `counters`, and `ipv6`. The wire-format numbers come from `hutong_common::wire`,
//! shared with the userspace engine. Everything `forward` calls is `#[inline(always)]` (the
//! rule scans alone are subprograms): keep it so, the verifier's budget depends on it, and so
//! does its 512-byte stack, which this frame shares with a scan's.
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
    Port, RULE_NETMAP, RULE_PERMIT, RULE_ROUTE_VIA, RULE_SLOW, Route, Stat, V4Key, checksum, vlan_port_key,
    wire::{
        ETH_HLEN, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, VLAN_HLEN,
        checksum_absent, checksum_to_send, is_icmp_error, is_vlan_tpid,
    },
};

use crate::{
    classify::classify,
    counters::{count, count_port},
    flow::by_flow,
    maps::{DROPS, STATS, TAG, Tables, lookup_nat, lookup_out, tables},
    parse::{load, read_u16, store, validate_ipv4},
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
// The pipeline, in the userspace engine's stages (issue 17): ingress (`parse`, the port), then
// ARP (`arp`), IPv6 (`ipv6::forward6`) or IPv4: `local`, decide (`classify`, `translate`),
// forward (`egress`: route, MTU, next hop) and `rewrite`. Every stage is `#[inline(always)]`
// and hands on scalars (or an `Ip4` or `Decision` of scalars); map values (`&Port`) only go
// down into the stages, never come back out of one. Cut so only once the IPv4 scan was a
// global function: before, the forward stage as a helper took the verifier over its budget
// ("BPF program is too large. Processed 1000001 insn").
#[inline(always)]
fn forward(ctx: &XdpContext) -> Result<u32, Drop> {
    let t = tables();
    // --- ingress: parse first, as the userspace engine does: the same frame, the same drop ------
    let (tag, l3) = parse(ctx)?;
    // --- the port: the interface, and the VLAN of a tagged frame ---------------------------------
    let ifindex = ctx.ingress_ifindex() as u32;
    let iface = t.port(ifindex).ok_or(Drop::UnknownPort)?;
    let (port, key) = if tag == 0 {
        if iface.flags & PORT_BARE != 0 {
            return Err(Drop::UnknownPort);
        }
        (iface, ifindex)
    } else {
        let key = vlan_port_key(iface.slot, tag as u16);
        (t.port(key).ok_or(Drop::UnknownPort)?, key)
    };
    count_port(ctx, port.slot, false);
    // From here on the frame is untagged: the tag goes back on (or another one) as it leaves.
    // It waits in `TAG`, not in a register: a register would split every path below in two
    // for the verifier (tagged, untagged), and the program would no longer fit its budget.
    // Only a VLAN port (`port.vlan != 0`) is found from a tagged frame, so that says whether.
    if tag != 0 {
        pop_tag(ctx)?;
        if let Some(slot) = TAG.get_ptr_mut(0) {
            // SAFETY: a per-CPU array's slot, from its lookup: valid for this run, and no other
            // CPU, nor another run (XDP runs to completion on its CPU), writes it meanwhile.
            unsafe { *slot = tag };
        }
    }
    let ip = match l3 {
        L3::Ipv6((len, next)) => return ipv6::forward6(ctx, &t, port, len, next),
        L3::Arp => return arp(ctx, &t, key, port),
        L3::Ipv4(valid) => Ip4::read(ctx, valid)?,
    };
    // --- local: what is not classified here -----------------------------------------------------
    if let Some(verdict) = local(ctx, &t, port, &ip)? {
        return Ok(verdict);
    }
    // --- decide: the port VRF's rules in order (none denies everything), then the netmap --------
    let ports = ip.ports(ctx)?;
    let (rule, via) = classify(&t, port, ip.src, ip.dst, ip.proto, ports, false)?;
    // A new session: the slow path creates it, and classifies (and counts) the packet again.
    if rule == RULE_SLOW {
        let _ = classify(&t, port, ip.src, ip.dst, ip.proto, ports, true);
        return Ok(slow_path(ctx, port));
    }
    let (new_src, new_dst, out_vrf) = translate(&t, rule, port.vrf, ip.src, ip.dst)?;
    let d = Decision { rule, via, ports, new_src, new_dst, out_vrf };
    // --- forward, then rewrite ------------------------------------------------------------------
    egress(ctx, &t, port, &ip, &d)
}

/// What the parse found after the Ethernet header (and a VLAN tag): a validated IPv4 or IPv6
/// header (`parse::validate_ipv4`, `ipv6::validate`), or ARP.
enum L3 {
    /// Its total length, fragment offset, more-fragments flag and protocol.
    Ipv4((usize, u16, bool, u8)),
    /// Its payload length plus the fixed header's, and its next header.
    Ipv6((usize, u8)),
    Arp,
}

/// The ingress parse: the frame's 802.1Q (or 802.1ad) tag as TPID << 16 | TCI (0: untagged),
/// and its validated network header.
#[inline(always)]
fn parse(ctx: &XdpContext) -> Result<(u32, L3), Drop> {
    let mut ethertype = read_u16(ctx, 12)?;
    let mut l3 = ETH_HLEN;
    let mut tag = 0u32;
    if is_vlan_tpid(ethertype) {
        tag = ((ethertype as u32) << 16) | read_u16(ctx, 14)? as u32;
        ethertype = read_u16(ctx, 16)?;
        l3 = ETH_HLEN + VLAN_HLEN;
        if is_vlan_tpid(ethertype) {
            return Err(Drop::UnsupportedProtocol);
        }
    }
    let l3 = match ethertype {
        ETH_P_IPV4 => L3::Ipv4(validate_ipv4(ctx, l3)?),
        ETH_P_IPV6 => L3::Ipv6(ipv6::validate(ctx, l3)?),
        ETH_P_ARP => L3::Arp,
        _ => return Err(Drop::UnsupportedProtocol),
    };
    Ok((tag, l3))
}

/// The IPv4 header's fields the stages use, read once (the frame untagged by then).
struct Ip4 {
    total_len: usize,
    frag_off: u16,
    more_frags: bool,
    proto: u8,
    /// The header length in bytes, masked to at most 60 where it is an offset.
    ihl: usize,
    ttl: u8,
    src: u32,
    dst: u32,
}

impl Ip4 {
    /// The header's fields, with those `parse::validate_ipv4` found.
    #[inline(always)]
    fn read(
        ctx: &XdpContext,
        (total_len, frag_off, more_frags, proto): (usize, u16, bool, u8),
    ) -> Result<Ip4, Drop> {
        let ip = load::<[u8; 20]>(ctx, ETH_HLEN)?;
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        let ttl = ip[8];
        let src = load::<u32>(ctx, ETH_HLEN + 12)?;
        let dst = load::<u32>(ctx, ETH_HLEN + 16)?;
        Ok(Ip4 { total_len, frag_off, more_frags, proto, ihl, ttl, src, dst })
    }

    /// The transport header's offset in the frame. The mask keeps it provably within 60 bytes
    /// for the verifier.
    #[inline(always)]
    fn l4(&self) -> usize {
        ETH_HLEN + (self.ihl & 0x3c)
    }

    /// The TCP or UDP ports of a whole datagram or a first fragment, for the rules.
    #[inline(always)]
    fn ports(&self, ctx: &XdpContext) -> Result<Option<(u16, u16)>, Drop> {
        if self.frag_off != 0 || (self.proto != IPPROTO_TCP && self.proto != IPPROTO_UDP) {
            return Ok(None);
        }
        let p = load::<[u8; 4]>(ctx, self.l4())?;
        Ok(Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))))
    }
}

/// The local stage, and the packets the program hands on undecided: the gateway's own addresses
/// (the host stack's), TTL expiry and ICMP errors (the slow path's), an established session's
/// flow (`by_flow`), and what only the slow path decides. `None`: the packet goes on to be
/// classified.
#[inline(always)]
fn local(ctx: &XdpContext, t: &Tables, port: &Port, ip: &Ip4) -> Result<Option<u32>, Drop> {
    let (vrf, src, dst) = (port.vrf, ip.src, ip.dst);
    // The gateway's own addresses go to its host stack.
    if t.is_local(V4Key::new(vrf, dst.to_ne_bytes())) {
        return Ok(Some(to_host(ctx, port)));
    }
    // TTL expiry is answered with ICMP, and ICMP errors carry a packet to translate too: both are
    // the slow path's (RFC 1812 time exceeded, RFC 5508).
    if ip.ttl <= 1 {
        return Ok(Some(slow_path(ctx, port)));
    }
    if ip.proto == IPPROTO_ICMP && ip.frag_off == 0 {
        let kind = load::<u8>(ctx, ip.l4())?;
        if is_icmp_error(kind) {
            return Ok(Some(slow_path(ctx, port)));
        }
    }
    // An established NAT session's packet: the slow path decided its flow already. Only whole
    // datagrams: a fragment's translation is remembered by the userspace engine alone.
    if port.flags & PORT_FLOWS != 0 && ip.frag_off == 0 && !ip.more_frags {
        if let Some(verdict) = by_flow(ctx, t, port, ip.proto, ip.ihl, ip.ttl, src, dst, ip.total_len)? {
            return Ok(Some(verdict));
        }
    }
    // To a pool's or a service's outside address, and no flow: a session's packet the program
    // was not handed (its first answer, SYN/FIN/RST, a later fragment), or a new session.
    if port.flags & PORT_NAT_OUT != 0 && lookup_out(t.nat_out, vrf, dst) {
        return Ok(Some(slow_path(ctx, port)));
    }
    // The config asks for something the program does not implement on this port.
    if port.flags & PORT_SLOW != 0 {
        return Ok(Some(slow_path(ctx, port)));
    }
    // A NAPT pool's inside: sessions decide first (the slow path's), but for sources no session
    // can have.
    if port.flags & PORT_NAPT_INSIDE != 0
        && !lookup_nat(t.nat_src, vrf, src).is_some_and(|nm| nm.flags & NETMAP_SESSION_FREE != 0)
    {
        return Ok(Some(slow_path(ctx, port)));
    }
    Ok(None)
}

/// An ARP frame that arrived on `port` (found by `key`): its sender learned (see `glean_arp`),
/// then the host stack answers it.
#[inline(always)]
fn arp(ctx: &XdpContext, t: &Tables, key: u32, port: &Port) -> Result<u32, Drop> {
    glean_arp(ctx, t, key, port.vrf);
    // ARP for a pool's or a service's address: the kernel holds no such address, the slow
    // path's host stack answers (where it is on the port's subnet).
    if port.flags & PORT_NAT_OUT != 0 {
        let tpa = load::<u32>(ctx, ETH_HLEN + 24)?;
        if lookup_out(t.nat_out, port.vrf, tpa) {
            return Ok(slow_path(ctx, port));
        }
    }
    Ok(to_host(ctx, port))
}

/// The translate step of decide: netmap the source (legacy -> extranet) or the destination (the
/// reverse) for a netmap rule, nothing for permit and route-via. The new source, destination and
/// the VRF the packet is routed in.
#[inline(always)]
fn translate(t: &Tables, rule: u8, vrf: u32, src: u32, dst: u32) -> Result<(u32, u32, u32), Drop> {
    match rule {
        RULE_NETMAP => {
            if let Some(nm) = lookup_nat(t.nat_src, vrf, src) {
                Ok((nm.apply(src), dst, nm.vrf_out))
            } else if let Some(nm) = lookup_nat(t.nat_dst, vrf, dst) {
                Ok((src, nm.apply(dst), nm.vrf_out))
            } else {
                Err(Drop::NoTranslation)
            }
        }
        RULE_PERMIT | RULE_ROUTE_VIA => Ok((src, dst, vrf)),
        _ => Err(Drop::NoTranslation),
    }
}

/// What decide made of an IPv4 packet: the deciding rule's action (and a route-via rule's next
/// hop), the ports it was classified by, and the translated addresses with their VRF.
struct Decision {
    rule: u8,
    via: Route,
    ports: Option<(u16, u16)>,
    new_src: u32,
    new_dst: u32,
    out_vrf: u32,
}

/// The forward stage: the route (or the rule's fixed next hop), the egress port's MTU and the
/// next hop's MAC, then the rewrite. Over the MTU (fragmentation-needed with DF, or a drop), or
/// no MAC for the next hop yet (held until it answers, see `unresolved`): the slow path's.
#[inline(always)]
fn egress(ctx: &XdpContext, t: &Tables, port: &Port, ip: &Ip4, d: &Decision) -> Result<u32, Drop> {
    let route = if d.rule == RULE_ROUTE_VIA {
        d.via
    } else {
        *t.fib
            .get(Key::new(V4Key::VRF_BITS + 32, V4Key::new(d.out_vrf, d.new_dst.to_ne_bytes())))
            .ok_or(Drop::NoRoute)?
    };
    let out_ifindex = route.ifindex;
    let out_port = t.port(out_ifindex).ok_or(Drop::NoRoute)?;
    let nexthop = if route.nexthop == [0; 4] { d.new_dst.to_ne_bytes() } else { route.nexthop };
    let neigh = neighbor(NeighKey { ifindex: out_ifindex, addr: nexthop });
    // The slow path classifies the packet again, so the hits counted here are taken back (one
    // call for both: the program's size).
    let too_big = ip.total_len > out_port.mtu as usize;
    if too_big || neigh.is_none() {
        let _ = classify(t, port, ip.src, ip.dst, ip.proto, d.ports, true);
        return if too_big { Ok(slow_path(ctx, port)) } else { unresolved(ctx, port) };
    }
    let Some(neigh) = neigh else { return Err(Drop::NoNeighbor) };
    let dst_mac = neigh.mac;
    rewrite(ctx, port, out_port, ip, d, dst_mac)
}

/// The rewrite stage (no drops past its start): the L4 checksum (only a first fragment or a
/// whole datagram carries one), the IPv4 header and the MACs, then the way out of `out_port`.
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    port: &Port,
    out_port: &Port,
    ip: &Ip4,
    d: &Decision,
    dst_mac: [u8; 6],
) -> Result<u32, Drop> {
    let (src, dst, proto, new_src, new_dst) = (ip.src, ip.dst, ip.proto, d.new_src, d.new_dst);
    let l4_csum: Option<usize> = if ip.frag_off != 0 || (new_src == src && new_dst == dst) {
        None
    } else {
        match proto {
            IPPROTO_TCP => Some(16),
            IPPROTO_UDP => Some(6),
            _ => None,
        }
    };
    if let Some(off) = l4_csum {
        let at = ip.l4() + off;
        let old = load::<u16>(ctx, at)?;
        // A zero UDP checksum means "none" (RFC 768) and stays zero.
        if !checksum_absent(false, proto, old) {
            let mut new = checksum::replace4(old, src, new_src);
            new = checksum::replace4(new, dst, new_dst);
            // A computed zero is sent as 0xffff.
            store(ctx, at, checksum_to_send(proto, new))?;
        }
    }
    rewrite_ip(ctx, (ip.ttl, proto), (src, new_src), (dst, new_dst), (dst_mac, out_port.mac))?;
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
