//! Incremental Internet checksum update (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
//!
//! Used by both engines so a rewritten packet carries the same checksum bytes whichever engine
//! forwarded it. Values are the checksum field and header words exactly as they sit in the packet
//! (network byte order), read as native `u16`/`u32`; one's-complement sums are byte-order
//! independent, so no swapping is needed.

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum after one 16-bit word of the covered data changed from `old` to `new`.
#[inline(always)]
pub fn replace2(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + (new as u32);
    !fold(sum)
}

/// The checksum after a 32-bit field (an IPv4 address) changed from `old` to `new`.
#[inline(always)]
pub fn replace4(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check as u32)
        + (!(old as u16) as u32)
        + (!((old >> 16) as u16) as u32)
        + ((new as u16) as u32)
        + ((new >> 16) as u16 as u32);
    !fold(sum)
}

/// The checksum after a 128-bit field (an IPv6 address) changed from `old` to `new`.
#[inline(always)]
pub fn replace16(check: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    let mut sum = !check as u32;
    let mut i = 0;
    while i < 16 {
        sum += !u16::from_ne_bytes([old[i], old[i + 1]]) as u32;
        sum += u16::from_ne_bytes([new[i], new[i + 1]]) as u32;
        i += 2;
    }
    !fold(sum)
}

/// One's-complement sum of `data` (odd length padded with a zero byte), not inverted; the
/// building block for full checksums (ICMP messages the gateway generates, NPTv6 adjustments).
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = initial as u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_ne_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        acc += u16::from_ne_bytes([*last, 0]) as u64;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// NPTv6's `adjust` (RFC 6296 section 3.2) for a translation from prefix `from` to prefix `to`
/// (their first 64 bits): what the word at bits 48-63 gains so the address sum is unchanged.
pub fn nptv6_adjust(from: &[u8; 8], to: &[u8; 8]) -> u32 {
    sum(from, 0) + (0xffff - sum(to, 0))
}

/// NPTv6's new word at bits 48-63: `word`, as it sits in the translated address (read as
/// native), plus `adjust`, in one's complement; 0xFFFF is written as 0. `None` for a word of
/// 0xFFFF, which cannot be translated back unambiguously (section 3.5). Both engines call
/// this, so they agree bit for bit.
#[inline(always)]
pub fn nptv6_word(word: u16, adjust: u32) -> Option<u16> {
    if word == 0xffff {
        return None;
    }
    let w = fold(adjust + word as u32);
    Some(if w == 0xffff { 0 } else { w })
}

/// The finished checksum of a running [`sum`].
#[inline(always)]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full one's-complement checksum over `data`, the reference the incremental forms must match.
    fn full(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for chunk in data.chunks(2) {
            let word = if chunk.len() == 2 { [chunk[0], chunk[1]] } else { [chunk[0], 0] };
            sum += u16::from_ne_bytes(word) as u32;
        }
        !fold(sum)
    }

    // An IPv4 header (RFC 1071 style example): 10.20.0.10 -> 198.19.0.2, TTL 64, UDP.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 20, 0, 10, 198, 19, 0, 2,
    ];

    fn with_check(mut h: [u8; 20]) -> [u8; 20] {
        h[10] = 0;
        h[11] = 0;
        let c = full(&h);
        h[10..12].copy_from_slice(&c.to_ne_bytes());
        h
    }

    #[test]
    fn replace4_matches_recomputation() {
        let before = with_check(HDR);
        let mut after = before;
        after[12..16].copy_from_slice(&[198, 18, 20, 10]);
        let expected = with_check(after);
        let old = u32::from_ne_bytes(before[12..16].try_into().unwrap());
        let new = u32::from_ne_bytes(after[12..16].try_into().unwrap());
        let check = u16::from_ne_bytes([before[10], before[11]]);
        assert_eq!(replace4(check, old, new).to_ne_bytes(), [expected[10], expected[11]]);
    }

    #[test]
    fn replace16_matches_recomputation() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i * 37 + 11) as u8;
        }
        let before = finish(sum(&data, 0));
        let old: [u8; 16] = data[8..24].try_into().unwrap();
        let new = [0x20, 0x01, 0x0d, 0xb8, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xff, 0xee];
        data[8..24].copy_from_slice(&new);
        let after = finish(sum(&data, 0));
        let got = replace16(before, &old, &new);
        assert!(got == after || matches!((got, after), (0, 0xffff) | (0xffff, 0)), "{got:#x} vs {after:#x}");
    }

    #[test]
    fn sum_handles_odd_lengths() {
        assert_eq!(finish(sum(&[0x01], 0)), !u16::from_ne_bytes([0x01, 0]));
        assert_eq!(sum(&[], 7), 7);
    }

    #[test]
    fn replace2_matches_recomputation_for_ttl() {
        let before = with_check(HDR);
        let mut after = before;
        after[8] -= 1;
        let expected = with_check(after);
        let old = u16::from_ne_bytes([before[8], before[9]]);
        let new = u16::from_ne_bytes([after[8], after[9]]);
        let check = u16::from_ne_bytes([before[10], before[11]]);
        assert_eq!(replace2(check, old, new).to_ne_bytes(), [expected[10], expected[11]]);
    }

    #[test]
    fn many_random_rewrites_match_recomputation() {
        // A small deterministic generator keeps the test dependency-free and reproducible.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..10_000 {
            let mut h = HDR;
            for b in h.iter_mut() {
                *b = next() as u8;
            }
            let before = with_check(h);
            let mut after = before;
            let new_addr = (next() as u32).to_ne_bytes();
            after[16..20].copy_from_slice(&new_addr);
            let expected = with_check(after);
            let old = u32::from_ne_bytes(before[16..20].try_into().unwrap());
            let check = u16::from_ne_bytes([before[10], before[11]]);
            let got = replace4(check, old, u32::from_ne_bytes(new_addr));
            // 0x0000 and 0xffff are the same value in one's complement; both verify.
            let want = u16::from_ne_bytes([expected[10], expected[11]]);
            let same_zero = matches!((got, want), (0, 0xffff) | (0xffff, 0));
            assert!(got == want || same_zero, "{got:#x} vs {want:#x}");
        }
    }
}
