//! The IANA special-purpose address registries (IPv4 and IPv6, RFC 6890 and the RFCs since),
//! plus multicast and the parts of IPv6 outside global unicast: addresses a plan must not hand
//! out as if they were ordinary ones, because they cannot work (loopback, multicast, 0.0.0.0,
//! the limited broadcast), belong to someone else's purpose (documentation, AS112, 6to4), or
//! are private (fine inside a department's VPN or a legacy network, never as extranet space).
//!
//! The benchmarking ranges (198.18.0.0/15, RFC 2544; 2001:2::/48, RFC 5180) are the one
//! exception: labs, examples and the acceptance bench use them on purpose.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Never a working host address anywhere: this network, loopback, link-local, multicast,
    /// reserved, the limited broadcast, unspecified.
    Unusable,
    /// Private-use space (RFC 1918, RFC 6598, unique-local): a VPN's or a legacy network's own.
    Private,
    /// RFC 2544 / RFC 5180: allowed, deliberately.
    Benchmarking,
    /// Everything else in the registries: documentation, protocol assignments, AS112, 6to4, ...
    Reserved,
}

pub struct Block {
    pub net: IpNet,
    pub name: &'static str,
    pub rfc: &'static str,
    pub class: Class,
}

#[allow(clippy::too_many_arguments)] // a table row: the address, its length and what it is
const fn v4(
    a: u8,
    b: u8,
    c: u8,
    d: u8,
    len: u8,
    name: &'static str,
    rfc: &'static str,
    class: Class,
) -> Block {
    Block { net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)), name, rfc, class }
}

const fn v6(addr: u128, len: u8, name: &'static str, rfc: &'static str, class: Class) -> Block {
    Block { net: IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from_bits(addr), len)), name, rfc, class }
}

use Class::*;

/// Most specific first: the first block a prefix overlaps names the problem.
pub const BLOCKS: &[Block] = &[
    v4(255, 255, 255, 255, 32, "the limited broadcast address", "RFC 919", Unusable),
    v4(0, 0, 0, 0, 8, "\"this network\"", "RFC 791", Unusable),
    v4(10, 0, 0, 0, 8, "private-use space", "RFC 1918", Private),
    v4(100, 64, 0, 0, 10, "shared address space (carrier-grade NAT)", "RFC 6598", Private),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122", Unusable),
    v4(169, 254, 0, 0, 16, "link-local", "RFC 3927", Unusable),
    v4(172, 16, 0, 0, 12, "private-use space", "RFC 1918", Private),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890", Reserved),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737", Reserved),
    v4(192, 31, 196, 0, 24, "AS112-v4", "RFC 7535", Reserved),
    v4(192, 52, 193, 0, 24, "AMT", "RFC 7450", Reserved),
    v4(192, 88, 99, 0, 24, "the deprecated 6to4 relay anycast", "RFC 7526", Reserved),
    v4(192, 168, 0, 0, 16, "private-use space", "RFC 1918", Private),
    v4(192, 175, 48, 0, 24, "AS112 direct delegation", "RFC 7534", Reserved),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544", Benchmarking),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)", "RFC 5737", Reserved),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737", Reserved),
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771", Unusable),
    v4(240, 0, 0, 0, 4, "reserved for future use", "RFC 1112", Unusable),
    v6(0, 128, "the unspecified address", "RFC 4291", Unusable),
    v6(1, 128, "loopback", "RFC 4291", Unusable),
    v6(0xffff_0000_0000, 96, "IPv4-mapped addresses", "RFC 4291", Reserved),
    v6(0x0064_ff9b << 96, 96, "IPv4/IPv6 translation", "RFC 6052", Reserved),
    v6(0x0064_ff9b_0001 << 80, 48, "local-use IPv4/IPv6 translation", "RFC 8215", Reserved),
    v6(0x0100 << 112, 64, "discard-only", "RFC 6666", Reserved),
    v6(0, 3, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0x2001_0002 << 96, 48, "benchmarking", "RFC 5180", Benchmarking),
    v6(0x2001_0db8 << 96, 32, "documentation", "RFC 3849", Reserved),
    v6(0x2001 << 112, 23, "IETF protocol assignments", "RFC 2928", Reserved),
    v6(0x2002 << 112, 16, "6to4", "RFC 3056", Reserved),
    v6(0x2620_004f_8000 << 80, 48, "AS112 direct delegation", "RFC 7534", Reserved),
    v6(0x3fff << 112, 20, "documentation", "RFC 9637", Reserved),
    v6(0xfc00 << 112, 7, "unique-local space", "RFC 4193", Private),
    v6(0xfe80 << 112, 10, "link-local", "RFC 4291", Unusable),
    v6(0xff00 << 112, 8, "multicast", "RFC 4291", Unusable),
    // The rest of ::/0 outside 2000::/3 (global unicast), in tiles.
    v6(0x4000 << 112, 2, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0x8000 << 112, 2, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0xc000 << 112, 3, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0xe000 << 112, 4, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0xf000 << 112, 5, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0xf800 << 112, 6, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0xfe00 << 112, 9, "IETF-reserved space outside global unicast", "RFC 4291", Reserved),
    v6(0xfec0 << 112, 10, "deprecated site-local space", "RFC 3879", Reserved),
];

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Where a prefix is used decides which special blocks it may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Extranet and internet-access space: plan blocks, pools, translation targets, service
    /// and interface addresses. Only benchmarking may be used.
    Plan,
    /// A department's dedicated VPN: private space too.
    Dedicated,
    /// A legacy network's own addresses (they are converted precisely because they may be
    /// anything): only what cannot work at all is refused.
    Legacy,
}

/// The special block `net` may not touch where it is used as `usage`, if any.
pub fn problem(net: &IpNet, usage: Usage) -> Option<&'static Block> {
    let inside_benchmarking = BLOCKS.iter().any(|b| b.class == Benchmarking && b.net.contains(net));
    BLOCKS.iter().find(|b| {
        overlaps(&b.net, net)
            && match (usage, b.class) {
                (_, Benchmarking) => false,
                // 2001:2::/48 sits inside 2001::/23, and 198.18.0.0/15 inside nothing special.
                _ if inside_benchmarking && b.net.contains(net) => false,
                (_, Unusable) => true,
                (Usage::Plan, _) => true,
                (Usage::Dedicated, Private) => false,
                (Usage::Dedicated, Reserved) => true,
                (Usage::Legacy, _) => false,
            }
    })
}

/// `net` lies wholly in private-use space (RFC 1918, RFC 6598, unique-local): addresses only
/// the VPN or network using them gives meaning to.
pub fn is_private(net: &IpNet) -> bool {
    BLOCKS.iter().any(|b| b.class == Private && b.net.contains(net))
}

/// "198.51.100.0/24 is documentation (TEST-NET-2, RFC 5737)" for messages.
pub fn describe(net: &IpNet, b: &Block) -> String {
    if b.net.contains(net) {
        format!("{net} is {} ({}, {})", b.name, b.net, b.rfc)
    } else {
        format!("{net} overlaps {} ({}, {})", b.name, b.net, b.rfc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, usage: Usage) -> Option<&'static str> {
        problem(&s.parse().unwrap(), usage).map(|b| b.name)
    }

    #[test]
    fn plan_space_refuses_every_special_block_but_benchmarking() {
        for ok in [
            "198.18.0.0/15",
            "198.19.4.1/32",
            "32.0.0.0/5",
            "2001:2::/48",
            "2001:2:0:100::/56",
            "2400:8000::/32",
        ] {
            assert_eq!(p(ok, Usage::Plan), None, "{ok}");
        }
        let refused = [
            ("0.0.0.0/32", "\"this network\""),
            ("255.255.255.255/32", "the limited broadcast address"),
            ("224.0.0.0/24", "multicast"),
            ("127.0.0.1/32", "loopback"),
            ("169.254.0.0/16", "link-local"),
            ("10.1.0.0/16", "private-use space"),
            ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
            ("192.0.0.8/32", "IETF protocol assignments"),
            ("203.0.113.0/28", "documentation (TEST-NET-3)"),
            ("240.0.0.0/8", "reserved for future use"),
            ("198.0.0.0/8", "benchmarking"), // contains more than benchmarking: refused by what else it holds
            ("::ffff:198.18.0.1/128", "IPv4-mapped addresses"),
            ("2001:db8::/48", "documentation"),
            ("2001::/32", "IETF protocol assignments"),
            ("2002::/16", "6to4"),
            ("fe80::/64", "link-local"),
            ("ff02::/16", "multicast"),
            ("fd00::/8", "unique-local space"),
            ("::/0", "the unspecified address"),
            ("5f00::/16", "IETF-reserved space outside global unicast"),
        ];
        for (net, name) in refused {
            let got = p(net, Usage::Plan);
            // 198.0.0.0/8 overlaps benchmarking and 198.51.100.0/24; either name is right as long as it is refused.
            assert!(got.is_some(), "{net} accepted");
            if net != "198.0.0.0/8" {
                assert_eq!(got, Some(name), "{net}");
            }
        }
    }

    #[test]
    fn vpns_may_be_private_and_legacy_networks_anything_that_works() {
        assert_eq!(p("10.200.0.0/14", Usage::Dedicated), None);
        assert_eq!(p("fd00:4300:1::/48", Usage::Dedicated), None);
        assert_eq!(p("203.0.113.0/24", Usage::Dedicated), Some("documentation (TEST-NET-3)"));
        assert_eq!(p("10.0.0.0/8", Usage::Legacy), None);
        assert_eq!(p("203.0.113.0/24", Usage::Legacy), None);
        assert_eq!(p("127.0.0.0/8", Usage::Legacy), Some("loopback"));
        assert_eq!(p("224.1.0.0/16", Usage::Legacy), Some("multicast"));
        assert_eq!(p("0.0.0.0/0", Usage::Legacy), Some("the limited broadcast address"));
    }

    #[test]
    fn descriptions_say_inside_or_overlapping() {
        let net: IpNet = "203.0.113.0/28".parse().unwrap();
        assert_eq!(
            describe(&net, problem(&net, Usage::Plan).unwrap()),
            "203.0.113.0/28 is documentation (TEST-NET-3) (203.0.113.0/24, RFC 5737)"
        );
    }
}
