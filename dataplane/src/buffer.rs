//! A packet buffer with headroom, so a VLAN tag can be pushed without copying the frame, and
//! the verdict the pipeline leaves on it.

use hutong_common::Drop;

use crate::packet::{ETH_P_8021Q, VLAN_HLEN};

/// Bytes kept free in front of the frame for tags the pipeline may push.
pub const HEADROOM: usize = 64;

/// What happens to a packet after the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not processed yet.
    Pending,
    /// Send out of this interface (an index into the compiled config's interfaces).
    Forward {
        iface: usize,
    },
    /// The frame was replaced by an ICMP error for its sender, to send out of `iface`; the
    /// original packet was dropped for `dropped`.
    Reply {
        iface: usize,
        dropped: Drop,
    },
    /// Hand to the gateway's own host stack.
    ToHost,
    Drop(Drop),
}

#[derive(Clone, Debug)]
pub struct Packet {
    data: Vec<u8>,
    head: usize,
    /// The interface it arrived on.
    pub iface: usize,
    pub verdict: Verdict,
}

impl Packet {
    pub fn new(iface: usize, frame: &[u8]) -> Packet {
        let mut data = vec![0; HEADROOM + frame.len()];
        data[HEADROOM..].copy_from_slice(frame);
        Packet { data, head: HEADROOM, iface, verdict: Verdict::Pending }
    }

    pub fn frame(&self) -> &[u8] {
        &self.data[self.head..]
    }

    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.head..]
    }

    /// Replaces the frame (a generated reply takes the place of the packet that caused it).
    pub fn replace(&mut self, frame: &[u8]) {
        self.data.truncate(HEADROOM);
        self.data.resize(HEADROOM, 0);
        self.data.extend_from_slice(frame);
        self.head = HEADROOM;
    }

    /// Inserts an 802.1Q tag after the MAC addresses.
    pub fn push_vlan(&mut self, vid: u16) {
        if self.head < VLAN_HLEN {
            // Only a frame that was already pushed into twice lands here; make room again.
            let mut grown = vec![0; HEADROOM];
            grown.extend_from_slice(&self.data[self.head..]);
            self.data = grown;
            self.head = HEADROOM;
        }
        let h = self.head;
        self.data.copy_within(h..h + 12, h - VLAN_HLEN);
        self.head -= VLAN_HLEN;
        let t = self.head + 12;
        self.data[t..t + 2].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        self.data[t + 2..t + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    }

    /// Replaces everything between the MAC addresses and `l3_off` (EtherType, any VLAN tag) with
    /// IPv4 EtherType and `outer` (an outer IP and tunnel header), and drops bytes past `end`.
    pub fn encapsulate(&mut self, l3_off: usize, end: usize, outer: &[u8]) {
        let h = self.head;
        self.data.truncate(h + end);
        let needed = 14 + outer.len();
        if h + l3_off < needed {
            let mut grown = vec![0; HEADROOM + needed];
            grown.extend_from_slice(&self.data[h..]);
            self.data = grown;
            self.head = HEADROOM + needed;
            return self.encapsulate_at(l3_off, outer);
        }
        self.encapsulate_at(l3_off, outer)
    }

    fn encapsulate_at(&mut self, l3_off: usize, outer: &[u8]) {
        let l3 = self.head + l3_off;
        let start = l3 - outer.len() - 14;
        self.data.copy_within(self.head..self.head + 12, start);
        self.data[start + 12..start + 14].copy_from_slice(&crate::packet::ETH_P_IPV4.to_be_bytes());
        self.data[start + 14..l3].copy_from_slice(outer);
        self.head = start;
    }

    /// Strips everything between the MAC addresses and `inner_off` (outer headers of a tunnel),
    /// leaving an Ethernet frame of `ethertype` around the inner packet.
    pub fn decapsulate(&mut self, inner_off: usize, ethertype: u16) {
        let start = self.head + inner_off - 14;
        self.data.copy_within(self.head..self.head + 12, start);
        self.data[start + 12..start + 14].copy_from_slice(&ethertype.to_be_bytes());
        self.head = start;
    }

    /// Removes the 802.1Q tag after the MAC addresses (the caller knows there is one).
    pub fn pop_vlan(&mut self) {
        let h = self.head;
        self.data.copy_within(h..h + 12, h + VLAN_HLEN);
        self.head += VLAN_HLEN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_push_and_pop_are_inverse() {
        let frame: Vec<u8> = (0..60).collect();
        let mut p = Packet::new(0, &frame);
        p.push_vlan(100);
        assert_eq!(&p.frame()[..12], &frame[..12]);
        assert_eq!(&p.frame()[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&p.frame()[16..], &frame[12..]);
        p.pop_vlan();
        assert_eq!(p.frame(), &frame[..]);
        for _ in 0..20 {
            p.push_vlan(7);
        }
        assert_eq!(p.frame().len(), 60 + 20 * 4);
    }
}
