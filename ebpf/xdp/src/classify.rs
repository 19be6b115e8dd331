//! The policy: a port VRF's IPv4 rules scanned in order, as `dataplane::engine::classify` does,
//! each match counting its hit; the first rule that is not a `count` rule decides. The scan is a
//! global function of scalars ([`hutong_scan`]) so the verifier walks its bounded loop once,
//! apart from the rest of the program. IPv6's scan (`crate::ipv6::scan6`) packs its packet
//! into the same word and shares [`NO_RULE`], [`SCAN_PORTS`] and [`SCAN_UNDO`].

use hutong_common::{
    Drop, MAX_RULES_PER_VRF, Port, RULE_COUNT, RULE_DENY, RULE_DPORTS, RULE_PROTO, RULE_SPORTS, Route,
};

use crate::{
    counters::count_rule,
    maps::{RULES_0, RULES_1, Tables},
};

/// No rule decided ([`hutong_scan`]'s answer).
pub(crate) const NO_RULE: u32 = u32::MAX;
/// [`hutong_scan`]'s packed packet word: the packet carries ports; the scan takes its hits back.
pub(crate) const SCAN_PORTS: u64 = 1 << 40;
pub(crate) const SCAN_UNDO: u64 = 1 << 41;

/// Classifies by the port VRF's rules: the deciding action (deny drops here; no match is the
/// default deny) and, for route-via, its next hop. `undo` takes back the hits of an earlier
/// call for the same packet (it goes to the slow path, which classifies it again).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn classify(
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
    let pos = hutong_scan(t.epoch & 1, span, src, dst, word);
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
/// Returns the deciding rule's position, or `NO_RULE`.
///
/// A global function (`no_mangle`, `extern "C"`: its BTF linkage is global) of scalars only, so
/// the verifier checks it once, for any arguments, apart from the rest of the program ("Func#N
/// ('hutong_scan') is safe for any args that match its prototype"). As a static subprogram it
/// was walked again, all 64 iterations, at each call in each state the program reached it in:
/// 793,147 instructions processed for the program then, half that since (issue 17). Its answer
/// is then any `u32` to the verifier: callers check it (`NO_RULE`, the map lookup).
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn hutong_scan(generation: u32, span: u32, src: u32, dst: u32, word: u64) -> u32 {
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
