//! Which worker a frame belongs to, so that every packet of a NAT session meets the worker that
//! holds it and workers never share state.
//!
//! - From a pool's inside: by inside host (a deterministic pool's block formula says which
//!   worker owns the host's block; for dynamic pools a hash of the host picks the worker, which
//!   then takes blocks from its own share).
//! - To a pool's outside address: by the block of the destination port (worker `b % n` owns
//!   block `b`); an ICMP error by the block of the quoted source port.
//! - Later fragments carry no port: they follow their first fragment, remembered here briefly.
//! - ARP and ICMPv6 (the host stack's, NDP among it): worker 0.
//! - Anything else (netmap, NPTv6, routing) is stateless: by flow hash, to spread load.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use rustc_hash::FxHashMap;

use super::Compiled;
use crate::{
    config::PoolMode,
    nat::ports::block_index,
    packet::{self, Frag, L3, L4},
};

/// Later-fragment memory: (source, destination, protocol, id) → worker.
const MAX_FRAGMENTS: usize = 4096;

#[derive(Debug, Default)]
pub struct Steering {
    frags: FxHashMap<(u32, u32, u8, u32), u32>,
    order: VecDeque<(u32, u32, u8, u32)>,
}

fn mix(x: u64) -> u32 {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

impl Steering {
    /// The worker (of `workers`) for `frame` arriving on the compiled interface `iface`.
    pub fn worker(&mut self, c: &Compiled, iface: usize, frame: &[u8], workers: u32) -> u32 {
        if workers <= 1 {
            return 0;
        }
        let Ok(m) = packet::parse(frame) else { return 0 };
        // ARP and ICMPv6 (NDP) are the host stack's: worker 0 keeps the neighbors it learns.
        if m.l3 == L3::Arp || m.proto == packet::IPPROTO_ICMPV6 {
            return 0;
        }
        let Some(vrf) = c.port(iface, m.vlan).map(|p| c.ports[p].vrf) else { return 0 };
        let L3::V4 { src, dst } = m.l3 else {
            return mix(flow_hash(&m)) % workers;
        };
        let fkey = |id: u32| (u32::from(src), u32::from(dst), m.proto, id);
        if let Frag::Later { id } = m.frag {
            if let Some(w) = self.frags.get(&fkey(id)) {
                return *w;
            }
        }
        let w = self.decide(c, vrf, &m, frame, src, dst, workers);
        if let Frag::First { id } = m.frag {
            if self.frags.len() >= MAX_FRAGMENTS {
                if let Some(old) = self.order.pop_front() {
                    self.frags.remove(&old);
                }
            }
            if self.frags.insert(fkey(id), w).is_none() {
                self.order.push_back(fkey(id));
            }
        }
        w
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        c: &Compiled,
        vrf: u32,
        m: &packet::Meta,
        frame: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        n: u32,
    ) -> u32 {
        let pools = &c.config.nat_pools;
        // Inside → outside: the inside host decides.
        if pools.iter().any(|p| p.inside_vrf == vrf) {
            for p in pools.iter().filter(|p| p.inside_vrf == vrf) {
                if let PoolMode::Deterministic { inside } = &p.mode {
                    if inside.contains(&src) {
                        let i = u32::from(src) - u32::from(inside.network());
                        return i % n; // block i belongs to worker i % n
                    }
                }
            }
            return mix(u32::from(src) as u64) % n;
        }
        // Outside → inside: the block of the destination endpoint (or of a quoted source).
        let (addr, port) = match (packet::embedded::parse(frame, m), m.l4) {
            (Some(e), _) => (e.src, e.ports.map(|p| p.0)),
            (None, L4::Ports { dst: p, .. }) => (dst, Some(p)),
            (None, L4::Icmp { ident, .. }) => (dst, Some(ident)),
            (None, L4::Opaque) => (dst, None),
        };
        if let Some(port) = port {
            for p in pools.iter().filter(|p| p.outside_vrf == vrf) {
                if let Some(b) = block_index(p, addr, port) {
                    return match &p.mode {
                        // Deterministic: block b is host b's, and host i's worker is i % n.
                        PoolMode::Deterministic { .. } | PoolMode::Dynamic => b % n,
                    };
                }
            }
        }
        mix(flow_hash(m)) % n
    }
}

/// A flow hash for stateless traffic: addresses, protocol and ports.
fn flow_hash(m: &packet::Meta) -> u64 {
    let (a, b) = match m.l3 {
        L3::V4 { src, dst } => (u32::from(src) as u128, u32::from(dst) as u128),
        L3::V6 { src, dst } => (u128::from(src), u128::from(dst)),
        L3::Arp => (0, 0),
    };
    let ports = match m.l4 {
        L4::Ports { src, dst, .. } => ((src as u64) << 16) | dst as u64,
        _ => 0,
    };
    (a as u64)
        ^ ((a >> 64) as u64).rotate_left(7)
        ^ (b as u64).rotate_left(13)
        ^ ((b >> 64) as u64).rotate_left(19)
        ^ ((m.proto as u64) << 40)
        ^ ports.rotate_left(29)
}
