//! Offloads: decisions the XDP program may repeat for a flow's next packets in the kernel
//! ([`Offload`]), recorded when the engine runs behind the program (see `crate::xdp::flows`).

use std::net::{IpAddr, Ipv4Addr};

use hutong_common::wire::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, TCP_STATE_FLAGS};

use super::{Engine, decide::Decision, forward::Egress};
use crate::{
    nat::SessionRef,
    packet::{Frag, L3, L4, Meta},
};

/// A forwarding decision the XDP program may repeat for the following packets of the same
/// flow, recorded after [`Engine::track_offloads`]: a whole, untagged IPv4 TCP/UDP/ICMP-echo
/// packet of an established NAT session (or a published service's reply), without SYN, FIN or
/// RST, not hairpinned, leaving untagged and unencapsulated. See `crate::xdp::flows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    /// The packet as it arrived: VRF, protocol, addresses, ports (ICMP echo: the identifier and
    /// the type).
    pub vrf: u32,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// What it became.
    pub new_src: Ipv4Addr,
    pub new_dst: Ipv4Addr,
    pub new_sport: u16,
    pub new_dport: u16,
    /// The engine interface it left by, and the next hop there.
    pub iface: usize,
    pub next_hop: Ipv4Addr,
    /// The NAT session it depends on (outside key) and the remote endpoint it talks to, as
    /// the session's filtering remembers it; `None` when it depends on the config alone.
    pub session: Option<SessionRef>,
    /// The policy rule whose hit each repeated packet counts (a published service's inbound
    /// `dnat` rule), by position in the config.
    pub rule: Option<u32>,
}

/// Whether a decision may be repeated by the XDP program (see [`Offload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cache {
    No,
    /// For as long as this session lives and remembers this remote, or (no session) as long as
    /// the config.
    Yes(Option<SessionRef>),
}

/// At most this many offloads are kept between [`Engine::take_offloads`] calls.
const MAX_OFFLOADS: usize = 4096;

impl Engine {
    /// From now on, records the decisions the XDP program may repeat ([`Offload`]) and what
    /// happens to NAT sessions ([`nat::NatEvent`](crate::nat::NatEvent)).
    pub fn track_offloads(&mut self) {
        self.offloads.get_or_insert_with(Vec::new);
        self.nat.track_events();
    }

    /// The offloads recorded since the last call.
    pub fn take_offloads(&mut self) -> Vec<Offload> {
        self.offloads.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Grows with every config the engine adopts; an offload holds only within its generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Records what the XDP program may repeat of a packet just forwarded by `e`.
    pub(super) fn record_offload(&mut self, e: &Egress, rule: Option<u32>) {
        if let (Some(mut o), Some(list), IpAddr::V4(next)) = (e.offload, self.offloads.as_mut(), e.next) {
            if list.len() < MAX_OFFLOADS {
                o.iface = e.out_iface;
                o.next_hop = next;
                o.rule = rule;
                list.push(o);
            }
        }
    }
}

/// The offload of a packet about to be forwarded as `d` decided (interface and next hop filled in by
/// the caller), if the XDP program can repeat it: see [`Offload`].
pub(super) fn offload_of(m: &Meta, vrf: u32, d: &Decision, session: Option<SessionRef>) -> Option<Offload> {
    let (L3::V4 { src, dst }, IpAddr::V4(new_src), IpAddr::V4(new_dst)) = (m.l3, d.src, d.dst) else {
        return None;
    };
    if m.vlan.is_some() || m.frag != Frag::Whole {
        return None;
    }
    let (sport, dport, new_sport, new_dport) = match (m.l4, d.ports) {
        // SYN, FIN and RST change the session's state: the userspace engine must see them.
        (L4::Ports { src, dst, tcp_flags }, Some((a, b))) if tcp_flags & TCP_STATE_FLAGS == 0 => {
            (src, dst, a, b)
        }
        (L4::Icmp { kind: kind @ (ICMP_ECHO_REPLY | ICMP_ECHO_REQUEST), ident, .. }, Some((a, b))) => {
            let new = if a != ident { a } else { b };
            (ident, kind as u16, new, kind as u16)
        }
        _ => return None,
    };
    Some(Offload {
        vrf,
        proto: m.proto,
        src,
        dst,
        sport,
        dport,
        new_src,
        new_dst,
        new_sport,
        new_dport,
        iface: 0,
        next_hop: Ipv4Addr::UNSPECIFIED,
        session,
        rule: None,
    })
}
