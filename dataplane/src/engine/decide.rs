//! The decide stage: what a packet becomes, before anything is written ([`Decision`]). A packet
//! of a NAT session passes as its session says (either direction, a later fragment, an ICMP
//! error about it); any other is classified by the ordered rules (default deny), and its rule's
//! action decides: NAPT, a published service, netmap, NPTv6, permit, route-via, deny.

use std::net::{IpAddr, Ipv4Addr};

use hutong_common::{
    Drop,
    wire::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST},
};

use super::{
    Compiled, Engine, Step, classify::FlowKey, compiled, icmp::IcmpError, ingress::Arrival, offload::Cache,
    translate,
};
use crate::{
    Action,
    buffer::{Packet, Verdict},
    fib::NextHop,
    nat::{self, SessionRef},
    packet::{self, Frag, L3, L4, Meta, embedded::Embedded},
};

/// The translation decided for a packet, before anything is written.
#[derive(Clone, Copy, Debug)]
pub(super) struct Decision {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub vrf: u32,
    /// A fixed egress from a route-via rule, instead of a FIB lookup.
    pub via: Option<NextHop>,
    /// New transport ports (or the ICMP echo identifier, twice) from a NAT session.
    pub ports: Option<(u16, u16)>,
    /// The packet an ICMP error quotes, and its new ports (RFC 5508).
    pub emb: Option<Embedded>,
    pub emb_ports: Option<EmbeddedPorts>,
    /// Whether the XDP program may repeat the decision.
    pub cache: Cache,
    /// The policy rule whose hit each repeated packet counts (a published service's inbound
    /// rule), by position in the config.
    pub rule: Option<u32>,
}

/// New ports for the packet an ICMP error quotes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct EmbeddedPorts {
    pub src: Option<u16>,
    pub dst: Option<u16>,
}

impl Decision {
    /// To `src` → `dst` in `vrf`, ports unchanged, routed by the FIB, not repeated by the program.
    fn to(src: IpAddr, dst: IpAddr, vrf: u32) -> Decision {
        Decision {
            src,
            dst,
            vrf,
            via: None,
            ports: None,
            emb: None,
            emb_ports: None,
            cache: Cache::No,
            rule: None,
        }
    }

    /// The packet as it is: same addresses, same VRF, routed by the FIB.
    fn unchanged(key: &FlowKey) -> Decision {
        Decision::to(key.src, key.dst, key.vrf)
    }

    /// A NAT translation's addresses and VRF, its ports left alone (a later fragment has none,
    /// an ICMP error's are its quoted packet's).
    fn addresses_of(x: nat::Xlat) -> Decision {
        Decision::to(IpAddr::V4(Ipv4Addr::from(x.src)), IpAddr::V4(Ipv4Addr::from(x.dst)), x.vrf)
    }

    /// A NAT translation, addresses and ports.
    fn of(x: nat::Xlat) -> Decision {
        Decision { ports: Some((x.sport, x.dport)), ..Decision::addresses_of(x) }
    }

    /// The decision for a whole packet of a session (`remote` is its far end as the session's
    /// filtering remembers it): the XDP program may repeat it.
    fn cached(mut self, x: &nat::Xlat, remote: (u32, u16)) -> Decision {
        self.cache = Cache::Yes(x.session.map(|session| SessionRef { session, remote }));
        self
    }
}

impl Engine {
    /// What the packet of `key` becomes; or its verdict, where it goes no further.
    pub(super) fn decide(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        a: &Arrival,
        key: &FlowKey,
        now_ns: u64,
        tr: &mut Option<Vec<Step>>,
    ) -> Result<Decision, Verdict> {
        let (m, vrf) = (&a.m, a.vrf);
        let now_s = (now_ns / 1_000_000_000) as u32;
        let emb = packet::embedded::parse(pkt.frame(), m);
        // Sessions first: return traffic and established flows pass as their session says.
        let d = match self.stateful(m, vrf, emb.as_ref(), now_s) {
            Err(d) => {
                step!(tr, "nat", "{}", d.name());
                return Err(Verdict::Drop(d));
            }
            Ok(Some(d)) => {
                step!(tr, "nat", "existing session");
                d
            }
            // An echo request to a pool's or a service's address, no session's: the gateway
            // answers for its NAT addresses as for its own.
            Ok(None)
                if m.proto == packet::IPPROTO_ICMP
                    && matches!(m.l4, L4::Icmp { kind: ICMP_ECHO_REQUEST, .. })
                    && m.frag == Frag::Whole
                    && t.is_nat_address(vrf, key.dst) =>
            {
                step!(tr, "host", "echo request to {}, a NAT address: the host stack answers", key.dst);
                return Err(Verdict::ToHost);
            }
            Ok(None) => self.by_rule(t, pkt, a, key, emb.is_some(), now_ns, tr)?,
        };
        if (d.src, d.dst) != (key.src, key.dst) || d.ports.is_some_and(|p| Some(p) != key.ports) {
            let (src, dst) = (key.src, key.dst);
            match d.ports {
                Some((a, b)) if m.proto != packet::IPPROTO_ICMP => {
                    step!(
                        tr,
                        "translate",
                        "{src} → {dst} becomes {}:{a} → {}:{b} in VRF {}",
                        d.src,
                        d.dst,
                        d.vrf
                    )
                }
                _ => step!(tr, "translate", "{src} → {dst} becomes {} → {} in VRF {}", d.src, d.dst, d.vrf),
            }
        }
        Ok(Decision { emb, ..d })
    }

    /// A packet no session knows: the first rule that matches decides (default deny).
    #[allow(clippy::too_many_arguments)]
    fn by_rule(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        a: &Arrival,
        key: &FlowKey,
        is_error: bool,
        now_ns: u64,
        tr: &mut Option<Vec<Step>>,
    ) -> Result<Decision, Verdict> {
        let hits = &mut self.counters.rule_hits;
        let mut counted = false;
        let rule = t.rules.classify(key, |i| {
            hits.add(i, 1);
            counted = true;
        });
        let Some(rule) = rule else {
            step!(tr, "classify", "no rule matches in VRF {}: default deny", key.vrf);
            return Err(Verdict::Drop(Drop::NoTranslation));
        };
        self.counters.rule_hits.add(rule, 1);
        let r = &t.rules.rules[rule];
        step!(tr, "classify", "rule {:?} → {:?}", r.name, r.action);
        let now_s = (now_ns / 1_000_000_000) as u32;
        match self.translate(t, &r.action, &a.m, key, is_error, now_s) {
            // A published service's inbound packets may be repeated by the program, which
            // counts the rule's hit itself (no count rule may have matched too).
            Ok(d) if r.action == Action::Dnat && !counted && a.m.frag == Frag::Whole => {
                Ok(Decision { cache: Cache::Yes(None), rule: Some(rule as u32), ..d })
            }
            Ok(d) => Ok(d),
            Err(Drop::PortsExhausted) => {
                step!(tr, "nat", "ports exhausted");
                let kind = IcmpError::AdminProhibited;
                Err(self.icmp_error(t, pkt, &a.m, a.port, kind, now_ns, tr, Drop::PortsExhausted))
            }
            Err(d) => {
                step!(tr, "translate", "{}", d.name());
                Err(Verdict::Drop(d))
            }
        }
    }

    /// Decides the translation for a matched rule without touching the packet.
    fn translate(
        &mut self,
        t: &Compiled,
        action: &Action,
        m: &Meta,
        key: &FlowKey,
        is_error: bool,
        now_s: u32,
    ) -> Result<Decision, Drop> {
        let same = Decision::unchanged(key);
        match action {
            Action::Napt { pool } => self.napt(t, pool, m, key.vrf, is_error, now_s),
            Action::Dnat => {
                let tuple = if is_error { None } else { nat_tuple(m, key.vrf) };
                let x = tuple.and_then(|tu| self.nat.service_inbound(&tu)).ok_or(Drop::NoTranslation)?;
                self.remember_fragment(m, key.vrf, x, now_s);
                Ok(Decision::of(x))
            }
            Action::Permit => Ok(same),
            Action::Deny => Err(Drop::PolicyDeny),
            Action::Count => unreachable!("count rules never decide"),
            Action::RouteVia { port, via } => {
                let port = t.config.ports.iter().position(|p| p.key() == *port).ok_or(Drop::NoRoute)?;
                Ok(Decision { via: Some(NextHop { port, via: *via }), ..same })
            }
            Action::Netmap => netmap(t, same),
            Action::Nptv6 => nptv6(t, same),
        }
    }

    /// A new NAPT session from `pool` (or the one this flow has).
    fn napt(
        &mut self,
        t: &Compiled,
        pool: &str,
        m: &Meta,
        vrf: u32,
        is_error: bool,
        now_s: u32,
    ) -> Result<Decision, Drop> {
        // An ICMP error never opens a session; it can only follow one (RFC 5508).
        let tuple = if is_error { None } else { nat_tuple(m, vrf) };
        let Some(tuple) = tuple else {
            return Err(match (m.frag, m.l3) {
                (Frag::Later { id }, L3::V4 { src, dst }) => {
                    self.unknown_fragment = Some((vrf, u32::from(src), u32::from(dst), m.proto, id as u16));
                    Drop::FragmentUnknown
                }
                _ => Drop::NoTranslation,
            });
        };
        let idx = t.config.nat_pools.iter().position(|p| p.name == *pool).ok_or(Drop::NoTranslation)? as u16;
        let mut x = self.nat.create(idx, &tuple, now_s)?;
        let ours = self.nat.hairpin(&mut x, tuple.class, now_s);
        self.remember_fragment(m, vrf, x, now_s);
        let d = Decision::of(x);
        if m.frag == Frag::Whole && !ours {
            let rport = if tuple.class == nat::sessions::ICMP { 0 } else { tuple.dport };
            return Ok(d.cached(&x, (tuple.dst, rport)));
        }
        Ok(d)
    }

    /// The NAT session stage: a packet of an existing session (either direction), a later
    /// fragment of a translated datagram, or an ICMP error about a session's packet.
    fn stateful(
        &mut self,
        m: &Meta,
        vrf: u32,
        emb: Option<&Embedded>,
        now: u32,
    ) -> Result<Option<Decision>, Drop> {
        let L3::V4 { src, dst } = m.l3 else { return Ok(None) };
        if !self.nat.involved(vrf) {
            return Ok(None);
        }
        let (s, d) = (u32::from(src), u32::from(dst));
        if let Frag::Later { id } = m.frag {
            let key = (vrf, s, d, m.proto, id as u16);
            let x = self.nat.recall_fragment(key, now);
            // To a pool's or a service's address, it can only be a session's: its first
            // fragment has not come yet.
            if x.is_none() && self.nat.is_outside_address(vrf, d) {
                self.unknown_fragment = Some(key);
                return Err(Drop::FragmentUnknown);
            }
            return Ok(x.map(Decision::addresses_of));
        }
        if let Some(e) = emb {
            return self.about_a_session(e, vrf, (s, d), now);
        }
        let Some(t) = nat_tuple(m, vrf) else { return Ok(None) };
        let remote_port = |p: u16| if t.class == nat::sessions::ICMP { 0 } else { p };
        if let Some(mut x) = self.nat.outbound_existing(&t, now) {
            // A packet to one of our own mappings depends on two sessions (and on the other's
            // filtering): the engine keeps it.
            let ours = self.nat.hairpin(&mut x, t.class, now);
            self.remember_fragment(m, vrf, x, now);
            let d = Decision::of(x);
            let whole = m.frag == Frag::Whole && !ours;
            return Ok(Some(if whole { d.cached(&x, (t.dst, remote_port(t.dport))) } else { d }));
        }
        if let Some(x) = self.nat.inbound_existing(&t, now)? {
            self.remember_fragment(m, vrf, x, now);
            let d = Decision::of(x);
            let whole = m.frag == Frag::Whole;
            return Ok(Some(if whole { d.cached(&x, (t.src, remote_port(t.sport))) } else { d }));
        }
        Ok(None)
    }

    /// An ICMP error (outer source and destination `s`, `d`) quoting a packet of a session.
    fn about_a_session(
        &mut self,
        e: &Embedded,
        vrf: u32,
        (s, d): (u32, u32),
        now: u32,
    ) -> Result<Option<Decision>, Drop> {
        // The quoted packet went the other way: its destination is our side of the session.
        let (Some((qs, qd)), Some(class)) = (e.ports, nat::class(e.proto)) else { return Ok(None) };
        let t = nat::Tuple {
            vrf,
            class,
            src: u32::from(e.dst),
            dst: u32::from(e.src),
            sport: qd,
            dport: qs,
            flags: 0,
        };
        if let Some(x) = self.nat.outbound_existing(&t, now) {
            // From inside: the outer source and the quoted destination become the mapping.
            let mut p = Decision::addresses_of(nat::Xlat { dst: d, ..x });
            p.emb_ports = Some(EmbeddedPorts { src: None, dst: Some(x.sport) });
            return Ok(Some(p));
        }
        if let Some(x) = self.nat.inbound_existing(&t, now)? {
            // From outside: the outer destination and the quoted source go back inside.
            let mut p = Decision::addresses_of(nat::Xlat { src: s, ..x });
            p.emb_ports = Some(EmbeddedPorts { src: Some(x.dport), dst: None });
            return Ok(Some(p));
        }
        Ok(None)
    }
}

/// Netmap: an inside source maps to its outside block, an outside destination back inside.
fn netmap(t: &Compiled, same: Decision) -> Result<Decision, Drop> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (same.src, same.dst) else { return Err(Drop::NoTranslation) };
    let find = |idx: &[compiled::NatIndex], a: Ipv4Addr| {
        idx.get(same.vrf as usize).and_then(|x| x.v4.as_ref()).and_then(|l| l.lookup(u32::from(a)))
    };
    if let Some(i) = find(&t.nat_inside, s) {
        let n = &t.config.netmaps[i as usize];
        Ok(Decision { src: IpAddr::V4(translate::netmap(s, n.outside)), vrf: n.outside_vrf, ..same })
    } else if let Some(i) = find(&t.nat_outside, d) {
        let n = &t.config.netmaps[i as usize];
        Ok(Decision { dst: IpAddr::V4(translate::netmap(d, n.inside)), vrf: n.inside_vrf, ..same })
    } else {
        Err(Drop::NoTranslation)
    }
}

/// NPTv6 (RFC 6296): an inside source prefix maps outside, an outside destination back inside.
fn nptv6(t: &Compiled, same: Decision) -> Result<Decision, Drop> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (same.src, same.dst) else { return Err(Drop::NoTranslation) };
    let find = |idx: &[compiled::NatIndex], a| {
        idx.get(same.vrf as usize).and_then(|x| x.v6.iter().find(|(n, _)| n.contains(&a)).map(|(_, i)| *i))
    };
    if let Some(i) = find(&t.nat_inside, s) {
        let n = &t.config.nptv6[i];
        let s2 = translate::nptv6(s, n.inside, n.outside).ok_or(Drop::NoTranslation)?;
        Ok(Decision { src: IpAddr::V6(s2), vrf: n.outside_vrf, ..same })
    } else if let Some(i) = find(&t.nat_outside, d) {
        let n = &t.config.nptv6[i];
        let d2 = translate::nptv6(d, n.outside, n.inside).ok_or(Drop::NoTranslation)?;
        Ok(Decision { dst: IpAddr::V6(d2), vrf: n.inside_vrf, ..same })
    } else {
        Err(Drop::NoTranslation)
    }
}

/// What NAT sees of an IPv4 packet, if it can translate it: TCP/UDP with ports, or an ICMP
/// echo request/reply with its identifier.
pub(super) fn nat_tuple(m: &Meta, vrf: u32) -> Option<nat::Tuple> {
    let L3::V4 { src, dst } = m.l3 else { return None };
    let class = nat::class(m.proto)?;
    let (sport, dport, flags) = match m.l4 {
        L4::Ports { src, dst, tcp_flags } => (src, dst, tcp_flags),
        L4::Icmp { kind: ICMP_ECHO_REPLY | ICMP_ECHO_REQUEST, ident, .. } => (ident, ident, 0),
        _ => return None,
    };
    Some(nat::Tuple { vrf, class, src: u32::from(src), dst: u32::from(dst), sport, dport, flags })
}
