//! Reading the frame: [`ptr_at`], through which every packet access goes, [`load`],
//! [`load_into`] and [`store`] (the program's reads and writes of the frame, the only `unsafe`
//! of them), and the IPv4 header's validation (IPv6's is `crate::ipv6::validate`).
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

/// What [`load`] and [`store`] copy out of and into the frame.
///
/// # Safety
///
/// Any `size_of::<Self>()` bytes must be a valid `Self`: integers and byte arrays.
pub(crate) unsafe trait Plain: Copy {}
// SAFETY: an integer: any bytes are a value.
unsafe impl Plain for u8 {}
// SAFETY: an integer: any bytes are a value.
unsafe impl Plain for u16 {}
// SAFETY: an integer: any bytes are a value.
unsafe impl Plain for u32 {}
// SAFETY: bytes: any bytes are a value.
unsafe impl<const N: usize> Plain for [u8; N] {}

/// The `T` at `offset` in the frame (read unaligned), or `Malformed` if the frame is too short.
#[inline(always)]
pub(crate) fn load<T: Plain>(ctx: &XdpContext, offset: usize) -> Result<T, Drop> {
    let p = ptr_at::<T>(ctx, offset)?;
    // SAFETY: `ptr_at` checked [offset, offset + size_of::<T>()) against data_end: the bytes are
    // the frame's, readable for this whole run; any bytes are a `T: Plain`; read unaligned.
    Ok(unsafe { p.read_unaligned() })
}

/// [`load`] into `to`: for the larger reads (an IPv6 address), which as a returned `Result`
/// went through a copy on the stack the verifier's 512 bytes cannot spare.
#[inline(always)]
pub(crate) fn load_into<T: Plain>(ctx: &XdpContext, offset: usize, to: &mut T) -> Result<(), Drop> {
    let p = ptr_at::<T>(ctx, offset)?;
    // SAFETY: as in `load`: [offset, offset + size_of::<T>()) is in the frame; any bytes are a `T`.
    *to = unsafe { p.read_unaligned() };
    Ok(())
}

/// Writes `value` at `offset` in the frame (unaligned), or `Malformed` if the frame is too short.
#[inline(always)]
pub(crate) fn store<T: Plain>(ctx: &XdpContext, offset: usize, value: T) -> Result<(), Drop> {
    let p = ptr_at::<T>(ctx, offset)?;
    // SAFETY: `ptr_at` checked [offset, offset + size_of::<T>()) against data_end: the bytes are
    // the frame's, which an XDP program may write; the program holds no reference into the
    // frame (only copies, by `load`); written unaligned.
    unsafe { p.write_unaligned(value) };
    Ok(())
}

/// The big-endian `u16` at `offset` in the frame.
#[inline(always)]
pub(crate) fn read_u16(ctx: &XdpContext, offset: usize) -> Result<u16, Drop> {
    load::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

/// Validates the IPv4 header at `l3` and the transport header a whole datagram or first
/// fragment must carry, exactly as `dataplane::packet::parse` does. Returns the total length,
/// the fragment offset, the more-fragments flag and the protocol.
#[inline(always)]
pub(crate) fn validate_ipv4(ctx: &XdpContext, l3: usize) -> Result<(usize, u16, bool, u8), Drop> {
    let ip = load::<[u8; 20]>(ctx, l3)?;
    let vihl = ip[0];
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
    let proto = ip[9];
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
            let data_off = ((load::<u8>(ctx, l4 + 12)? >> 4) as usize) * 4;
            if data_off < 20 || l4 + data_off > end {
                return Err(Drop::Malformed);
            }
        }
    }
    Ok((total_len, frag_off, more_frags, proto))
}
