//! The rewrite stage: the decision written into the packet, and the packet on its way.
//! Everything was looked up before this stage, so nothing here can fail: addresses and ports
//! (with the packet an ICMP error quotes, the other way round), TTL, a tunnel's GRE, MACs and
//! the VLAN tag, each with its checksums kept right incrementally.

use std::net::IpAddr;

use super::{
    Compiled, Engine, Step, classify::FlowKey, decide::Decision, forward::Egress, held, ingress::Arrival,
};
use crate::{
    buffer::{Packet, Verdict},
    packet::{
        self, End, L3, L4, Meta,
        embedded::{self, Embedded},
        rewrite,
    },
};

impl Engine {
    /// Writes `d` into the packet and sends it out as `e` says, or holds it for its next hop.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rewrite(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        a: &mut Arrival,
        key: &FlowKey,
        d: &Decision,
        e: Egress,
        now_ns: u64,
        tr: &mut Option<Vec<Step>>,
    ) -> Verdict {
        let m = &mut a.m;
        let f = pkt.frame_mut();
        translate(f, m, key, d);
        if let Some(quoted) = d.emb {
            translate_quoted(f, m, quoted, key, d);
        }
        translate_quoted_v6(f, m, key, d);
        rewrite::decrement_ttl(f, m);
        let mut vlan_in = m.vlan;
        if let Some(tun) = &t.ports[e.route_port].tunnel {
            let inner = if matches!(m.l3, L3::V4 { .. }) { packet::ETH_P_IPV4 } else { packet::ETH_P_IPV6 };
            let outer = packet::gre::outer(tun.local, tun.remote, m.ip_len(), inner, tun.key);
            pkt.encapsulate(m.l3_off, m.end, &outer);
            vlan_in = None;
            self.counters.port_tx_packets.add(e.route_port, 1);
        }
        rewrite::set_macs(pkt.frame_mut(), e.dst_mac, self.ifaces[e.out_iface].mac);
        retag(pkt, vlan_in, t.ports[e.phys].vlan);
        if let (Some(key), Some(h)) = (e.hold, self.held.as_mut()) {
            // Counted when it leaves (or is given up); its flow is offloaded by a later packet.
            let deadline_ns = now_ns + held::WAIT_NS;
            h.push(held::Entry { key, pkt: pkt.clone(), out_iface: e.out_iface, phys: e.phys, deadline_ns });
            return Verdict::Pending;
        }
        self.counters.port_tx_packets.add(e.phys, 1);
        self.counters.port_tx_bytes.add(e.phys, pkt.frame().len() as u64);
        step!(
            tr,
            "rewrite",
            "TTL {}, out of {} to {}",
            m.ttl,
            self.ifaces[e.out_iface].name,
            fmt_mac(&e.dst_mac)
        );
        self.record_offload(&e, d.rule);
        Verdict::Forward { iface: e.out_iface }
    }
}

/// The packet's own addresses and ports, as decided.
fn translate(f: &mut [u8], m: &mut Meta, key: &FlowKey, d: &Decision) {
    match (d.src, d.dst) {
        (IpAddr::V4(s), IpAddr::V4(dst)) => {
            if IpAddr::V4(s) != key.src {
                rewrite::set_ipv4_addr(f, m, End::Src, s);
            }
            if IpAddr::V4(dst) != key.dst {
                rewrite::set_ipv4_addr(f, m, End::Dst, dst);
            }
        }
        (IpAddr::V6(s), IpAddr::V6(dst)) => {
            if IpAddr::V6(s) != key.src {
                rewrite::set_ipv6_addr(f, m, End::Src, s);
            }
            if IpAddr::V6(dst) != key.dst {
                rewrite::set_ipv6_addr(f, m, End::Dst, dst);
            }
        }
        _ => unreachable!("translations keep the address family"),
    }
    let Some((sp, dp)) = d.ports else { return };
    match m.l4 {
        L4::Ports { src: a, dst: b, .. } => {
            if sp != a {
                rewrite::set_port(f, m, End::Src, sp);
            }
            if dp != b {
                rewrite::set_port(f, m, End::Dst, dp);
            }
        }
        L4::Icmp { ident, .. } => {
            let new = if sp != ident { sp } else { dp };
            if new != ident {
                rewrite::set_icmp_ident(f, m, new);
            }
        }
        L4::Opaque => {}
    }
}

/// RFC 5508: the packet an ICMP error quotes went the other way; it takes the reverse
/// translation, and the error's checksum is recomputed if anything changed.
fn translate_quoted(f: &mut [u8], m: &Meta, mut e: Embedded, key: &FlowKey, d: &Decision) {
    let mut changed = false;
    if let (IpAddr::V4(new_dst), IpAddr::V4(od)) = (d.dst, key.dst)
        && e.src == od
        && new_dst != od
    {
        embedded::set_addr(f, &mut e, End::Src, new_dst);
        changed = true;
    }
    if let (IpAddr::V4(new_src), IpAddr::V4(os)) = (d.src, key.src)
        && e.dst == os
        && new_src != os
    {
        embedded::set_addr(f, &mut e, End::Dst, new_src);
        changed = true;
    }
    if let Some(fix) = d.emb_ports {
        if let Some(p) = fix.src {
            embedded::set_port(f, &mut e, End::Src, p);
        }
        if let Some(p) = fix.dst {
            embedded::set_port(f, &mut e, End::Dst, p);
        }
        changed = true;
    }
    if changed {
        embedded::fix_icmp_checksum(f, m);
    }
}

/// RFC 6296 with ICMPv6 errors: the quoted packet takes the reverse translation.
fn translate_quoted_v6(f: &mut [u8], m: &Meta, key: &FlowKey, d: &Decision) {
    if let (Some((ip_off, es, ed)), IpAddr::V6(os), IpAddr::V6(od), IpAddr::V6(ns), IpAddr::V6(nd)) =
        (embedded::parse_v6(f, m), key.src, key.dst, d.src, d.dst)
    {
        if es == od && nd != od {
            embedded::set_addr_v6(f, ip_off, End::Src, nd);
        }
        if ed == os && ns != os {
            embedded::set_addr_v6(f, ip_off, End::Dst, ns);
        }
    }
}

/// The VLAN tag the egress port wants: pushed, popped or retagged (priority kept).
fn retag(pkt: &mut Packet, vlan_in: Option<u16>, vlan_out: Option<u16>) {
    match (vlan_in, vlan_out) {
        (None, Some(v)) => pkt.push_vlan(v),
        (Some(_), None) => pkt.pop_vlan(),
        (Some(a), Some(b)) if a != b => {
            let f = pkt.frame_mut();
            let tci = u16::from_be_bytes([f[14], f[15]]);
            f[14..16].copy_from_slice(&((tci & 0xf000) | b).to_be_bytes());
        }
        _ => {}
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}
