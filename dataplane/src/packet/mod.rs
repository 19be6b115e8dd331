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

/// EtherTypes, header lengths and IP protocol numbers: the ones the XDP program uses too.
pub use hutong_common::wire::{
    ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6,
    IPPROTO_TCP, IPPROTO_UDP, VLAN_HLEN,
};

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
