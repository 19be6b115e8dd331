//! Packets waiting for their next hop's MAC, as the kernel's ARP queue keeps them: the first
//! packets towards a neighbor nobody asked for yet are not lost while it is resolved. Bounded
//! per next hop and in all, and for a second; what is still unresolved then is dropped and
//! counted as `no_neighbor`. Only the gateway's slow path turns this on (see
//! [`super::Engine::hold_unresolved`]): the XDP program cannot hold packets, and the
//! differential tests compare the engines packet by packet.

use crate::buffer::Packet;

use super::NeighborKey;

/// What one next hop may have waiting: the kernel's defaults (`unres_qlen`,
/// `unres_qlen_bytes`), so a burst of new sessions towards a host not asked for yet fares as
/// it would through Linux.
pub const PER_NEXT_HOP: usize = 101;
pub const PER_NEXT_HOP_BYTES: usize = 212_992;
/// Packets held in all (per worker).
const TOTAL: usize = 1024;
/// How long a packet waits for its next hop.
pub const WAIT_NS: u64 = 1_000_000_000;

/// A packet translated and rewritten but for its destination MAC.
pub struct Entry {
    pub key: NeighborKey,
    pub pkt: Packet,
    /// The engine interface it leaves by, and the compiled port it is counted on.
    pub out_iface: usize,
    pub phys: usize,
    pub deadline_ns: u64,
}

#[derive(Default)]
pub struct Held {
    entries: Vec<Entry>,
}

impl Held {
    /// Whether one more packet of `len` bytes for `key` may wait.
    pub fn has_room(&self, key: &NeighborKey, len: usize) -> bool {
        if self.entries.len() >= TOTAL {
            return false;
        }
        let (n, bytes) = self
            .entries
            .iter()
            .filter(|e| e.key == *key)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.pkt.frame().len()));
        n < PER_NEXT_HOP && bytes + len <= PER_NEXT_HOP_BYTES
    }

    pub fn push(&mut self, e: Entry) {
        self.entries.push(e);
    }

    /// Takes out the packets whose next hop `resolve` now knows (with its MAC), and those whose
    /// time is up (without), in arrival order.
    pub fn take(
        &mut self,
        now_ns: u64,
        mut resolve: impl FnMut(&NeighborKey) -> Option<[u8; 6]>,
    ) -> Vec<(Entry, Option<[u8; 6]>)> {
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            match resolve(&e.key) {
                Some(mac) => out.push((e, Some(mac))),
                None if now_ns >= e.deadline_ns => out.push((e, None)),
                None => keep.push(e),
            }
        }
        self.entries = keep;
        out
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
