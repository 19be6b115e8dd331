//! ARP and NDP for the ports the kernel cannot serve: VLAN ports, on kernels without 802.1Q
//! devices (this one has none, see PLATFORM.md). Untagged ports keep the kernel as their host
//! stack; for a VLAN port the slow path answers requests for its addresses, learns its
//! neighbors from what they send, and asks for the next hops the engines miss, with these
//! frames. Pure functions on bytes, so each is tested here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hutong_common::checksum;
use ipnet::IpNet;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_ICMPV6: u8 = 58;
const NS: u8 = 135;
const NA: u8 = 136;

/// What a frame for the host stack means for a VLAN port's neighbors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    /// The answer to send back (an ARP reply, a neighbor advertisement), if it asked for us.
    pub reply: Option<Vec<u8>>,
    /// A neighbor on the port's subnets and its MAC, if the frame tells one.
    pub learned: Option<(IpAddr, [u8; 6])>,
}

/// Reads a frame that arrived tagged on a VLAN port with MAC `mac` and addresses `ours`: an
/// ARP request or neighbor solicitation for one of them gets its answer (tagged `vid`), and
/// the sender of a request or answer addressed to us is learned if it is on one of the port's
/// subnets. Anything else, or anything malformed, is `None`.
pub fn heard(frame: &[u8], vid: u16, mac: [u8; 6], ours: &[IpNet]) -> Option<Heard> {
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
            let learned = on_link(spa.into()).then_some((IpAddr::V4(spa), sha));
            let reply = (op == 1).then(|| arp(vid, mac, sha, 2, tpa, spa));
            Some(Heard { reply, learned })
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
            let lla = options(&icmp[24..]).find(|(t, _)| *t == want).map(|(_, v)| v);
            if icmp[0] == NS {
                if !is_ours(target.into()) || src.is_unspecified() {
                    return None; // duplicate address detection is not answered
                }
                let lla = lla?;
                let learned = on_link(src.into()).then_some((IpAddr::V6(src), lla));
                Some(Heard { reply: Some(advert(vid, mac, lla, target, src)), learned })
            } else {
                let learned = lla.filter(|_| on_link(target.into())).map(|m| (IpAddr::V6(target), m));
                Some(Heard { reply: None, learned })
            }
        }
        _ => None,
    }
}

/// A request for `target`'s MAC, from the port's address on `target`'s subnet (none: `None`).
pub fn solicit(vid: u16, mac: [u8; 6], ours: &[IpNet], target: IpAddr) -> Option<Vec<u8>> {
    let from = ours.iter().find(|n| n.contains(&target)).map(|n| n.addr())?;
    match (from, target) {
        (IpAddr::V4(from), IpAddr::V4(target)) => Some(arp(vid, mac, [0; 6], 1, from, target)),
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
    if tpid != ETH_P_8021Q && tpid != 0x88a8 {
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

/// An ARP packet (`op` 1 request, 2 reply) from us; a request goes to broadcast.
fn arp(vid: u16, mac: [u8; 6], to: [u8; 6], op: u16, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let dst = if op == 1 { [0xff; 6] } else { to };
    let mut f = header(vid, dst, mac, ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&to);
    f.extend_from_slice(&tpa.octets());
    f
}

/// A solicited neighbor advertisement for our `target`, to `to` (MAC `to_mac`).
fn advert(vid: u16, mac: [u8; 6], to_mac: [u8; 6], target: Ipv6Addr, to: Ipv6Addr) -> Vec<u8> {
    // Solicited and override (RFC 4861 4.4); we are not a router on this link for the asker's
    // purposes (no R flag: the gateway routes, but it advertises no default route here).
    let mut icmp = vec![NA, 0, 0, 0, 0x60, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    ipv6_frame(vid, to_mac, mac, target, to, icmp)
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
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const HOST: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn ours() -> Vec<IpNet> {
        vec!["10.30.0.1/24".parse().unwrap(), "fd30::1/64".parse().unwrap()]
    }

    #[test]
    fn an_arp_request_for_us_is_answered_and_its_sender_learned() {
        // The host's own request, as it would send it (built by our request builder, from it).
        let ask =
            solicit(30, HOST, &["10.30.0.9/24".parse().unwrap()], "10.30.0.1".parse().unwrap()).unwrap();
        let h = heard(&ask, 30, MAC, &ours()).unwrap();
        assert_eq!(h.learned, Some(("10.30.0.9".parse().unwrap(), HOST)));
        let r = h.reply.unwrap();
        assert_eq!(&r[..12], &[HOST, MAC].concat()[..]);
        assert_eq!(&r[12..16], &[0x81, 0, 0, 30], "tagged with the port's VLAN");
        assert_eq!(&r[18 + 6..18 + 8], &[0, 2], "a reply");
        assert_eq!(&r[18 + 14..18 + 18], &[10, 30, 0, 1], "for our address");
        assert_eq!(&r[18 + 24..18 + 28], &[10, 30, 0, 9], "to the asker");
        // Not ours, or from off the subnet: no answer, or nothing learned.
        let other =
            solicit(30, HOST, &["10.30.0.9/24".parse().unwrap()], "10.30.0.2".parse().unwrap()).unwrap();
        assert_eq!(heard(&other, 30, MAC, &ours()), None);
        let far = solicit(30, HOST, &["10.99.0.9/8".parse().unwrap()], "10.30.0.1".parse().unwrap()).unwrap();
        assert_eq!(heard(&far, 30, MAC, &ours()).unwrap().learned, None);
    }

    #[test]
    fn a_neighbor_solicitation_for_us_gets_a_valid_advertisement() {
        let host: Ipv6Addr = "fd30::9".parse().unwrap();
        let ask = solicit(30, HOST, &["fd30::9/64".parse().unwrap()], "fd30::1".parse().unwrap()).unwrap();
        let h = heard(&ask, 30, MAC, &ours()).unwrap();
        assert_eq!(h.learned, Some((IpAddr::V6(host), HOST)));
        let r = h.reply.unwrap();
        let p = SlicedPacket::from_ethernet(&r).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("IPv6") };
        assert_eq!(
            (ip.header().source_addr(), ip.header().destination_addr()),
            ("fd30::1".parse().unwrap(), host)
        );
        assert_eq!(ip.header().hop_limit(), 255);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else { panic!("ICMPv6") };
        assert_eq!(icmp.type_u8(), NA);
        let want = icmp
            .icmp_type()
            .calc_checksum(ip.header().source(), ip.header().destination(), icmp.payload())
            .unwrap();
        assert_eq!(icmp.checksum(), want, "the checksum verifies");
        // Its target link-layer option teaches the host our MAC: our own reader learns it back.
        let back = heard(&r, 30, HOST, &["fd30::9/64".parse().unwrap()]).unwrap();
        assert_eq!(back.learned, Some(("fd30::1".parse().unwrap(), MAC)));
    }

    #[test]
    fn duplicate_address_detection_and_junk_get_nothing() {
        let mut dad =
            solicit(30, HOST, &["fd30::9/64".parse().unwrap()], "fd30::1".parse().unwrap()).unwrap();
        dad[26..42].fill(0); // source ::
        assert_eq!(heard(&dad, 30, MAC, &ours()), None);
        let untagged = [&[0xff; 6][..], &HOST, &[0x08, 0x06], &[0; 28]].concat();
        assert_eq!(heard(&untagged, 30, MAC, &ours()), None);
        for cut in 0..60 {
            let ask =
                solicit(30, HOST, &["10.30.0.9/24".parse().unwrap()], "10.30.0.1".parse().unwrap()).unwrap();
            let _ = heard(&ask[..cut.min(ask.len())], 30, MAC, &ours());
        }
        assert_eq!(
            solicit(30, MAC, &ours(), "10.99.0.1".parse().unwrap()),
            None,
            "no address on that subnet"
        );
    }
}
