//! Reading the frame: [`ptr_at`], through which every packet access goes, and the IPv4
//! header's validation (IPv6's is `crate::ipv6::validate`).
//!
//! Note for the verifier: `ptr_at` re-checks `data_end` for the exact range it hands out, so
//! every access is proven inside the frame where it happens; lengths used as offsets are masked
//! (the IPv4 header length to 60 bytes) so the verifier can bound the pointers built from them.

use aya_ebpf::programs::XdpContext;
use hutong_common::{
    Drop,
    wire::{IP_FRAG_OFFSET_MASK, IP_MORE_FRAGMENTS, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

/// A pointer to `T` at `offset`, or `Malformed` if the frame is too short.
#[inline(always)]
pub(crate) fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Drop> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Drop::Malformed);
    }
    Ok((start + offset) as *mut T)
}

#[inline(always)]
pub(crate) fn read_u16(ctx: &XdpContext, offset: usize) -> Result<u16, Drop> {
    Ok(unsafe { ptr_at::<[u8; 2]>(ctx, offset)?.read_unaligned() }).map(u16::from_be_bytes)
}

/// Validates the IPv4 header at `l3` and the transport header a whole datagram or first
/// fragment must carry, exactly as `dataplane::packet::parse` does. Returns the total length,
/// the fragment offset, the more-fragments flag and the protocol.
#[inline(always)]
pub(crate) fn validate_ipv4(ctx: &XdpContext, l3: usize) -> Result<(usize, u16, bool, u8), Drop> {
    let ip = ptr_at::<[u8; 20]>(ctx, l3)?;
    let vihl = unsafe { (*ip)[0] };
    if vihl >> 4 != 4 {
        return Err(Drop::Malformed);
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Drop::Malformed);
    }
    let total_len = read_u16(ctx, l3 + 2)? as usize;
    if total_len < ihl || l3 + total_len > ctx.data_end() - ctx.data() {
        return Err(Drop::Malformed);
    }
    let proto = unsafe { (*ip)[9] };
    let frag_word = read_u16(ctx, l3 + 6)?;
    let frag_off = frag_word & IP_FRAG_OFFSET_MASK;
    let more_frags = frag_word & IP_MORE_FRAGMENTS != 0;
    if frag_off == 0 {
        let l4 = l3 + (ihl & 0x3c);
        let end = l3 + (total_len & 0xffff);
        let need = match proto {
            IPPROTO_TCP => 20,
            IPPROTO_UDP | IPPROTO_ICMP => 8,
            _ => 0,
        };
        if l4 + need > end {
            return Err(Drop::Malformed);
        }
        if proto == IPPROTO_TCP {
            let data_off = ((unsafe { *ptr_at::<u8>(ctx, l4 + 12)? } >> 4) as usize) * 4;
            if data_off < 20 || l4 + data_off > end {
                return Err(Drop::Malformed);
            }
        }
    }
    Ok((total_len, frag_off, more_frags, proto))
}
