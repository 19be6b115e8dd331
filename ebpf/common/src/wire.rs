//! Facts of the wire formats both engines parse and rewrite: EtherTypes, IP protocol numbers,
//! header lengths, the IPv4 fragment bits, the TCP flags sessions are tracked by, which ICMP
//! messages are errors, and UDP's zero-checksum rule.
//!
//! One place, so the XDP program and the userspace engine cannot drift apart on a number or a
//! rule (the differential tests hold their verdicts equal, but only for the frames they try).
//! Plain `const`s and `#[inline(always)]` functions of scalars: the XDP program calls these
//! too, and the verifier must see them inlined (no call, no stack).

/// Ethernet header: two MACs and the EtherType.
pub const ETH_HLEN: usize = 14;
/// An 802.1Q (or 802.1ad) tag: TPID and TCI, between the MACs and the EtherType.
pub const VLAN_HLEN: usize = 4;

/// EtherTypes the gateway knows.
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// VLAN tag (C-tag).
pub const ETH_P_8021Q: u16 = 0x8100;
/// Service VLAN tag (S-tag, QinQ's outer): taken as one VLAN tag, as 802.1Q.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// Whether an EtherType is a VLAN tag's TPID (802.1Q or 802.1ad).
#[inline(always)]
pub const fn is_vlan_tpid(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// IP protocol numbers (IPv4 protocol, IPv6 next header).
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ICMPV6: u8 = 58;

/// The IPv6 fixed header.
pub const IPV6_HLEN: usize = 40;

/// Hop-by-hop options (0), routing (43), fragment (44) and destination options (60): the
/// IPv6 extension headers the gateway walks (the XDP program leaves them to the slow path).
#[inline(always)]
pub const fn is_ipv6_extension(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 60)
}

/// IPv4 flags/fragment-offset word: the offset bits (more-fragments and DF excluded).
pub const IP_FRAG_OFFSET_MASK: u16 = 0x1fff;
/// IPv4 flags/fragment-offset word: more fragments follow.
pub const IP_MORE_FRAGMENTS: u16 = 0x2000;

/// TCP flags (byte 13 of the header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
/// TCP flags the userspace engine tracks session state by: SYN, FIN, RST. A segment carrying
/// one is the userspace engine's to see (the program's flows never match it).
pub const TCP_STATE_FLAGS: u8 = TCP_SYN | TCP_FIN | TCP_RST;

/// ICMP echo types (they carry an identifier, which NAPT translates as a port).
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

/// Whether an ICMPv4 type is an echo request or reply.
#[inline(always)]
pub const fn is_icmp_echo(kind: u8) -> bool {
    kind == ICMP_ECHO_REPLY || kind == ICMP_ECHO_REQUEST
}

/// Whether an ICMPv4 type is an error that quotes a packet the gateway must translate back
/// (RFC 5508): destination unreachable (3), time exceeded (11), parameter problem (12). Both
/// engines decide by this which ICMPv4 packets carry an embedded packet (the XDP program hands
/// them to the slow path; `dataplane::packet::embedded` translates them).
///
/// Not the same list as RFC 1812's "never send an ICMP error about an ICMP error" (4.3.2.7),
/// which counts source quench (4) and redirect (5) too: `dataplane::engine::icmp` keeps that
/// wider list for the errors it originates.
#[inline(always)]
pub const fn is_icmp_error(kind: u8) -> bool {
    kind == 3 || kind == 11 || kind == 12
}

/// Whether an ICMPv4 type is an error message at all (RFC 792, RFC 1812 4.3.2.7): the ones
/// that quote a packet ([`is_icmp_error`]), source quench (4) and redirect (5). The gateway never
/// sends an ICMP error about one of these.
#[inline(always)]
pub const fn is_icmp_error_message(kind: u8) -> bool {
    is_icmp_error(kind) || kind == 4 || kind == 5
}

/// Whether an ICMPv6 type is an error (RFC 4443 2.1: types 0-127; 128-255 are informational).
#[inline(always)]
pub const fn is_icmpv6_error(kind: u8) -> bool {
    kind < 128
}

/// Whether the transport checksum field of protocol `proto` holding `csum` carries no checksum
/// at all: over IPv4, a UDP checksum of 0 means "none" (RFC 768), and a translation leaves it
/// 0. Over IPv6 UDP must always carry one (RFC 8200 8.1): never absent.
#[inline(always)]
pub const fn checksum_absent(ipv6: bool, proto: u8, csum: u16) -> bool {
    !ipv6 && proto == IPPROTO_UDP && csum == 0
}

/// The transport checksum of protocol `proto` to send once recomputed (or updated) to `sum`: a
/// computed UDP checksum of 0 is sent as 0xffff, its one's-complement equal (RFC 768; over IPv6,
/// RFC 8200 8.1), since 0 would read as "none".
#[inline(always)]
pub const fn checksum_to_send(proto: u8, sum: u16) -> u16 {
    if proto == IPPROTO_UDP && sum == 0 { 0xffff } else { sum }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethertypes_and_header_lengths() {
        assert_eq!((ETH_P_IPV4, ETH_P_ARP, ETH_P_IPV6), (0x0800, 0x0806, 0x86dd));
        assert!(is_vlan_tpid(0x8100) && is_vlan_tpid(0x88a8));
        assert!(!is_vlan_tpid(ETH_P_IPV4) && !is_vlan_tpid(0x9100));
        assert_eq!(ETH_HLEN + VLAN_HLEN, 18);
        assert_eq!(IPV6_HLEN, 40);
    }

    #[test]
    fn protocol_numbers() {
        assert_eq!((IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_GRE, IPPROTO_ICMPV6), (1, 6, 17, 47, 58));
        let ext: [u8; 4] = [0, 43, 44, 60];
        for next in 0..=255u8 {
            assert_eq!(is_ipv6_extension(next), ext.contains(&next), "{next}");
        }
    }

    #[test]
    fn fragment_bits_split_the_flags_word() {
        // DF | MF | offset 0x123: the offset bits and MF, never DF.
        let word: u16 = 0x4000 | 0x2000 | 0x0123;
        assert_eq!(word & IP_FRAG_OFFSET_MASK, 0x0123);
        assert!(word & IP_MORE_FRAGMENTS != 0);
        assert_eq!(0x4000 & (IP_FRAG_OFFSET_MASK | IP_MORE_FRAGMENTS), 0, "DF is neither");
    }

    #[test]
    fn tcp_state_flags_are_syn_fin_rst() {
        assert_eq!(TCP_STATE_FLAGS, 0x07);
        // ACK and PSH alone never count.
        assert_eq!(0x18 & TCP_STATE_FLAGS, 0);
    }

    #[test]
    fn icmp_echo_and_errors() {
        for kind in 0..=255u8 {
            assert_eq!(is_icmp_echo(kind), kind == 0 || kind == 8, "{kind}");
            assert_eq!(is_icmp_error(kind), matches!(kind, 3 | 11 | 12), "{kind}");
            assert_eq!(is_icmp_error_message(kind), matches!(kind, 3 | 4 | 5 | 11 | 12), "{kind}");
            assert_eq!(is_icmpv6_error(kind), kind < 128, "{kind}");
        }
        assert!(!is_icmpv6_error(ICMPV6_ECHO_REQUEST) && !is_icmpv6_error(ICMPV6_ECHO_REPLY));
    }

    #[test]
    fn udp_zero_checksum_rule() {
        // IPv4: zero is "none", and only for UDP.
        assert!(checksum_absent(false, IPPROTO_UDP, 0));
        assert!(!checksum_absent(false, IPPROTO_UDP, 0x1234));
        assert!(!checksum_absent(false, IPPROTO_TCP, 0));
        // IPv6: always computed.
        assert!(!checksum_absent(true, IPPROTO_UDP, 0));
        // A computed zero goes out as 0xffff, for UDP only.
        assert_eq!(checksum_to_send(IPPROTO_UDP, 0), 0xffff);
        assert_eq!(checksum_to_send(IPPROTO_UDP, 0x1234), 0x1234);
        assert_eq!(checksum_to_send(IPPROTO_TCP, 0), 0);
        assert_eq!(checksum_to_send(IPPROTO_ICMPV6, 0), 0);
    }
}
