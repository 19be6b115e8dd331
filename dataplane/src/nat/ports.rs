//! A pool's outside port space, cut into blocks that are handed to inside hosts, and the ports
//! used within each block.
//!
//! Block `b` is address `addresses[b / per_address]`, ports `first + (b % per_address) * size`
//! onwards. With several workers, worker `w` of `n` owns the blocks with `b % n == w`, so the
//! outside port alone tells which worker holds a session (see `Engine` steering) and workers
//! never share state.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;

use super::det44::Det44;
use crate::config::{NatPool, PoolMode};

/// Why no port could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// The host holds its maximum of blocks and every port in them is in use.
    HostPorts,
    /// No free block is left in the pool (for this worker).
    PoolBlocks,
    /// A deterministic pool has no block for this host.
    NotInPrefix,
}

/// The block index of outside `addr`:`port` in `pool`, computed from the config alone (the same
/// numbering every worker's [`Ports`] uses).
pub fn block_index(pool: &NatPool, addr: Ipv4Addr, port: u16) -> Option<u32> {
    let size = pool.block_size as u32;
    let per_address = (pool.ports.last as u32 - pool.ports.first as u32 + 1) / size;
    let mut index = 0u32;
    for p in &pool.addresses {
        if p.contains(&addr) {
            index += u32::from(addr) - u32::from(p.network());
            let slot = (port as u32).checked_sub(pool.ports.first as u32)? / size;
            return (slot < per_address).then_some(index * per_address + slot);
        }
        index += 1u32 << (32 - p.prefix_len());
    }
    None
}

#[derive(Debug)]
struct Block {
    /// The inside host holding it (0 when free).
    host: u32,
    used: u32,
    /// One bit per port of the block.
    bits: Box<[u64]>,
    /// Where the next free-port search starts, so ports are not reused at once.
    hint: u32,
}

#[derive(Debug)]
pub struct Ports {
    addresses: Vec<Ipv4Addr>,
    first: u16,
    size: u32,
    per_address: u32,
    det: Option<Det44>,
    max_per_host: usize,
    blocks: FxHashMap<u32, Block>,
    free: Vec<u32>,
    hosts: FxHashMap<u32, Vec<u32>>,
}

fn expand(prefixes: &[Ipv4Net]) -> Vec<Ipv4Addr> {
    prefixes
        .iter()
        .flat_map(|p| (u32::from(p.network())..=u32::from(p.broadcast())).map(Ipv4Addr::from))
        .collect()
}

impl Ports {
    /// The port space of `pool` as seen by worker `worker` of `workers`.
    pub fn new(pool: &NatPool, worker: u32, workers: u32) -> Ports {
        let addresses = expand(&pool.addresses);
        let size = pool.block_size as u32;
        let per_address = (pool.ports.last as u32 - pool.ports.first as u32 + 1) / size;
        let total = addresses.len() as u32 * per_address;
        let det = match &pool.mode {
            PoolMode::Deterministic { inside } => Some(Det44 {
                inside: *inside,
                outside: addresses.clone(),
                first: pool.ports.first,
                last: pool.ports.last,
                block: pool.block_size,
            }),
            PoolMode::Dynamic => None,
        };
        // Handed out lowest first: popped from the end.
        let free = if det.is_some() {
            Vec::new()
        } else {
            (0..total).rev().filter(|b| b % workers == worker).collect()
        };
        Ports {
            addresses,
            first: pool.ports.first,
            size,
            per_address,
            det,
            max_per_host: pool.max_blocks_per_host as usize,
            blocks: FxHashMap::default(),
            free,
            hosts: FxHashMap::default(),
        }
    }

    pub fn deterministic(&self) -> Option<&Det44> {
        self.det.as_ref()
    }

    fn locate(&self, b: u32, offset: u32) -> (Ipv4Addr, u16) {
        let addr = self.addresses[(b / self.per_address) as usize];
        (addr, (self.first as u32 + (b % self.per_address) * self.size + offset) as u16)
    }

    /// The block holding outside `addr`:`port`, and the port's offset in it.
    pub fn block_of(&self, addr: Ipv4Addr, port: u16) -> Option<(u32, u32)> {
        let a = self.addresses.iter().position(|x| *x == addr)? as u32;
        let rel = (port as u32).checked_sub(self.first as u32)?;
        let slot = rel / self.size;
        if slot >= self.per_address {
            return None;
        }
        Some((a * self.per_address + slot, rel % self.size))
    }

    fn take_in(&mut self, b: u32, offset: u32) -> bool {
        let blk = self.blocks.get_mut(&b).expect("block held");
        let (w, bit) = ((offset / 64) as usize, 1u64 << (offset % 64));
        if blk.bits[w] & bit != 0 {
            return false;
        }
        blk.bits[w] |= bit;
        blk.used += 1;
        true
    }

    fn claim(&mut self, b: u32, host: u32) {
        let words = self.size.div_ceil(64) as usize;
        self.blocks.insert(b, Block { host, used: 0, bits: vec![0; words].into_boxed_slice(), hint: 0 });
        self.hosts.entry(host).or_default().push(b);
    }

    /// A free port for inside `host`, preferring `want` (port preservation) if it is free in one
    /// of the host's blocks.
    pub fn allocate(&mut self, host: Ipv4Addr, want: u16) -> Result<(Ipv4Addr, u16), Exhausted> {
        let h = u32::from(host);
        if let Some(det) = &self.det {
            let (addr, port) = det.forward(host).ok_or(Exhausted::NotInPrefix)?;
            let (b, _) = self.block_of(addr, port).ok_or(Exhausted::NotInPrefix)?;
            if !self.blocks.contains_key(&b) {
                self.claim(b, h);
            }
        }
        let held: Vec<u32> = self.hosts.get(&h).cloned().unwrap_or_default();
        // Port preservation (RFC 4787 REQ-3 is about keeping mappings; keeping the port number
        // where the host's block allows it is a courtesy to protocols that care).
        let preferred = held.iter().find_map(|&b| {
            let (_, first_port) = self.locate(b, 0);
            let rel = (want as u32).checked_sub(first_port as u32)?;
            (rel < self.size).then_some((b, rel))
        });
        if let Some((b, off)) = preferred {
            if self.take_in(b, off) {
                return Ok(self.locate(b, off));
            }
        }
        for b in &held {
            if let Some(off) = self.find_free(*b) {
                self.take_in(*b, off);
                return Ok(self.locate(*b, off));
            }
        }
        if self.det.is_some() {
            return Err(Exhausted::HostPorts);
        }
        if held.len() >= self.max_per_host {
            return Err(Exhausted::HostPorts);
        }
        let b = self.free.pop().ok_or(Exhausted::PoolBlocks)?;
        self.claim(b, h);
        let off = self.find_free(b).expect("a new block has free ports");
        self.take_in(b, off);
        Ok(self.locate(b, off))
    }

    fn find_free(&mut self, b: u32) -> Option<u32> {
        let size = self.size;
        let blk = self.blocks.get_mut(&b)?;
        if blk.used >= size {
            return None;
        }
        for k in 0..size {
            let off = (blk.hint + k) % size;
            if blk.bits[(off / 64) as usize] & (1 << (off % 64)) == 0 {
                blk.hint = (off + 1) % size;
                return Some(off);
            }
        }
        None
    }

    /// Takes exactly outside `addr`:`port` for inside `host` (a session adopted from a previous
    /// process): the port's block must be free or already `host`'s, within the host's cap, and
    /// (deterministic pools) the host's by the formula; the port itself must be free.
    pub fn reserve(&mut self, host: Ipv4Addr, addr: Ipv4Addr, port: u16) -> bool {
        let h = u32::from(host);
        let Some((b, off)) = self.block_of(addr, port) else { return false };
        match self.blocks.get(&b) {
            Some(blk) if blk.host != h => return false,
            Some(_) => {}
            None => {
                if let Some(det) = &self.det {
                    let mine = det.forward(host).and_then(|(a, p)| self.block_of(a, p)).map(|(x, _)| x);
                    if mine != Some(b) {
                        return false;
                    }
                } else {
                    let held = self.hosts.get(&h).map_or(0, |v| v.len());
                    let Some(i) = self.free.iter().position(|x| *x == b) else { return false };
                    if held >= self.max_per_host {
                        return false;
                    }
                    self.free.remove(i);
                }
                self.claim(b, h);
            }
        }
        self.take_in(b, off)
    }

    /// Returns a port; a dynamic block left empty goes back to the free list.
    pub fn release(&mut self, addr: Ipv4Addr, port: u16) {
        let Some((b, off)) = self.block_of(addr, port) else { return };
        let Some(blk) = self.blocks.get_mut(&b) else { return };
        let (w, bit) = ((off / 64) as usize, 1u64 << (off % 64));
        if blk.bits[w] & bit == 0 {
            return;
        }
        blk.bits[w] &= !bit;
        blk.used -= 1;
        if blk.used == 0 {
            let host = blk.host;
            self.blocks.remove(&b);
            if let Some(list) = self.hosts.get_mut(&host) {
                list.retain(|x| *x != b);
                if list.is_empty() {
                    self.hosts.remove(&host);
                }
            }
            if self.det.is_none() {
                self.free.push(b);
            }
        }
    }

    /// The inside host holding the block of outside `addr`:`port`.
    pub fn owner(&self, addr: Ipv4Addr, port: u16) -> Option<Ipv4Addr> {
        let (b, _) = self.block_of(addr, port)?;
        self.blocks.get(&b).map(|blk| Ipv4Addr::from(blk.host))
    }

    /// Every block of the pool (all workers').
    pub fn total_blocks(&self) -> usize {
        self.addresses.len() * self.per_address as usize
    }

    /// Blocks held by hosts, and free blocks left (this worker's share).
    pub fn usage(&self) -> (usize, usize) {
        (self.blocks.len(), self.free.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Filtering, PortRange, Timeouts};

    fn pool(mode: PoolMode, block: u16, per_host: u16) -> NatPool {
        NatPool {
            name: "p".into(),
            inside_vrf: 1,
            outside_vrf: 0,
            addresses: vec!["198.18.30.0/31".parse().unwrap()],
            mode,
            ports: PortRange { first: 1024, last: 1024 + 4 * block - 1 },
            block_size: block,
            max_blocks_per_host: per_host,
            filtering: Filtering::AddressAndPortDependent,
            timeouts: Timeouts::default(),
            max_sessions: 1000,
        }
    }

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_get_their_own_blocks_and_keep_ports_where_they_can() {
        let mut p = Ports::new(&pool(PoolMode::Dynamic, 8, 2), 0, 1);
        let (x, px) = p.allocate(a("10.0.0.1"), 5000).unwrap();
        assert_eq!((x, px), (a("198.18.30.0"), 1024));
        // The next port of the same host comes from the same block.
        assert_eq!(p.allocate(a("10.0.0.1"), 5000).unwrap(), (a("198.18.30.0"), 1025));
        // Preservation inside the host's block.
        assert_eq!(p.allocate(a("10.0.0.1"), 1030).unwrap(), (a("198.18.30.0"), 1030));
        // Another host gets another block.
        assert_eq!(p.allocate(a("10.0.0.2"), 1024).unwrap(), (a("198.18.30.0"), 1032));
        assert_eq!(p.owner(a("198.18.30.0"), 1033), Some(a("10.0.0.2")));
    }

    #[test]
    fn a_host_is_capped_and_the_pool_runs_out_cleanly() {
        let mut p = Ports::new(&pool(PoolMode::Dynamic, 4, 2), 0, 1);
        for _ in 0..8 {
            p.allocate(a("10.0.0.1"), 0).unwrap();
        }
        assert_eq!(p.allocate(a("10.0.0.1"), 0), Err(Exhausted::HostPorts));
        // 8 blocks in all (2 addresses x 4); 2 are held: 6 more hosts fit, the 7th does not.
        for h in 2..8 {
            p.allocate(Ipv4Addr::new(10, 0, 0, h), 0).unwrap();
        }
        assert_eq!(p.allocate(a("10.0.0.9"), 0), Err(Exhausted::PoolBlocks));
        // Releasing every port of a block frees it for someone else.
        for port in 1024..1028 {
            p.release(a("198.18.30.0"), port);
        }
        assert!(p.allocate(a("10.0.0.9"), 0).is_ok());
    }

    #[test]
    fn adopted_ports_are_reserved_exactly_and_only_where_they_may_be() {
        let mut p = Ports::new(&pool(PoolMode::Dynamic, 4, 1), 0, 1);
        assert!(p.reserve(a("10.0.0.1"), a("198.18.30.1"), 1030));
        assert!(!p.reserve(a("10.0.0.1"), a("198.18.30.1"), 1030), "taken");
        assert!(!p.reserve(a("10.0.0.2"), a("198.18.30.1"), 1031), "another host's block");
        assert!(!p.reserve(a("10.0.0.1"), a("198.18.30.0"), 1024), "over the host's cap");
        assert!(!p.reserve(a("10.0.0.1"), a("198.18.30.9"), 1024), "not the pool's");
        // New allocations for the host continue in its block and never hand out 1030 again.
        let got: Vec<u16> = (0..3).map(|_| p.allocate(a("10.0.0.1"), 0).unwrap().1).collect();
        assert_eq!(got, [1028, 1029, 1031]);
        let mut d =
            Ports::new(&pool(PoolMode::Deterministic { inside: "10.0.0.0/29".parse().unwrap() }, 4, 1), 0, 1);
        assert!(d.reserve(a("10.0.0.5"), a("198.18.30.1"), 1029));
        assert!(!d.reserve(a("10.0.0.4"), a("198.18.30.1"), 1030), "not host 4's block by the formula");
    }

    #[test]
    fn workers_own_disjoint_blocks() {
        let pl = pool(PoolMode::Dynamic, 4, 8);
        let mut w0 = Ports::new(&pl, 0, 2);
        let mut w1 = Ports::new(&pl, 1, 2);
        let (_, p0) = w0.allocate(a("10.0.0.1"), 0).unwrap();
        let (_, p1) = w1.allocate(a("10.0.0.1"), 0).unwrap();
        let block = |p: u16| (p - 1024) / 4;
        assert_eq!((block(p0) % 2, block(p1) % 2), (0, 1));
    }

    #[test]
    fn deterministic_blocks_follow_the_formula() {
        let mut p =
            Ports::new(&pool(PoolMode::Deterministic { inside: "10.0.0.0/29".parse().unwrap() }, 4, 1), 0, 1);
        // Host 5: 4 blocks per address, so address 1, block 1.
        let (addr, port) = p.allocate(a("10.0.0.5"), 0).unwrap();
        assert_eq!((addr, port), (a("198.18.30.1"), 1028));
        assert_eq!(p.deterministic().unwrap().reverse(addr, port + 3), Some(a("10.0.0.5")));
        for _ in 0..3 {
            p.allocate(a("10.0.0.5"), 0).unwrap();
        }
        assert_eq!(p.allocate(a("10.0.0.5"), 0), Err(Exhausted::HostPorts));
        assert_eq!(p.allocate(a("10.0.1.5"), 0), Err(Exhausted::NotInPrefix));
    }
}
