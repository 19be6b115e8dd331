//! IPv6 in the program: the gateway's own, link-scope and multicast addresses to the host stack
//! (NDP lives there), policy rules, NPTv6 (RFC 6296), per-VRF LPM routing, neighbor lookup,
//! hop-limit decrement and the redirect. As the userspace engine does for the same packet; what
//! the program leaves out goes to the slow path unmodified: extension headers (fragments
//! included), hop limit 1 and below, ICMPv6 errors, and packets over the egress MTU.
//!
//! IPv6 has no header checksum, and NPTv6 is checksum-neutral, so the only checksum work is the
//! transport checksum's, done with the same `replace16` as userspace so both give equal bytes.

use aya_ebpf::{maps::lpm_trie::Key, programs::XdpContext};
use hutong_common::{
    Drop, MAX_RULES_PER_VRF, Neigh6Key, NeighKey, Npt6, PORT_SLOW, Port, RULE_COUNT, RULE_DENY, RULE_DPORTS,
    RULE_NPT6, RULE_PERMIT, RULE_PROTO, RULE_ROUTE_VIA, RULE_SPORTS, RULE_VIA_V4, V6Key, checksum,
    wire::{
        ETH_HLEN, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV6_HLEN, checksum_to_send, is_icmpv6_error,
        is_ipv6_extension,
    },
};

use crate::{
    classify::{NO_RULE, SCAN_PORTS, SCAN_UNDO},
    counters::count_rule,
    maps::{RULES_V6_0, RULES_V6_1, Tables, Tables6, tables6},
    parse::{load, load_into, ptr_at, store},
    xmit::{neighbor, neighbor6, slow_path, to_host, transmit},
};

/// The L4 header of an untagged IPv6 packet without extension headers: a constant offset.
const L4: usize = ETH_HLEN + IPV6_HLEN;

/// Validates the IPv6 header at `l3` and, without extension headers, the transport header, as
/// `dataplane::packet::parse` does. Returns the datagram's length and its next header.
/// Extension headers are walked by the slow path alone.
#[inline(always)]
pub fn validate(ctx: &XdpContext, l3: usize) -> Result<(usize, u8), Drop> {
    let h = load::<[u8; 8]>(ctx, l3)?;
    // The whole fixed header must be there.
    ptr_at::<[u8; IPV6_HLEN]>(ctx, l3)?;
    if h[0] >> 4 != 6 {
        return Err(Drop::Malformed);
    }
    let len = IPV6_HLEN + u16::from_be_bytes([h[4], h[5]]) as usize;
    if l3 + len > ctx.data_end() - ctx.data() {
        return Err(Drop::Malformed);
    }
    let next = h[6];
    let need = match next {
        IPPROTO_TCP => 20,
        IPPROTO_UDP | IPPROTO_ICMPV6 => 8,
        _ => 0,
    };
    let l4 = l3 + IPV6_HLEN;
    let end = l3 + (len & 0x1ffff);
    if l4 + need > end {
        return Err(Drop::Malformed);
    }
    if next == IPPROTO_TCP {
        let data_off = ((load::<u8>(ctx, l4 + 12)? >> 4) as usize) * 4;
        if data_off < 20 || l4 + data_off > end {
            return Err(Drop::Malformed);
        }
    }
    Ok((len, next))
}

/// Multicast (ff00::/8) or link-local unicast (fe80::/10): never forwarded, the host stack's.
#[inline(always)]
fn link_scope(a: &[u8; 16]) -> bool {
    a[0] == 0xff || (a[0] == 0xfe && a[1] & 0xc0 == 0x80)
}

/// The IPv6 part of the program, once the frame is validated (`len`, `next`: see [`validate`])
/// and untagged, arrived on `port`: the IPv4 pipeline's stages (see `crate::forward`) for IPv6,
/// [`local6`], decide ([`classify6`], then NPTv6), forward (route, MTU, next hop) and
/// [`rewrite6`].
///
/// NPTv6 and the forward stage stay here (issue 17), for the stack: this frame (368 bytes) and
/// `scan6`'s (96) share the verifier's 512, each rounded up to 32 bytes. NPTv6 as a helper
/// returns the translated addresses through a copy on the stack: when this frame was 408 bytes
/// that was refused ("combined stack size of 3 calls is 544. Too large"); at 368 it fits, at
/// 400, exactly the 512, with nothing to spare, so it stays here. Returning the changed halves
/// or translating in place was worse (over 512 in LLVM already). The forward stage as a helper
/// fitted only with ten arguments; with the packet's fields in a struct it did not.
#[inline(always)]
pub fn forward6(ctx: &XdpContext, t: &Tables, port: &Port, len: usize, next: u8) -> Result<u32, Drop> {
    let t6 = tables6(t.epoch);
    let hop_limit = load::<u8>(ctx, ETH_HLEN + 7)?;
    let (mut src, mut dst) = ([0; 16], [0; 16]);
    load_into(ctx, ETH_HLEN + 8, &mut src)?;
    load_into(ctx, ETH_HLEN + 24, &mut dst)?;
    let vrf = port.vrf;

    // --- local: what is not classified here ---------------------------------------------------
    if let Some(verdict) = local6(ctx, &t6, port, next, hop_limit, &src, &dst)? {
        return Ok(verdict);
    }
    let ports = match next {
        IPPROTO_TCP | IPPROTO_UDP => {
            let p = load::<[u8; 4]>(ctx, L4)?;
            Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
        }
        _ => None,
    };

    // --- decide: classify, translate -----------------------------------------------------------
    let (s, d) = (halves(&src), halves(&dst));
    let decided = classify6(t.epoch & 1, port, s, d, next, ports, false)?;
    let (new_src, new_dst, out_vrf) = match decided.action {
        RULE_NPT6 => {
            if let Some(n) = t6.npt_src.get(Key::new(V6Key::VRF_BITS + 128, V6Key::new(vrf, src))) {
                (npt(&src, n).ok_or(Drop::NoTranslation)?, dst, n.vrf_out)
            } else if let Some(n) = t6.npt_dst.get(Key::new(V6Key::VRF_BITS + 128, V6Key::new(vrf, dst))) {
                (src, npt(&dst, n).ok_or(Drop::NoTranslation)?, n.vrf_out)
            } else {
                return Err(Drop::NoTranslation);
            }
        }
        RULE_PERMIT | RULE_ROUTE_VIA => (src, dst, vrf),
        _ => return Err(Drop::NoTranslation),
    };

    // --- forward: the route (or the rule's fixed next hop), MTU, next hop ------------------------
    let (out_ifindex, nexthop) = if decided.action == RULE_ROUTE_VIA {
        (decided.via_ifindex, decided.via_nexthop)
    } else {
        let r =
            t6.fib.get(Key::new(V6Key::VRF_BITS + 128, V6Key::new(out_vrf, new_dst))).ok_or(Drop::NoRoute)?;
        (r.ifindex, r.nexthop)
    };
    let out_port = t.port(out_ifindex).ok_or(Drop::NoRoute)?;
    let src_mac = out_port.mac;
    // Over the egress MTU: packet-too-big is the slow path's (IPv6 routers never fragment). It
    // classifies the packet again, so the hits counted here are taken back.
    if len > out_port.mtu as usize {
        let _ = classify6(t.epoch & 1, port, s, d, next, ports, true);
        return Ok(slow_path(ctx, port));
    }
    let dst_mac = if decided.via_v4 {
        let key = NeighKey { ifindex: out_ifindex, addr: [nexthop[0], nexthop[1], nexthop[2], nexthop[3]] };
        neighbor(key).ok_or(Drop::NoNeighbor)?.mac
    } else {
        let key =
            Neigh6Key { ifindex: out_ifindex, addr: if nexthop == [0; 16] { new_dst } else { nexthop } };
        neighbor6(key).ok_or(Drop::NoNeighbor)?.mac
    };

    // --- rewrite (no drops past this point) ------------------------------------------------------
    rewrite6(ctx, next, hop_limit, (&src, &new_src), (&dst, &new_dst), (dst_mac, src_mac))?;
    Ok(transmit(ctx, port, out_port))
}

/// The two 64-bit halves of an address, as the rules hold them.
#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_ne_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]),
        u64::from_ne_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]),
    )
}

/// The local stage for IPv6: the host stack's packets (our own addresses, and link-scope and
/// multicast: NDP, MLD, RA), the ones that never leave their link, and the slow path's.
/// `None`: the packet goes on to be classified.
#[inline(always)]
fn local6(
    ctx: &XdpContext,
    t6: &Tables6,
    port: &Port,
    next: u8,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> Result<Option<u32>, Drop> {
    if link_scope(dst) || t6.is_local(V6Key::new(port.vrf, *dst)) {
        return Ok(Some(to_host(ctx, port)));
    }
    // RFC 4291 2.5.2 and 2.5.6: the unspecified and link-local sources never leave their link.
    if *src == [0; 16] || link_scope(src) {
        return Err(Drop::NoRoute);
    }
    // Extension headers (fragments among them), hop-limit expiry and ICMPv6 errors (RFC 4443,
    // quoting a packet NPTv6 may have to translate back) are the slow path's.
    if is_ipv6_extension(next) || hop_limit <= 1 || port.flags & PORT_SLOW != 0 {
        return Ok(Some(slow_path(ctx, port)));
    }
    if next == IPPROTO_ICMPV6 && is_icmpv6_error(load::<u8>(ctx, L4)?) {
        return Ok(Some(slow_path(ctx, port)));
    }
    Ok(None)
}

/// The rewrite stage for IPv6 (no drops past its start): the addresses with the transport
/// checksum kept right for them, the hop limit, the MACs.
#[inline(always)]
fn rewrite6(
    ctx: &XdpContext,
    next: u8,
    hop_limit: u8,
    (src, new_src): (&[u8; 16], &[u8; 16]),
    (dst, new_dst): (&[u8; 16], &[u8; 16]),
    (dst_mac, src_mac): ([u8; 6], [u8; 6]),
) -> Result<(), Drop> {
    let csum_at = match next {
        IPPROTO_TCP => Some(L4 + 16),
        IPPROTO_UDP => Some(L4 + 6),
        IPPROTO_ICMPV6 => Some(L4 + 2),
        _ => None,
    };
    for (old, new, at) in [(src, new_src, ETH_HLEN + 8), (dst, new_dst, ETH_HLEN + 24)] {
        if old == new {
            continue;
        }
        if let Some(c) = csum_at {
            let v = checksum::replace16(load::<u16>(ctx, c)?, old, new);
            // UDP over IPv6 always carries a checksum; a computed zero is sent as 0xffff.
            store(ctx, c, checksum_to_send(next, v))?;
        }
        store(ctx, at, *new)?;
    }
    store(ctx, ETH_HLEN + 7, hop_limit - 1)?;
    store(ctx, 0, dst_mac)?;
    store(ctx, 6, src_mac)
}

/// NPTv6 of `addr` by `n`: the first 64 bits get the new prefix and the adjusted word, exactly
/// as `dataplane::engine::translate::nptv6` computes them. `None`: not translatable.
#[inline(always)]
fn npt(addr: &[u8; 16], n: &Npt6) -> Option<[u8; 16]> {
    let hi = u64::from_ne_bytes([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7]]);
    let mut out = *addr;
    let b = ((hi & !n.mask) | n.to).to_ne_bytes();
    let w = checksum::nptv6_word(u16::from_ne_bytes([b[6], b[7]]), n.adjust)?.to_ne_bytes();
    out[..6].copy_from_slice(&b[..6]);
    out[6] = w[0];
    out[7] = w[1];
    Some(out)
}

/// What classification decided for an IPv6 packet.
struct Decided {
    action: u8,
    via_ifindex: u32,
    via_nexthop: [u8; 16],
    via_v4: bool,
}

/// `scan6`'s packed word: `hutong_scan`'s (ports, protocol, `SCAN_PORTS`, `SCAN_UNDO`), and above it
/// the table generation and the VRF's span of rules (count 7 bits, first 13 bits): five
/// scalars carry the two addresses and all of this.
const SCAN_GENERATION: u64 = 1 << 42;
const SCAN_COUNT_SHIFT: u64 = 43;
const SCAN_FIRST_SHIFT: u64 = 50;

/// Classifies by the port VRF's IPv6 rules, as `crate::classify::classify` does for IPv4.
#[inline(always)]
fn classify6(
    generation: u32,
    port: &Port,
    src: (u64, u64),
    dst: (u64, u64),
    proto: u8,
    ports: Option<(u16, u16)>,
    undo: bool,
) -> Result<Decided, Drop> {
    let (sp, dp, has) = ports.map_or((0u64, 0u64, 0), |(s, d)| (s as u64, d as u64, SCAN_PORTS));
    let word = ((port.rules6_first as u64) << SCAN_FIRST_SHIFT)
        | ((port.rules6_count as u64 & 0x7f) << SCAN_COUNT_SHIFT)
        | if generation != 0 { SCAN_GENERATION } else { 0 }
        | if undo { SCAN_UNDO } else { 0 }
        | has
        | ((proto as u64) << 32)
        | (sp << 16)
        | dp;
    let pos = scan6(src.0, src.1, dst.0, dst.1, word);
    if pos == NO_RULE {
        return Err(Drop::NoTranslation);
    }
    let r = tables6(generation).rules.get(pos).ok_or(Drop::NoTranslation)?;
    match r.action {
        RULE_DENY => Err(Drop::PolicyDeny),
        action => Ok(Decided {
            action,
            via_ifindex: r.via_ifindex,
            via_nexthop: r.via_nexthop,
            via_v4: r.flags & RULE_VIA_V4 != 0,
        }),
    }
}

/// Scans a VRF's IPv6 rules in order (see `crate::classify::hutong_scan`); every argument a
/// scalar. A static subprogram, which the verifier walks at each call in the caller's state:
/// as a global function, as `hutong_scan` is, the program's total rose (394,159 instructions
/// processed to 526,156), the IPv6 calls being few and its loop then walked for any word.
#[inline(never)]
fn scan6(src_hi: u64, src_lo: u64, dst_hi: u64, dst_lo: u64, word: u64) -> u32 {
    let rules = if word & SCAN_GENERATION == 0 { &RULES_V6_0 } else { &RULES_V6_1 };
    let first = (word >> SCAN_FIRST_SHIFT) as u32 & 0x1fff;
    let count = (word >> SCAN_COUNT_SHIFT) as u32 & 0x7f;
    let proto = (word >> 32) as u8;
    let (sp, dp) = ((word >> 16) as u16, word as u16);
    let delta = if word & SCAN_UNDO != 0 { u64::MAX } else { 1 };
    for i in 0..MAX_RULES_PER_VRF {
        if i >= count {
            break;
        }
        let pos = first + i;
        let Some(r) = rules.get(pos) else { break };
        if src_hi & r.src_mask[0] != r.src[0]
            || src_lo & r.src_mask[1] != r.src[1]
            || dst_hi & r.dst_mask[0] != r.dst[0]
            || dst_lo & r.dst_mask[1] != r.dst[1]
        {
            continue;
        }
        // `crate::classify::l4_matches`, written out: as a call it costs this frame stack the
        // verifier's 512-byte budget (main + subprogram) cannot spare.
        if r.flags & RULE_PROTO != 0 && r.proto != proto {
            continue;
        }
        if r.flags & (RULE_SPORTS | RULE_DPORTS) != 0 {
            if word & SCAN_PORTS == 0 {
                continue;
            }
            if r.flags & RULE_SPORTS != 0 && (sp < r.sport_lo || sp > r.sport_hi) {
                continue;
            }
            if r.flags & RULE_DPORTS != 0 && (dp < r.dport_lo || dp > r.dport_hi) {
                continue;
            }
        }
        count_rule(r.index, delta);
        if r.action != RULE_COUNT {
            return pos;
        }
    }
    NO_RULE
}
