//! Fragments through NAT: a first fragment's translation is remembered for the datagram's
//! later fragments, and a later fragment that comes before its first waits for it
//! ([`reorder`](super::reorder)), bounded and counted (RFC 4787 REQ-14), then runs again once
//! it is known.

use std::sync::Arc;

use hutong_common::{Drop, Stat};

use super::{Compiled, Engine};
use crate::{
    buffer::{Packet, Verdict},
    nat,
    packet::{Frag, L3, Meta},
};

impl Engine {
    /// A later fragment refused as `fragment_unknown` waits for its first fragment, when
    /// holding is on and there is room (see [`reorder`](super::reorder)).
    pub(super) fn wait_if_early(&mut self, pkt: &Packet, verdict: Verdict, now_ns: u64) -> Verdict {
        let key = self.unknown_fragment.take();
        let (Some(w), Some(key), Verdict::Drop(Drop::FragmentUnknown)) =
            (self.reorder.as_mut(), key, verdict)
        else {
            return verdict;
        };
        if !w.hold(key, pkt, now_ns) {
            return verdict;
        }
        self.counters.stats[Stat::FragmentsHeld as usize] += 1;
        Verdict::Pending
    }

    /// Runs the fragments whose first fragment was translated in this batch, now that their
    /// translation is known, and drops (and counts) those that waited in vain.
    pub(super) fn release_fragments(&mut self, t: &Arc<Compiled>, now_ns: u64) {
        if self.reorder.is_none() {
            return;
        }
        self.expire_fragments(now_ns);
        let mut ready = Vec::new();
        for key in std::mem::take(&mut self.fragments_ready) {
            ready.extend(self.reorder.as_mut().map(|w| w.take(key)).unwrap_or_default());
        }
        for mut pkt in ready {
            self.rerun = true;
            let verdict = self.one(t, &mut pkt, now_ns, &mut None);
            self.rerun = false;
            self.unknown_fragment = None;
            self.finish(&mut pkt, verdict);
            if matches!(pkt.verdict, Verdict::Forward { .. } | Verdict::Reply { .. }) {
                self.released.push(pkt);
            }
        }
    }

    /// Expires waiting fragments on the worker's timer too (see `Engine::expire`).
    pub(super) fn expire_fragments(&mut self, now_ns: u64) {
        if let Some(w) = self.reorder.as_mut() {
            let expired = w.expire(now_ns);
            self.counters.drops[Drop::FragmentUnknown as usize] += expired as u64;
        }
    }

    /// Remembers a first fragment's NAT translation for the datagram's later fragments.
    pub(super) fn remember_fragment(&mut self, m: &Meta, vrf: u32, x: nat::Xlat, now_s: u32) {
        if let (Frag::First { id }, L3::V4 { src, dst }) = (m.frag, m.l3) {
            let key = (vrf, u32::from(src), u32::from(dst), m.proto, id as u16);
            self.nat.remember_fragment(key, x, now_s);
            if self.reorder.as_ref().is_some_and(|w| !w.is_empty()) {
                self.fragments_ready.push(key);
            }
        }
    }
}
