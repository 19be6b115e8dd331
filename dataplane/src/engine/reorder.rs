//! Later fragments of a NAT'd datagram that arrive before its first fragment. Only the first
//! fragment carries the ports a NAPT session is found or made by, so a later fragment cannot be
//! translated until the first has been. RFC 4787 REQ-14 asks a NAT to handle fragments out of
//! order, so they wait here, keyed as the first fragment's translation is remembered (VRF,
//! source, destination, protocol, IP id), until it comes. Then they are run through the pipeline
//! again and leave behind it.
//!
//! Bounded: [`PER_SOURCE`] fragments per source address, [`TOTAL`] fragments and
//! [`TOTAL_BYTES`] bytes in all (per worker), each for [`WAIT_NS`]. A fragment beyond a bound,
//! or one whose first fragment never comes, is dropped and counted as `fragment_unknown`. Only
//! the gateway's slow path turns this on (`Engine::hold_unresolved`): the differential tests
//! compare the engines packet by packet.

use std::collections::VecDeque;

use crate::buffer::Packet;

/// What one datagram's translation is remembered by (see `nat::FragKey`).
pub type Key = (u32, u32, u32, u8, u16);

/// Fragments one source address may have waiting.
pub const PER_SOURCE: usize = 64;
/// Fragments waiting in all (per worker).
pub const TOTAL: usize = 1024;
/// Their bytes in all (per worker).
pub const TOTAL_BYTES: usize = 2 << 20;
/// How long a fragment waits for its first fragment: as long as a datagram's fragments may
/// reasonably be apart, well within the time its first fragment's translation is remembered.
pub const WAIT_NS: u64 = 5_000_000_000;

struct Entry {
    key: Key,
    pkt: Packet,
    deadline_ns: u64,
}

#[derive(Default)]
pub struct Waiting {
    /// In arrival order, so the oldest expire first.
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl Waiting {
    /// Keeps `pkt` until its datagram's first fragment is translated; false when there is no
    /// room (the caller drops it).
    pub fn hold(&mut self, key: Key, pkt: &Packet, now_ns: u64) -> bool {
        let len = pkt.frame().len();
        let from_source = self.entries.iter().filter(|e| (e.key.0, e.key.1) == (key.0, key.1)).count();
        if self.entries.len() >= TOTAL || self.bytes + len > TOTAL_BYTES || from_source >= PER_SOURCE {
            return false;
        }
        self.bytes += len;
        self.entries.push_back(Entry { key, pkt: pkt.clone(), deadline_ns: now_ns + WAIT_NS });
        true
    }

    /// The fragments waiting for `key`'s first fragment, in arrival order.
    pub fn take(&mut self, key: Key) -> Vec<Packet> {
        if !self.entries.iter().any(|e| e.key == key) {
            return Vec::new();
        }
        let (ready, rest): (VecDeque<Entry>, VecDeque<Entry>) =
            std::mem::take(&mut self.entries).into_iter().partition(|e| e.key == key);
        self.entries = rest;
        self.bytes -= ready.iter().map(|e| e.pkt.frame().len()).sum::<usize>();
        ready.into_iter().map(|e| e.pkt).collect()
    }

    /// Drops what waited too long; how many.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let mut n = 0;
        while self.entries.front().is_some_and(|e| e.deadline_ns <= now_ns) {
            let e = self.entries.pop_front().expect("front exists");
            self.bytes -= e.pkt.frame().len();
            n += 1;
        }
        n
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(len: usize) -> Packet {
        Packet::new(0, &vec![0u8; len])
    }

    #[test]
    fn fragments_wait_bounded_per_source_and_in_all_and_expire() {
        let mut w = Waiting::default();
        let key = |src: u32, id: u16| (1, src, 9, 17, id);
        for i in 0..PER_SOURCE {
            assert!(w.hold(key(5, i as u16), &frag(100), 0));
        }
        assert!(!w.hold(key(5, 999), &frag(100), 0), "one source may not take more");
        assert!(w.hold(key(6, 1), &frag(100), 0), "another source may");
        assert_eq!(w.take(key(5, 3)).len(), 1);
        assert!(w.hold(key(5, 1000), &frag(100), 1), "room again for that source");
        assert!(!w.hold(key(7, 1), &frag(TOTAL_BYTES), 1), "bytes in all are bounded");
        assert_eq!(w.expire(WAIT_NS - 1), 0);
        assert_eq!(w.expire(WAIT_NS), PER_SOURCE, "all but the one held a nanosecond later");
        assert_eq!((w.len(), w.expire(WAIT_NS + 1)), (1, 1));
        assert!(w.is_empty() && w.bytes == 0);
    }
}
