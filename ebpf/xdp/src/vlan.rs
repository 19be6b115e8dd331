//! VLAN tags. A tagged frame's tag comes off on arrival (the rest of the program sees untagged
//! frames only) and waits in `TAG` until the frame leaves: [`crate::xmit::transmit`] tags it for
//! a VLAN egress port, [`crate::xmit::slow_path`] puts the arrival tag back.

use aya_ebpf::{helpers::generated::bpf_xdp_adjust_head, programs::XdpContext};
use hutong_common::{Drop, Port};

use crate::{maps::TAG, parse::ptr_at};

/// The tag a frame that arrived on `port` had (TPID << 16 | TCI), or 0: untagged.
#[inline(always)]
pub(crate) fn arrival_tag(port: &Port) -> u32 {
    if port.vlan == 0 { 0 } else { TAG.get(0).copied().unwrap_or(0) }
}

/// Removes the frame's 802.1Q tag (the MACs move up four bytes).
#[inline(always)]
pub(crate) fn pop_tag(ctx: &XdpContext) -> Result<(), Drop> {
    let macs = unsafe { *ptr_at::<[u8; 12]>(ctx, 0)? };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, 4) } != 0 {
        return Err(Drop::Malformed);
    }
    unsafe { ptr_at::<[u8; 12]>(ctx, 0)?.write_unaligned(macs) };
    Ok(())
}

/// Inserts an 802.1Q tag, `tag` = TPID << 16 | TCI, after the MACs.
#[inline(always)]
pub(crate) fn push_tag(ctx: &XdpContext, tag: u32) -> Result<(), Drop> {
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -4) } != 0 {
        return Err(Drop::Malformed);
    }
    let macs = unsafe { *ptr_at::<[u8; 12]>(ctx, 4)? };
    unsafe {
        ptr_at::<[u8; 12]>(ctx, 0)?.write_unaligned(macs);
        ptr_at::<[u8; 4]>(ctx, 12)?.write_unaligned(tag.to_be_bytes());
    }
    Ok(())
}
