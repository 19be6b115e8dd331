//! VLAN tags. A tagged frame's tag comes off on arrival (the rest of the program sees untagged
//! frames only) and waits in `TAG` until the frame leaves: [`crate::xmit::transmit`] tags it for
//! a VLAN egress port, [`crate::xmit::slow_path`] puts the arrival tag back.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use hutong_common::{Drop, Port};

use crate::{
    maps::TAG,
    parse::{load, store},
};

/// The tag a frame that arrived on `port` had (TPID << 16 | TCI), or 0: untagged.
#[inline(always)]
pub(crate) fn arrival_tag(port: &Port) -> u32 {
    if port.vlan == 0 { 0 } else { TAG.get(0).copied().unwrap_or(0) }
}

/// Removes the frame's 802.1Q tag (the MACs move up four bytes).
#[inline(always)]
pub(crate) fn pop_tag(ctx: &XdpContext) -> Result<(), Drop> {
    let macs = load::<[u8; 12]>(ctx, 0)?;
    adjust_head(ctx, 4)?;
    store(ctx, 0, macs)
}

/// Inserts an 802.1Q tag, `tag` = TPID << 16 | TCI, after the MACs.
#[inline(always)]
pub(crate) fn push_tag(ctx: &XdpContext, tag: u32) -> Result<(), Drop> {
    adjust_head(ctx, -4)?;
    let macs = load::<[u8; 12]>(ctx, 4)?;
    store(ctx, 0, macs)?;
    store(ctx, 12, tag.to_be_bytes())
}

/// Moves the frame's start by `delta` bytes (positive: shorter), or `Malformed` if it cannot.
#[inline(always)]
fn adjust_head(ctx: &XdpContext, delta: i32) -> Result<(), Drop> {
    // SAFETY: `ctx.ctx` is this run's own context, as the helper wants it; the kernel checks the
    // new start against the frame's room and fails otherwise. It moves the frame under every
    // packet pointer: none is kept across this call (each access checks anew, `ptr_at`).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delta) } != 0 {
        return Err(Drop::Malformed);
    }
    Ok(())
}
