//! The forward stage: where a decided packet leaves. The route (a route-via rule's, or the
//! FIB's, ECMP by flow hash), through a tunnel's underlay where the route is a tunnel, the MTU
//! (the gateway does not fragment), and the next hop's MAC (or the packet waits for it).

use std::net::IpAddr;

use hutong_common::Drop;

use super::{
    Compiled, Engine, Step, classify::FlowKey, decide::Decision, icmp::IcmpError, ingress::Arrival,
    neighbors::NeighborKey, offload::Offload,
};
use crate::{
    buffer::{Packet, Verdict},
    packet::L3,
};

/// Where a packet leaves, and how.
pub(super) struct Egress {
    /// The route's port (a tunnel port, where the route is a tunnel), and the physical port
    /// the packet leaves by.
    pub route_port: usize,
    pub phys: usize,
    /// The engine interface it leaves by, the next hop there and its MAC.
    pub out_iface: usize,
    pub next: IpAddr,
    pub dst_mac: [u8; 6],
    /// The next hop is not resolved yet: the packet waits for it under this key.
    pub hold: Option<NeighborKey>,
    /// What the XDP program may repeat of this decision.
    pub offload: Option<Offload>,
}

/// A flow hash for ECMP: the same 5-tuple always picks the same path.
fn flow_hash(k: &FlowKey) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |x: u64| h = (h ^ x).wrapping_mul(0x0000_0100_0000_01b3);
    for a in [k.src, k.dst] {
        match a {
            IpAddr::V4(v) => mix(u32::from(v) as u64),
            IpAddr::V6(v) => {
                let b = u128::from(v);
                mix(b as u64);
                mix((b >> 64) as u64);
            }
        }
    }
    let (s, d) = k.ports.unwrap_or((0, 0));
    mix(((k.proto as u64) << 32) | ((s as u64) << 16) | d as u64);
    (h ^ (h >> 32)) as u32
}

impl Engine {
    /// Routes the packet `d` decided; or its verdict, where it cannot leave.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        a: &Arrival,
        key: &FlowKey,
        d: &Decision,
        now_ns: u64,
        tr: &mut Option<Vec<Step>>,
    ) -> Result<Egress, Verdict> {
        let (route_port, phys, next) = route(t, key, d, tr)?;
        let route = &t.ports[route_port];
        let m = &a.m;
        if m.ip_len() > route.mtu as usize {
            let df = match m.l3 {
                L3::V4 { .. } => pkt.frame()[m.l3_off + 6] & 0x40 != 0,
                _ => true,
            };
            step!(
                tr,
                "mtu",
                "{} bytes exceed MTU {} (DF {df}); the gateway does not fragment",
                m.ip_len(),
                route.mtu
            );
            if !df {
                return Err(Verdict::Drop(Drop::TooBig));
            }
            let kind = IcmpError::TooBig { mtu: route.mtu };
            return Err(self.icmp_error(t, pkt, m, a.port, kind, now_ns, tr, Drop::TooBig));
        }
        let egress = &t.ports[phys];
        // Only an engine behind the XDP program records offloads; others skip the work.
        let offload = match d.cache {
            super::offload::Cache::Yes(session)
                if self.offloads.is_some() && egress.vlan.is_none() && route.tunnel.is_none() =>
            {
                super::offload::offload_of(m, a.vrf, d, session)
            }
            _ => None,
        };
        let Some(out_iface) = self.from_compiled.get(egress.iface).copied().flatten() else {
            step!(tr, "neighbor", "the engine does not run on the egress interface");
            return Err(Verdict::Drop(Drop::NoRoute));
        };
        let (dst_mac, hold) = self.next_hop_mac((out_iface, egress.vlan, next), pkt.frame().len(), tr)?;
        Ok(Egress { route_port, phys, out_iface, next, dst_mac, hold, offload })
    }
}

/// The route's port, the physical port the packet leaves by, and the next hop there.
fn route(
    t: &Compiled,
    key: &FlowKey,
    d: &Decision,
    tr: &mut Option<Vec<Step>>,
) -> Result<(usize, usize, IpAddr), Verdict> {
    let hop = match d.via {
        Some(h) => h,
        None => match t.fib.lookup_with(d.vrf, d.dst, || flow_hash(key)) {
            Some(h) => h,
            None => {
                step!(tr, "route", "no route to {} in VRF {}", d.dst, d.vrf);
                return Err(Verdict::Drop(Drop::NoRoute));
            }
        },
    };
    let next = hop.via.unwrap_or(d.dst);
    step!(tr, "route", "via {} out of {}", next, t.config.ports[hop.port].key());
    // A tunnel port is a route's egress too: its packets then leave, encapsulated, through
    // the physical port that reaches the tunnel's remote end in the underlay VRF.
    let Some(tun) = &t.ports[hop.port].tunnel else { return Ok((hop.port, hop.port, next)) };
    let remote = IpAddr::V4(tun.remote);
    let under = t.fib.lookup(tun.underlay_vrf, remote, 0).filter(|u| t.ports[u.port].tunnel.is_none());
    let Some(under) = under else {
        step!(tr, "tunnel", "no route to tunnel end {remote} in VRF {}", tun.underlay_vrf);
        return Err(Verdict::Drop(Drop::NoRoute));
    };
    let next = under.via.unwrap_or(remote);
    step!(tr, "tunnel", "GRE to {remote}, via {next} out of {}", t.config.ports[under.port].key());
    Ok((hop.port, under.port, next))
}
