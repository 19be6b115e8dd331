//! NAT sessions: one per endpoint-independent mapping (RFC 4787 REQ-1: the same inside address
//! and port keep the same outside address and port whatever the destination), with the remotes
//! it has talked to (for address-and-port-dependent filtering) and TCP state for timeouts.
//!
//! Bounded: the table holds at most `max` sessions, each in a 40-byte slot, found through two
//! 4-byte-per-bucket [`Index`]es (inside key, outside key) sized once at half load: 56 bytes per
//! session in all. Expiry is a clock hand: every batch examines a fixed number of slots and frees
//! the idle ones, so the cost is O(1) per packet however many sessions exist; lookups also treat
//! an expired session as gone, so nothing outlives its timeout by more than a sweep.

use std::net::Ipv4Addr;

use super::index::Index;

/// Protocol classes, each with its own port space.
pub const TCP: u8 = 0;
pub const UDP: u8 = 1;
pub const ICMP: u8 = 2;

/// TCP state bits.
pub const SYN_IN: u8 = 1;
pub const SYN_OUT: u8 = 2;
pub const FIN_IN: u8 = 4;
pub const FIN_OUT: u8 = 8;
pub const RST: u8 = 16;
/// A published service or other mapping that never expires.
pub const STATIC: u8 = 128;

/// Remotes remembered per session for filtering; the oldest is forgotten beyond this.
pub const REMOTES: usize = 3;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Session {
    pub in_addr: u32,
    pub out_addr: u32,
    pub in_port: u16,
    pub out_port: u16,
    /// Remote endpoints the inside sent to (address, port); an all-zero entry is unused.
    pub remotes: [(u32, u16); REMOTES],
    /// Seconds (engine clock) after which it is idle-expired.
    pub expires: u32,
    /// The pool (or, past the pools, the published service) it belongs to.
    pub pool: u16,
    pub proto: u8,
    pub state: u8,
    /// Slot generation bit: 0 free, 1 live.
    pub live: u8,
}

const _: () = assert!(std::mem::size_of::<Session>() <= 48);

impl Session {
    pub fn in_key(&self) -> u64 {
        in_key(self.pool, self.proto, self.in_addr, self.in_port)
    }

    pub fn out_key(&self) -> u64 {
        out_key(self.proto, self.out_addr, self.out_port)
    }

    /// Whether `addr`:`port` may send to this mapping under address-and-port-dependent filtering.
    pub fn permits(&self, addr: u32, port: u16) -> bool {
        self.remotes.contains(&(addr, port))
    }

    /// Remembers a remote, forgetting the oldest when full; returns the one forgotten.
    pub fn remember(&mut self, addr: u32, port: u16) -> Option<(u32, u16)> {
        if self.permits(addr, port) {
            return None;
        }
        let forgotten = self.remotes[REMOTES - 1];
        self.remotes.rotate_right(1);
        self.remotes[0] = (addr, port);
        (forgotten != (0, 0)).then_some(forgotten)
    }
}

/// Inside key: pool (14 bits), protocol class, inside address and port.
pub fn in_key(pool: u16, proto: u8, addr: u32, port: u16) -> u64 {
    (((pool & 0x3fff) as u64) << 50) | ((proto as u64) << 48) | ((addr as u64) << 16) | port as u64
}

/// Outside key: protocol class, outside address and port (outside addresses are unique per
/// gateway, so no pool is needed).
pub fn out_key(proto: u8, addr: u32, port: u16) -> u64 {
    ((proto as u64) << 48) | ((addr as u64) << 16) | port as u64
}

#[derive(Debug)]
pub struct Table {
    slots: Vec<Session>,
    free: Vec<u32>,
    by_in: Index,
    by_out: Index,
    max: usize,
    live: usize,
    hand: usize,
}

/// Slots the clock hand examines per call of [`Table::sweep`].
pub const SWEEP: usize = 64;

impl Table {
    pub fn new(max: usize) -> Table {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            by_in: Index::new(max),
            by_out: Index::new(max),
            max,
            live: 0,
            hand: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn is_full(&self) -> bool {
        self.live >= self.max
    }

    /// Bytes used per session at capacity: the slot plus both index buckets.
    pub fn bytes_per_session(&self) -> usize {
        std::mem::size_of::<Session>() + (self.by_in.bytes() + self.by_out.bytes()) / self.max.max(1)
    }

    pub fn get(&self, slot: u32) -> &Session {
        &self.slots[slot as usize]
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut Session {
        &mut self.slots[slot as usize]
    }

    fn live_at(&self, slot: u32, now: u32) -> bool {
        let s = &self.slots[slot as usize];
        s.live == 1 && (s.state & STATIC != 0 || s.expires > now)
    }

    /// The live session with this inside key.
    #[inline]
    pub fn find_in(&self, key: u64, now: u32) -> Option<u32> {
        let slots = &self.slots;
        let s = self.by_in.get(key, |i| slots[i as usize].in_key())?;
        self.live_at(s, now).then_some(s)
    }

    /// The live session with this outside key.
    #[inline]
    pub fn find_out(&self, key: u64, now: u32) -> Option<u32> {
        let slots = &self.slots;
        let s = self.by_out.get(key, |i| slots[i as usize].out_key())?;
        self.live_at(s, now).then_some(s)
    }

    /// Adds a session; the caller checked [`Table::is_full`] and that neither key exists (an
    /// expired session with the same keys must be removed first, see [`Table::remove`]).
    pub fn insert(&mut self, mut s: Session) -> u32 {
        s.live = 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = s;
                i
            }
            None => {
                self.slots.push(s);
                (self.slots.len() - 1) as u32
            }
        };
        self.by_in.insert(s.in_key(), slot);
        self.by_out.insert(s.out_key(), slot);
        self.live += 1;
        slot
    }

    /// Removes a session, returning it (so its port can be released).
    pub fn remove(&mut self, slot: u32) -> Session {
        let s = self.slots[slot as usize];
        let slots = &self.slots;
        self.by_in.remove(s.in_key(), slot, |i| slots[i as usize].in_key());
        let slots = &self.slots;
        self.by_out.remove(s.out_key(), slot, |i| slots[i as usize].out_key());
        self.slots[slot as usize].live = 0;
        self.free.push(slot);
        self.live -= 1;
        s
    }

    /// A stale session still indexed under `in_key` or `out_key` (expired, not yet swept).
    pub fn stale(&self, in_key: u64, out_key: u64) -> Option<u32> {
        let slots = &self.slots;
        let a = self.by_in.get(in_key, |i| slots[i as usize].in_key());
        let b = self.by_out.get(out_key, |i| slots[i as usize].out_key());
        a.or(b)
    }

    /// Advances the clock hand over up to `budget` slots, removing sessions idle at `now`, and
    /// hands each removed session to `gone`.
    pub fn sweep(&mut self, now: u32, budget: usize, mut gone: impl FnMut(Session)) {
        if self.slots.is_empty() {
            return;
        }
        for _ in 0..budget.min(self.slots.len()) {
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = self.hand as u32;
            let s = &self.slots[self.hand];
            if s.live == 1 && s.state & STATIC == 0 && s.expires <= now {
                gone(self.remove(slot));
            }
        }
    }

    /// Slots the table has grown to: what a full turn of the clock hand examines.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Every live session (for the sessions API and config re-checks).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slots.iter().enumerate().filter(|(_, s)| s.live == 1).map(|(i, s)| (i as u32, s))
    }
}

/// Address helpers for readable tests and logs.
pub fn addr(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(in_port: u16, out_port: u16, expires: u32) -> Session {
        Session {
            in_addr: 0x0a00_0001,
            out_addr: 0xc612_1e01,
            in_port,
            out_port,
            expires,
            proto: UDP,
            ..Default::default()
        }
    }

    #[test]
    fn session_state_fits_the_budget() {
        let t = Table::new(1 << 16);
        assert!(t.bytes_per_session() <= 64, "{} bytes per session", t.bytes_per_session());
    }

    #[test]
    fn lookups_both_ways_and_expiry() {
        let mut t = Table::new(8);
        let s = t.insert(session(1000, 2000, 10));
        assert_eq!(t.find_in(in_key(0, UDP, 0x0a00_0001, 1000), 5), Some(s));
        assert_eq!(t.find_out(out_key(UDP, 0xc612_1e01, 2000), 5), Some(s));
        assert_eq!(t.find_out(out_key(TCP, 0xc612_1e01, 2000), 5), None, "protocols have separate spaces");
        // Past its time it is invisible before any sweep...
        assert_eq!(t.find_in(in_key(0, UDP, 0x0a00_0001, 1000), 10), None);
        // ...and the sweep frees it.
        let mut freed = Vec::new();
        t.sweep(10, SWEEP, |s| freed.push(s.out_port));
        assert_eq!(freed, vec![2000]);
        assert!(t.is_empty());
    }

    #[test]
    fn static_sessions_never_expire_and_the_table_is_bounded() {
        let mut t = Table::new(2);
        let mut st = session(80, 80, 0);
        st.state = STATIC;
        t.insert(st);
        t.insert(session(1, 1, 5));
        assert!(t.is_full());
        let mut n = 0;
        for now in [100, 200] {
            t.sweep(now, SWEEP, |_| n += 1);
        }
        assert_eq!((n, t.len()), (1, 1));
        assert!(t.find_out(out_key(UDP, 0xc612_1e01, 80), 1_000_000).is_some());
    }

    #[test]
    fn remotes_are_remembered_up_to_a_bound() {
        let mut s = session(1, 1, 1);
        for r in 1..=4u32 {
            s.remember(r, 53);
        }
        assert!(!s.permits(1, 53), "the oldest is forgotten");
        assert!(s.permits(4, 53) && s.permits(2, 53));
        assert!(!s.permits(4, 54));
    }
}
