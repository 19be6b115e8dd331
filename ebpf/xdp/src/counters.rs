//! The program's counters: statistics and drop reasons (`STATS`, `DROPS`), each port's packets
//! and bytes (`PORT_COUNTERS`) and each rule's hits (`RULE_HITS`). All per CPU: a plain add,
//! no atomics.

use aya_ebpf::{maps::PerCpuArray, programs::XdpContext};

use crate::maps::{PORT_COUNTERS, RULE_HITS};

#[inline(always)]
pub(crate) fn count(map: &PerCpuArray<u64>, index: u32) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: a per-CPU array's slot, from its lookup: valid for this run, and no other CPU,
        // nor another run (XDP runs to completion on its CPU), writes it meanwhile, so a plain
        // add is race-free.
        unsafe { *c += 1 };
    }
}

/// Counts the frame as received on (or sent out of) the port in slot `slot`.
#[inline(always)]
pub(crate) fn count_port(ctx: &XdpContext, slot: u16, tx: bool) {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if let Some(c) = PORT_COUNTERS.get_ptr_mut(slot as u32) {
        // SAFETY: a per-CPU array's slot, as in `count`: valid, and written by this run alone.
        unsafe {
            if tx {
                (*c).tx_packets += 1;
                (*c).tx_bytes += len;
            } else {
                (*c).rx_packets += 1;
                (*c).rx_bytes += len;
            }
        }
    }
}

#[inline(always)]
pub(crate) fn count_rule(index: u32, n: u64) {
    if let Some(c) = RULE_HITS.get_ptr_mut(index) {
        // SAFETY: a per-CPU array's slot, as in `count`: valid, and written by this run alone.
        unsafe { *c = (*c).wrapping_add(n) };
    }
}
