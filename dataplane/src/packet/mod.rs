//! Packet parsing and in-place rewriting for the userspace engine.
//!
//! [`parse`] walks a frame once — Ethernet, one optional 802.1Q tag, IPv4 (options tolerated) or
//! IPv6 (extension headers walked, at most [`MAX_IPV6_EXT_HEADERS`]), then TCP, UDP, ICMP or ICMPv6 —
//! and records offsets and fields in a [`Meta`]. It validates every length it relies on, so after a
//! successful parse every accessor and rewrite in this module stays inside the frame: code working
//! on a parsed packet never panics on its bytes. Anything inconsistent is a [`Drop`] reason, never a
//! panic.
//!
//! The XDP program mirrors these rules (the differential test of the XDP issue holds them equal).

#![forbid(unsafe_code)]

pub mod embedded;
pub mod gre;
pub mod meta;
pub mod rewrite;

pub use meta::{Frag, L3, L4, Meta, parse};

use crate::Drop;

/// EtherTypes the gateway knows.
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;

/// IP protocol numbers.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Which end of a packet (or of the packet an ICMP error quotes) a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Src,
    Dst,
}

/// Bound on the IPv6 extension-header walk: a chain longer than this is dropped as malformed
/// rather than walked (a cheap DoS otherwise; real traffic carries one or two).
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Result<u16, Drop> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(Drop::Malformed),
    }
}
