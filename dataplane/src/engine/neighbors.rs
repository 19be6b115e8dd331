//! Next hops: the engine's neighbor table (filled by the daemon's resolver, and by ARP gleaned
//! on the way), the next hops it missed (for the resolver to ask about), and packets that wait
//! for their next hop to resolve ([`held`](super::held)) instead of being dropped.

use std::net::{IpAddr, Ipv4Addr};

use hutong_common::{Drop, Stat};
use rustc_hash::FxHashMap;

use super::{Engine, Step, held, reorder};
use crate::buffer::{Packet, Verdict};

/// At most this many unresolved next hops are remembered between resolver runs.
const MAX_MISSES: usize = 1024;

/// A resolved next hop's MAC, keyed by interface (engine index), VLAN and address.
pub(super) type NeighborKey = (usize, Option<u16>, IpAddr);

/// The neighbor table. IPv4 keys are packed into one `u64` (interface, VLAN + 1, address), and
/// a small direct-mapped cache in front of the map answers the common case (traffic to a few
/// next hops) without hashing; that lookup is on every forwarded packet.
#[derive(Debug)]
pub(super) struct Neighbors {
    v4: FxHashMap<u64, [u8; 6]>,
    v6: FxHashMap<(usize, Option<u16>, u128), [u8; 6]>,
    /// (packed key, MAC); key 0 (interface 0, untagged, 0.0.0.0) is never a neighbor: empty.
    cache: Box<[(u64, [u8; 6]); NEIGH_CACHE]>,
}

const NEIGH_CACHE: usize = 256;

impl Default for Neighbors {
    fn default() -> Self {
        Neighbors {
            v4: FxHashMap::default(),
            v6: FxHashMap::default(),
            cache: Box::new([(0, [0; 6]); NEIGH_CACHE]),
        }
    }
}

impl Neighbors {
    fn pack((iface, vlan, _): NeighborKey, a: u32) -> u64 {
        ((iface as u64) << 45) | ((vlan.map_or(0, |v| v as u64 + 1)) << 32) | a as u64
    }

    fn slot(key: u64) -> usize {
        ((key ^ (key >> 29)) as usize) % NEIGH_CACHE
    }

    #[inline]
    pub(super) fn get(&mut self, k: NeighborKey) -> Option<[u8; 6]> {
        match k.2 {
            IpAddr::V4(a) => {
                let key = Self::pack(k, u32::from(a));
                let slot = &mut self.cache[Self::slot(key)];
                if slot.0 == key {
                    return Some(slot.1);
                }
                let mac = *self.v4.get(&key)?;
                *slot = (key, mac);
                Some(mac)
            }
            IpAddr::V6(a) => self.v6.get(&(k.0, k.1, u128::from(a))).copied(),
        }
    }

    pub(super) fn insert(&mut self, k: NeighborKey, mac: [u8; 6]) {
        match k.2 {
            IpAddr::V4(a) => {
                let key = Self::pack(k, u32::from(a));
                self.v4.insert(key, mac);
                let slot = &mut self.cache[Self::slot(key)];
                if slot.0 == key {
                    slot.1 = mac;
                }
            }
            IpAddr::V6(a) => {
                self.v6.insert((k.0, k.1, u128::from(a)), mac);
            }
        }
    }

    pub(super) fn remove(&mut self, k: NeighborKey) {
        match k.2 {
            IpAddr::V4(a) => {
                let key = Self::pack(k, u32::from(a));
                self.v4.remove(&key);
                let slot = &mut self.cache[Self::slot(key)];
                if slot.0 == key {
                    *slot = (0, [0; 6]);
                }
            }
            IpAddr::V6(a) => {
                self.v6.remove(&(k.0, k.1, u128::from(a)));
            }
        }
    }

    pub(super) fn keys(&self) -> Vec<NeighborKey> {
        let v4 = self.v4.keys().map(|k| {
            let vlan = ((k >> 32) & 0x1fff) as u16;
            ((k >> 45) as usize, vlan.checked_sub(1), IpAddr::V4(Ipv4Addr::from(*k as u32)))
        });
        v4.chain(self.v6.keys().map(|(i, v, a)| (*i, *v, IpAddr::V6((*a).into())))).collect()
    }
}

impl Engine {
    /// Records the MAC of a next hop (from the daemon's resolver, or a test).
    pub fn set_neighbor(&mut self, iface: usize, vlan: Option<u16>, addr: IpAddr, mac: [u8; 6]) {
        self.neighbors.insert((iface, vlan, addr), mac);
    }

    /// Makes packets towards an unresolved next hop wait for it (see [`held`]), and later
    /// fragments of a NAT'd datagram wait for their first fragment (see [`reorder`]), instead of
    /// being dropped; [`Engine::take_released`] hands them out.
    pub fn hold_unresolved(&mut self) {
        self.held.get_or_insert_with(held::Held::default);
        self.reorder.get_or_insert_with(reorder::Waiting::default);
    }

    /// Held packets whose next hop is known now, completed and counted as forwarded (their
    /// verdict says where to); those that waited too long are counted as `no_neighbor` drops.
    pub fn take_released(&mut self, now_ns: u64) -> Vec<Packet> {
        let mut out = std::mem::take(&mut self.released);
        let Some(h) = self.held.as_mut().filter(|h| !h.is_empty()) else { return out };
        let neighbors = &mut self.neighbors;
        let done = h.take(now_ns, |k| neighbors.get(*k));
        for (mut e, mac) in done {
            match mac {
                Some(mac) => {
                    e.pkt.frame_mut()[..6].copy_from_slice(&mac);
                    e.pkt.verdict = Verdict::Forward { iface: e.out_iface };
                    self.counters.stats[Stat::Forwarded as usize] += 1;
                    self.counters.port_tx_packets.add(e.phys, 1);
                    self.counters.port_tx_bytes.add(e.phys, e.pkt.frame().len() as u64);
                    out.push(e.pkt);
                }
                None => self.counters.drops[Drop::NoNeighbor as usize] += 1,
            }
        }
        out
    }

    /// Forgets the MAC of a next hop (its entry went from the neighbor table).
    pub fn forget_neighbor(&mut self, iface: usize, vlan: Option<u16>, addr: IpAddr) {
        self.neighbors.remove((iface, vlan, addr));
    }

    /// Every next hop the engine knows a MAC for.
    pub fn neighbor_keys(&self) -> Vec<(usize, Option<u16>, IpAddr)> {
        self.neighbors.keys()
    }

    /// Unresolved next hops seen since the last call, for the resolver to ask about.
    pub fn take_misses(&mut self) -> Vec<(usize, Option<u16>, IpAddr)> {
        std::mem::take(&mut self.misses)
    }

    /// The MAC of next hop `key` for a packet of `len` bytes: resolved, or zero with the key
    /// under which the packet is to wait for it; or the packet is dropped.
    pub(super) fn next_hop_mac(
        &mut self,
        key: NeighborKey,
        len: usize,
        tr: &mut Option<Vec<Step>>,
    ) -> Result<([u8; 6], Option<NeighborKey>), Verdict> {
        let next = key.2;
        if let Some(mac) = self.neighbors.get(key) {
            return Ok((mac, None));
        }
        if self.assume_neighbors {
            step!(
                tr,
                "neighbor",
                "{next}: not resolved in an offline trace (the gateway resolves it by ARP/NDP)"
            );
            return Ok(([0; 6], None));
        }
        if self.misses.len() < MAX_MISSES && !self.misses.contains(&key) {
            self.misses.push(key);
        }
        if self.held.as_ref().is_some_and(|h| h.has_room(&key, len)) {
            step!(tr, "neighbor", "{next} is not resolved yet: the packet waits for it");
            return Ok(([0; 6], Some(key)));
        }
        step!(tr, "neighbor", "{next} is not resolved yet");
        Err(Verdict::Drop(Drop::NoNeighbor))
    }
}
