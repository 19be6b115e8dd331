//! The local stage: what is not forwarded at all. ARP and the gateway's own addresses go to
//! the host stack, as do IPv6 link-scope and multicast destinations; a packet whose TTL ends
//! here is answered with Time Exceeded. Also what the host stack answers for ([`Owns`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hutong_common::Drop;

use super::{Compiled, Engine, Step, classify::FlowKey, icmp::IcmpError, ingress::Arrival};
use crate::{
    buffer::{Packet, Verdict},
    host::{Ask, Owns},
    packet::{L3, L4, Meta},
};

/// Multicast (ff00::/8) or link-local unicast (fe80::/10).
fn link_scope(a: Ipv6Addr) -> bool {
    a.is_multicast() || a.is_unicast_link_local()
}

impl Engine {
    /// The packet's flow, if it is to be forwarded; otherwise its verdict (to the host
    /// stack, dropped, or answered).
    pub(super) fn local(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        a: &Arrival,
        now_ns: u64,
        tr: &mut Option<Vec<Step>>,
    ) -> Result<FlowKey, Verdict> {
        let (m, vrf) = (&a.m, a.vrf);
        let (src, dst) = match m.l3 {
            L3::Arp => {
                self.glean_arp(t, pkt, m, a.port);
                step!(tr, "host", "ARP goes to the host stack");
                return Err(Verdict::ToHost);
            }
            L3::V4 { src, dst } => (IpAddr::V4(src), IpAddr::V4(dst)),
            L3::V6 { src, dst } => (IpAddr::V6(src), IpAddr::V6(dst)),
        };
        if t.is_local(vrf, dst) {
            step!(tr, "host", "{dst} is the gateway's own address");
            return Err(Verdict::ToHost);
        }
        if let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) {
            // Link-scope and multicast destinations (NDP, MLD, router discovery) are never
            // forwarded: the host stack's. Neither are packets from the unspecified or a
            // link-local source (RFC 4291 2.5.2, 2.5.6).
            if link_scope(d) {
                step!(tr, "host", "{dst} is link-scope or multicast");
                return Err(Verdict::ToHost);
            }
            if s.is_unspecified() || link_scope(s) {
                step!(tr, "route", "{src} never leaves its link");
                return Err(Verdict::Drop(Drop::NoRoute));
            }
        }
        if m.ttl <= 1 {
            step!(tr, "ttl", "TTL {} expires here", m.ttl);
            let kind = IcmpError::TimeExceeded;
            return Err(self.icmp_error(t, pkt, m, a.port, kind, now_ns, tr, Drop::TtlExpired));
        }
        let ports = match m.l4 {
            L4::Ports { src, dst, .. } => Some((src, dst)),
            _ => None,
        };
        Ok(FlowKey { vrf, src, dst, proto: m.proto, ports })
    }

    /// Learns the sender of an ARP packet addressed to one of our addresses, if the sender is
    /// on a connected subnet of the port it came in on (as the XDP program does).
    fn glean_arp(&mut self, t: &Compiled, pkt: &Packet, m: &Meta, port: usize) {
        let f = pkt.frame();
        let Some(arp) = f.get(m.l3_off..m.l3_off + 28) else { return };
        if arp[0..6] != [0, 1, 8, 0, 6, 4] {
            return;
        }
        let sender = IpAddr::V4(Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]));
        let target = IpAddr::V4(Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]));
        let vrf = t.ports[port].vrf;
        if !t.is_local(vrf, target) {
            return;
        }
        let on_link = t.fib.lookup(vrf, sender, 0).is_some_and(|h| h.port == port && h.via.is_none());
        if on_link {
            let mac: [u8; 6] = arp[8..14].try_into().expect("6 bytes");
            self.neighbors.insert((pkt.iface, m.vlan, sender), mac);
        }
    }
}

/// What the host stack answers for, by the config the engine runs: on a port, echo for the
/// gateway's addresses in the port's VRF and the NAT addresses there; ARP and NDP for the
/// port's own addresses and the NAT addresses on its subnets. Never for an address the kernel
/// holds (an untagged port's, put on its interface): the kernel answers for those itself, and
/// a packet socket sees their requests too.
impl Owns for Engine {
    fn owns(&self, iface: usize, vlan: Option<u16>, addr: IpAddr, ask: Ask) -> bool {
        let t = &self.tables;
        let Some(port) = self.port_of(iface, vlan) else { return false };
        let vrf = t.ports[port].vrf;
        let subnets = &t.config.ports[port].addresses;
        let kernels = t.config.ports.iter().any(|p| {
            p.vrf == vrf
                && p.vlan.is_none()
                && p.tunnel.is_none()
                && p.addresses.iter().any(|n| n.addr() == addr)
        });
        if kernels {
            return false;
        }
        match ask {
            Ask::Echo => t.is_local(vrf, addr) || t.is_nat_address(vrf, addr),
            Ask::Resolve => {
                subnets.iter().any(|n| n.addr() == addr)
                    || (t.is_nat_address(vrf, addr) && subnets.iter().any(|n| n.contains(&addr)))
            }
        }
    }
}
