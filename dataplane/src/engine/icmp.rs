//! ICMP errors the gateway originates: time exceeded (TTL / hop limit expired in transit) and
//! fragmentation needed / packet too big (DF packet over the egress MTU).
//!
//! Built with etherparse: this is the slow path, and a generated packet must be right rather than
//! fast. The rules of RFC 1812 section 4.3.2.7 and RFC 4443 section 2.4(e) decide when not to send:
//! never about an ICMP error, never about a later fragment, never to a multicast or broadcast
//! source.

use std::net::IpAddr;

use etherparse::{
    Icmpv4Type, Icmpv6Type, PacketBuilder, VlanId,
    icmpv4::{DestUnreachableHeader, TimeExceededCode},
    icmpv6::TimeExceededCode as TimeExceededCode6,
};

use hutong_common::{Drop, Stat, wire};

use super::{Compiled, Engine, Step};
use crate::{
    buffer::{Packet, Verdict},
    packet::{Frag, IPPROTO_ICMP, IPPROTO_ICMPV6, L3, L4, Meta},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    TimeExceeded,
    /// The egress MTU the packet did not fit.
    TooBig {
        mtu: u16,
    },
    /// Destination unreachable, communication administratively prohibited (ICMPv4 type 3
    /// code 13): NAT ports exhausted.
    AdminProhibited,
}

/// Largest ICMPv4 error (RFC 1812: as much of the original as fits in 576 bytes).
const V4_MAX: usize = 576;
/// Largest ICMPv6 error (RFC 4443: as much as fits in the minimum MTU, 1280 bytes).
const V6_MAX: usize = 1280;

/// Whether RFC 1812 / RFC 4443 allow an error about this packet at all.
fn may_answer(m: &Meta) -> bool {
    if matches!(m.frag, Frag::Later { .. }) {
        return false;
    }
    if let L4::Icmp { kind, .. } = m.l4 {
        let is_error = match m.proto {
            IPPROTO_ICMP => wire::is_icmp_error_message(kind),
            IPPROTO_ICMPV6 => wire::is_icmpv6_error(kind),
            _ => false,
        };
        if is_error {
            return false;
        }
    }
    match m.l3 {
        L3::V4 { src, .. } => !(src.is_multicast() || src.is_broadcast() || src.is_unspecified()),
        L3::V6 { src, .. } => !(src.is_multicast() || src.is_unspecified()),
        L3::Arp => false,
    }
}

/// Builds the error answering `frame` (parsed as `m`), sent from the gateway address `from`
/// and our MAC `our_mac` back to the frame's sender, in the frame's VLAN. `None` when the rules
/// forbid an answer or `from` is of the other address family.
pub fn answer(frame: &[u8], m: &Meta, kind: IcmpError, from: IpAddr, our_mac: [u8; 6]) -> Option<Vec<u8>> {
    if !may_answer(m) {
        return None;
    }
    let their_mac: [u8; 6] = frame[6..12].try_into().ok()?;
    let eth = PacketBuilder::ethernet2(our_mac, their_mac);
    let original = &frame[m.l3_off..m.end];
    let mut out = Vec::new();
    match (m.l3, from) {
        (L3::V4 { src, .. }, IpAddr::V4(from)) => {
            let t = match kind {
                IcmpError::TimeExceeded => Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
                IcmpError::TooBig { mtu } => {
                    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                        next_hop_mtu: mtu,
                    })
                }
                IcmpError::AdminProhibited => {
                    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FilterProhibited)
                }
            };
            let quote = &original[..original.len().min(V4_MAX - 20 - 8)];
            let b = match m.vlan {
                Some(v) => {
                    eth.single_vlan(VlanId::try_new(v).ok()?).ipv4(from.octets(), src.octets(), 64).icmpv4(t)
                }
                None => eth.ipv4(from.octets(), src.octets(), 64).icmpv4(t),
            };
            b.write(&mut out, quote).ok()?;
            internetwork_control(&mut out[if m.vlan.is_some() { 18 } else { 14 }..]);
        }
        (L3::V6 { src, .. }, IpAddr::V6(from)) => {
            let t = match kind {
                IcmpError::TimeExceeded => Icmpv6Type::TimeExceeded(TimeExceededCode6::HopLimitExceeded),
                IcmpError::TooBig { mtu } => Icmpv6Type::PacketTooBig { mtu: mtu as u32 },
                IcmpError::AdminProhibited => {
                    Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Prohibited)
                }
            };
            let quote = &original[..original.len().min(V6_MAX - 40 - 8)];
            let b = match m.vlan {
                Some(v) => {
                    eth.single_vlan(VlanId::try_new(v).ok()?).ipv6(from.octets(), src.octets(), 64).icmpv6(t)
                }
                None => eth.ipv6(from.octets(), src.octets(), 64).icmpv6(t),
            };
            b.write(&mut out, quote).ok()?;
        }
        _ => return None,
    }
    Some(out)
}

/// IP precedence 6, internetwork control (TOS 0xc0), on an ICMP error the gateway sends: RFC
/// 1812 4.3.2.5 asks that of a router's own errors, so that they are not the first dropped.
/// The IPv4 header's checksum is written again.
fn internetwork_control(ipv4: &mut [u8]) {
    const PRECEDENCE_6: u8 = 0xc0;
    if ipv4.len() < 20 {
        return;
    }
    let len = ((ipv4[0] & 0x0f) as usize * 4).min(ipv4.len());
    ipv4[1] = PRECEDENCE_6;
    ipv4[10..12].copy_from_slice(&[0, 0]);
    let sum = ipv4[..len]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    ipv4[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
}

/// A token bucket limiting generated errors (RFC 1812 4.3.2.8, RFC 4443 2.4(f)).
#[derive(Clone, Debug)]
pub struct RateLimit {
    per_second: u64,
    burst: u64,
    tokens: u64,
    last_ns: u64,
}

impl RateLimit {
    pub fn new(per_second: u64, burst: u64) -> RateLimit {
        RateLimit { per_second, burst, tokens: burst, last_ns: 0 }
    }

    /// Takes a token at time `now_ns` if one is left.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        let refill = elapsed.saturating_mul(self.per_second) / 1_000_000_000;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last_ns = now_ns;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Engine {
    /// The packet is dropped for `reason`; where the RFCs ask for it and the rate limit allows,
    /// it is replaced by an ICMP error back to its sender.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn icmp_error(
        &mut self,
        t: &Compiled,
        pkt: &mut Packet,
        m: &Meta,
        port: usize,
        kind: IcmpError,
        now_ns: u64,
        tr: &mut Option<Vec<Step>>,
        reason: Drop,
    ) -> Verdict {
        if t.ports[port].tunnel.is_some() {
            // Answering would need the error encapsulated back through the tunnel; not yet.
            return Verdict::Drop(reason);
        }
        let want_v4 = matches!(m.l3, L3::V4 { .. });
        let from = t.config.ports[port].addresses.iter().map(|a| a.addr()).find(|a| a.is_ipv4() == want_v4);
        let mac = self.ifaces[pkt.iface].mac;
        let Some(reply) = from.and_then(|from| answer(pkt.frame(), m, kind, from, mac)) else {
            return Verdict::Drop(reason);
        };
        if !self.icmp.allow(now_ns) {
            self.counters.stats[Stat::IcmpSuppressed as usize] += 1;
            if let Some(s) = tr.as_mut() {
                s.push(Step::new("icmp", "icmp", "error suppressed by the rate limit".into()));
            }
            return Verdict::Drop(reason);
        }
        if let Some(s) = tr.as_mut() {
            s.push(Step::new(
                "icmp",
                "icmp",
                format!("{kind:?} back out of {}", self.ifaces[pkt.iface].name),
            ));
        }
        pkt.replace(&reply);
        self.counters.stats[Stat::IcmpErrors as usize] += 1;
        self.counters.port_tx_packets.add(port, 1);
        self.counters.port_tx_bytes.add(port, reply.len() as u64);
        Verdict::Reply { iface: pkt.iface, dropped: reason }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;
    use crate::packet::parse;

    fn udp4(ttl: u8) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x0a], [2, 0, 0, 0, 0, 1])
            .ipv4([10, 20, 0, 10], [198, 19, 0, 2], ttl)
            .udp(5000, 53);
        let mut v = Vec::new();
        b.write(&mut v, &[7; 600]).unwrap();
        v
    }

    #[test]
    fn time_exceeded_quotes_the_original_and_goes_back_to_the_sender() {
        let f = udp4(1);
        let m = parse(&f).unwrap();
        let r = answer(&f, &m, IcmpError::TimeExceeded, "10.20.0.1".parse().unwrap(), [2, 0, 0, 0, 0, 1])
            .unwrap();
        let s = SlicedPacket::from_ethernet(&r).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &s.net else { panic!("not IPv4") };
        assert_eq!(ip.header().source(), [10, 20, 0, 1]);
        assert_eq!(ip.header().destination(), [10, 20, 0, 10]);
        assert_eq!(&r[0..6], &[2, 0, 0, 0, 0, 0x0a]);
        let Some(TransportSlice::Icmpv4(icmp)) = &s.transport else { panic!("not ICMP") };
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (11, 0));
        // Quoted: the original IP header onwards, cut so the whole error is 576 bytes of IP.
        assert_eq!(icmp.payload(), &f[14..14 + 548]);
        assert_eq!(ip.header().total_len() as usize, 576);
        // The checksum is right (etherparse verifies on a re-parse through `calc_checksum`).
        assert_eq!(icmp.icmp_type().calc_checksum(icmp.payload()), icmp.checksum());
    }

    #[test]
    fn no_error_about_an_error_or_a_later_fragment() {
        let mut f = udp4(1);
        f[20] = 0x00;
        f[21] = 0x10; // later fragment
        let m = parse(&f).unwrap();
        assert!(answer(&f, &m, IcmpError::TimeExceeded, "10.20.0.1".parse().unwrap(), [2; 6]).is_none());
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 20, 0, 10], [198, 19, 0, 2], 1)
            .icmpv4(Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit));
        let mut e = Vec::new();
        b.write(&mut e, &[0; 28]).unwrap();
        let m = parse(&e).unwrap();
        assert!(answer(&e, &m, IcmpError::TimeExceeded, "10.20.0.1".parse().unwrap(), [2; 6]).is_none());
    }

    #[test]
    fn packet_too_big_for_ipv6_carries_the_mtu() {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv6(a, [0xfd; 16], 64)
            .udp(1, 2);
        let mut f = Vec::new();
        b.write(&mut f, &[1; 1400]).unwrap();
        let m = parse(&f).unwrap();
        let r =
            answer(&f, &m, IcmpError::TooBig { mtu: 1400 }, "2001:db8::fe".parse().unwrap(), [4; 6]).unwrap();
        let rm = parse(&r).unwrap();
        assert_eq!(rm.vlan, Some(42));
        assert_eq!(rm.ip_len(), 1280);
        assert_eq!(rm.l4, L4::Icmp { kind: 2, code: 0, ident: 0 });
        assert_eq!(&r[rm.l4_off + 4..rm.l4_off + 8], &1400u32.to_be_bytes());
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let mut r = RateLimit::new(10, 2);
        assert!(r.allow(0) && r.allow(0));
        assert!(!r.allow(1_000));
        assert!(r.allow(100_000_000)); // 0.1 s: one token back
        assert!(!r.allow(100_000_001));
    }
}
