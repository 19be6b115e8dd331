//! Neighbors of VLAN ports, on kernels without 802.1Q devices (this one has none, see
//! PLATFORM.md): untagged ports keep the kernel as their neighbor resolver; for a VLAN port the
//! slow path learns its neighbors from the ARP and NDP they send us, and asks for the next hops
//! the engines miss, with these frames. (Answering requests for our addresses is the host
//! stack's, in `super`.) Pure functions on bytes, so each is tested here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hutong_common::{
    checksum,
    wire::{ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV6, IPPROTO_ICMPV6, is_vlan_tpid},
};
use ipnet::IpNet;

const NS: u8 = 135;
const NA: u8 = 136;

/// Reads a frame that arrived tagged on a VLAN port with addresses `ours`: the neighbor it
/// tells of, with its MAC, if it is on one of the port's subnets and the frame was meant for
/// us: the sender of an ARP request or reply for one of our addresses, the sender of a
/// neighbor solicitation for one, the target of an advertisement. Anything else, or anything
/// malformed, is `None`.
pub fn learned(frame: &[u8], ours: &[IpNet]) -> Option<(IpAddr, [u8; 6])> {
    let (ethertype, l3) = untag(frame)?;
    let body = frame.get(l3..)?;
    let on_link = |a: IpAddr| ours.iter().any(|n| n.contains(&a));
    let is_ours = |a: IpAddr| ours.iter().any(|n| n.addr() == a);
    match ethertype {
        ETH_P_ARP => {
            let a = body.get(..28)?;
            if a[..6] != [0, 1, 8, 0, 6, 4] {
                return None;
            }
            let op = u16::from_be_bytes([a[6], a[7]]);
            let sha: [u8; 6] = a[8..14].try_into().ok()?;
            let spa = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
            let tpa = Ipv4Addr::new(a[24], a[25], a[26], a[27]);
            if !is_ours(tpa.into()) || !matches!(op, 1 | 2) {
                return None;
            }
            on_link(spa.into()).then_some((IpAddr::V4(spa), sha))
        }
        ETH_P_IPV6 => {
            let h = body.get(..40)?;
            let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
            if h[0] >> 4 != 6 || h[6] != IPPROTO_ICMPV6 || h[7] != 255 {
                return None; // NDP is always sent with hop limit 255 (RFC 4861 7.1)
            }
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?);
            let icmp = body.get(40..40 + payload)?;
            if icmp.len() < 24 || !matches!(icmp[0], NS | NA) || icmp[1] != 0 {
                return None;
            }
            let target = Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?);
            // The link-layer address option: source's on a solicitation, target's on an advert.
            let want = if icmp[0] == NS { 1 } else { 2 };
            let lla = options(&icmp[24..]).find(|(t, _)| *t == want).map(|(_, v)| v)?;
            if icmp[0] == NS {
                // Duplicate address detection (from ::) teaches nothing.
                (is_ours(target.into()) && !src.is_unspecified() && on_link(src.into()))
                    .then_some((IpAddr::V6(src), lla))
            } else {
                on_link(target.into()).then_some((IpAddr::V6(target), lla))
            }
        }
        _ => None,
    }
}

/// A request for `target`'s MAC, from the port's address on `target`'s subnet (none: `None`).
pub fn solicit(vid: u16, mac: [u8; 6], ours: &[IpNet], target: IpAddr) -> Option<Vec<u8>> {
    let from = ours.iter().find(|n| n.contains(&target)).map(|n| n.addr())?;
    match (from, target) {
        (IpAddr::V4(from), IpAddr::V4(target)) => Some(arp(vid, mac, from, target)),
        (IpAddr::V6(from), IpAddr::V6(target)) => {
            let t = target.octets();
            let group = Ipv6Addr::new(
                0xff02,
                0,
                0,
                0,
                0,
                1,
                0xff00 | t[13] as u16,
                u16::from_be_bytes([t[14], t[15]]),
            );
            let eth_dst = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
            let mut icmp = vec![NS, 0, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&t);
            icmp.extend_from_slice(&[1, 1]);
            icmp.extend_from_slice(&mac);
            Some(ipv6_frame(vid, eth_dst, mac, from, group, icmp))
        }
        _ => None,
    }
}

/// The EtherType after one 802.1Q/802.1ad tag, and where the payload starts.
fn untag(frame: &[u8]) -> Option<(u16, usize)> {
    let tpid = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if !is_vlan_tpid(tpid) {
        return None;
    }
    Some((u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?), 18))
}

/// Ethernet + 802.1Q header.
fn header(vid: u16, dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An ARP request from us, to broadcast.
fn arp(vid: u16, mac: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = header(vid, [0xff; 6], mac, ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

/// A tagged IPv6 frame carrying ICMPv6 `icmp` (its checksum filled in), hop limit 255.
fn ipv6_frame(
    vid: u16,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mut icmp: Vec<u8>,
) -> Vec<u8> {
    let len = icmp.len() as u32;
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
    let c = checksum::finish(checksum::sum(&icmp, checksum::sum(&pseudo, 0)));
    icmp[2..4].copy_from_slice(&c.to_ne_bytes());
    let mut f = header(vid, dst_mac, src_mac, ETH_P_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f.extend_from_slice(&[IPPROTO_ICMPV6, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// NDP options (type, the 6-byte link-layer address) of an Ethernet link; stops at a
/// malformed one.
fn options(mut b: &[u8]) -> impl Iterator<Item = (u8, [u8; 6])> + '_ {
    std::iter::from_fn(move || {
        loop {
            let (kind, len) = (*b.first()?, *b.get(1)? as usize * 8);
            if len == 0 || b.len() < len {
                return None;
            }
            let (opt, rest) = b.split_at(len);
            b = rest;
            if len == 8 {
                return Some((kind, opt[2..8].try_into().ok()?));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn ours() -> Vec<IpNet> {
        vec!["10.30.0.1/24".parse().unwrap(), "fd30::1/64".parse().unwrap()]
    }

    /// What a host on the port sends when it looks for `target` (our own request builder,
    /// from the host's side).
    fn ask_from_host(host: &str, target: &str) -> Vec<u8> {
        solicit(30, HOST, &[host.parse().unwrap()], target.parse().unwrap()).unwrap()
    }

    #[test]
    fn the_sender_of_an_arp_request_for_us_is_learned() {
        let ask = ask_from_host("10.30.0.9/24", "10.30.0.1");
        assert_eq!(&ask[..6], &[0xff; 6], "to broadcast");
        assert_eq!(&ask[12..16], &[0x81, 0, 0, 30], "tagged with the port's VLAN");
        assert_eq!(learned(&ask, &ours()), Some(("10.30.0.9".parse().unwrap(), HOST)));
        // Not for us, or from off the subnet: nothing learned.
        assert_eq!(learned(&ask_from_host("10.30.0.9/24", "10.30.0.2"), &ours()), None);
        assert_eq!(learned(&ask_from_host("10.99.0.9/8", "10.30.0.1"), &ours()), None);
    }

    #[test]
    fn the_sender_of_a_neighbor_solicitation_for_us_is_learned() {
        let ask = ask_from_host("fd30::9/64", "fd30::1");
        assert_eq!(&ask[..6], &[0x33, 0x33, 0xff, 0, 0, 1], "to the solicited-node group");
        assert_eq!(learned(&ask, &ours()), Some(("fd30::9".parse().unwrap(), HOST)));
        assert_eq!(learned(&ask_from_host("fd30::9/64", "fd30::2"), &ours()), None);
    }

    #[test]
    fn duplicate_address_detection_and_junk_teach_nothing() {
        let mut dad = ask_from_host("fd30::9/64", "fd30::1");
        dad[26..42].fill(0); // source ::
        assert_eq!(learned(&dad, &ours()), None);
        let untagged = [&[0xff; 6][..], &HOST, &[0x08, 0x06], &[0; 28]].concat();
        assert_eq!(learned(&untagged, &ours()), None);
        for ask in [ask_from_host("10.30.0.9/24", "10.30.0.1"), ask_from_host("fd30::9/64", "fd30::1")] {
            for cut in 0..ask.len() {
                assert_eq!(learned(&ask[..cut], &ours()), None, "cut at {cut}");
            }
        }
        assert_eq!(
            solicit(30, HOST, &ours(), "10.99.0.1".parse().unwrap()),
            None,
            "no address on that subnet"
        );
    }
}
