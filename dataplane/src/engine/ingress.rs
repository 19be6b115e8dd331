//! Ingress, the pipeline's first stage: parse the frame, find the port (interface + VLAN) it
//! arrived on and so its VRF, and take a tunnel's packets out of their GRE.

use hutong_common::Drop;

use super::{Compiled, Engine, Step};
use crate::{
    buffer::{Packet, Verdict},
    packet::{self, Frag, L3, Meta},
};

/// A packet as ingress found it: parsed (the inner packet, if it came through a tunnel), and
/// the port it arrived on, with that port's VRF.
pub(super) struct Arrival {
    pub m: Meta,
    pub port: usize,
    pub vrf: u32,
}

impl Engine {
    /// Parses `pkt` and finds its port; a tunnel's packet continues as its inner packet, as
    /// received on the tunnel port.
    pub(super) fn ingress(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        tr: &mut Option<Vec<Step>>,
    ) -> Result<Arrival, Verdict> {
        let len = pkt.frame().len() as u64;
        let m = match packet::parse(pkt.frame()) {
            Ok(m) => m,
            Err(d) => {
                step!(tr, "parse", "{}", d.name());
                return Err(Verdict::Drop(d));
            }
        };
        step!(tr, "parse", "{m}");
        let Some(port) = self.port_of(pkt.iface, m.vlan) else {
            step!(tr, "port", "no port for interface {} VLAN {:?}", pkt.iface, m.vlan);
            return Err(Verdict::Drop(Drop::UnknownPort));
        };
        if !self.rerun {
            self.counters.port_rx_packets.add(port, 1);
            self.counters.port_rx_bytes.add(port, len);
        }
        let vrf = t.ports[port].vrf;
        step!(tr, "port", "{} → VRF {vrf}", t.config.ports[port].key());
        let arrival = Arrival { m, port, vrf };
        match (arrival.m.l3, arrival.m.proto) {
            (L3::V4 { src, dst }, packet::gre::IPPROTO_GRE) => {
                match t.tunnel(vrf, u32::from(dst), u32::from(src)) {
                    Some(tunnel_port) => self.decapsulate(t, pkt, arrival, tunnel_port, tr),
                    None => Ok(arrival),
                }
            }
            _ => Ok(arrival),
        }
    }

    /// GRE from a tunnel's remote end to its local end: the inner packet, as received on
    /// `tunnel_port`.
    fn decapsulate(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        outer: Arrival,
        tunnel_port: usize,
        tr: &mut Option<Vec<Step>>,
    ) -> Result<Arrival, Verdict> {
        if outer.m.frag != Frag::Whole {
            step!(tr, "tunnel", "fragmented GRE is not reassembled");
            return Err(Verdict::Drop(Drop::UnsupportedProtocol));
        }
        let (inner, ethertype, key) = packet::gre::parse(pkt.frame(), &outer.m).map_err(Verdict::Drop)?;
        if key != t.ports[tunnel_port].tunnel.as_ref().and_then(|x| x.key) {
            step!(tr, "tunnel", "GRE key {key:?} is not the tunnel's");
            return Err(Verdict::Drop(Drop::UnknownPort));
        }
        pkt.decapsulate(inner, ethertype);
        self.decapsulated = true;
        let m = packet::parse(pkt.frame()).map_err(Verdict::Drop)?;
        let vrf = t.ports[tunnel_port].vrf;
        self.counters.port_rx_packets.add(tunnel_port, 1);
        self.counters.port_rx_bytes.add(tunnel_port, pkt.frame().len() as u64);
        step!(tr, "tunnel", "decapsulated on {} → VRF {vrf}: {m}", t.config.ports[tunnel_port].key());
        Ok(Arrival { m, port: tunnel_port, vrf })
    }
}
