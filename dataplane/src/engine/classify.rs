//! Ordered policy rules per VRF: the first terminal rule that matches decides; `count` rules
//! only count and let matching go on; no match is the default, deny.
//!
//! Rules are scanned in order within the packet's VRF. That is linear in the rules of one VRF,
//! which is what a gateway's policy holds (tens); a compiled decision structure can replace the
//! scan behind the same interface if policies grow.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{Action, PortRange, Rule};

/// What classification needs to know about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub vrf: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP/UDP ports, if the packet carries them (not ICMP, not a later fragment).
    pub ports: Option<(u16, u16)>,
}

/// A prefix as a value/mask pair over 128 bits, so matching is two ANDs and a compare for
/// either family. IPv4 occupies the low 32 bits and is told apart by `v4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prefix {
    v4: bool,
    net: u128,
    mask: u128,
}

fn bits(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v) => (true, u32::from(v) as u128),
        IpAddr::V6(v) => (false, u128::from(v)),
    }
}

impl Prefix {
    fn new(n: IpNet) -> Prefix {
        let (v4, net) = bits(n.network());
        let (_, mask) = bits(n.netmask());
        Prefix { v4, net, mask }
    }

    #[inline]
    fn contains(&self, (v4, a): (bool, u128)) -> bool {
        self.v4 == v4 && a & self.mask == self.net
    }
}

/// A rule's match part, precompiled.
#[derive(Clone, Debug)]
struct Matcher {
    src: Option<Prefix>,
    dst: Option<Prefix>,
    proto: Option<u8>,
    src_ports: Option<PortRange>,
    dst_ports: Option<PortRange>,
    count_only: bool,
}

#[derive(Debug, Default)]
pub struct Classifier {
    pub rules: Vec<Rule>,
    matchers: Vec<Matcher>,
    by_vrf: Vec<Vec<usize>>,
}

impl Classifier {
    pub fn new(rules: &[Rule]) -> Classifier {
        let mut by_vrf: Vec<Vec<usize>> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let v = r.vrf as usize;
            if by_vrf.len() <= v {
                by_vrf.resize(v + 1, Vec::new());
            }
            by_vrf[v].push(i);
        }
        let matchers = rules
            .iter()
            .map(|r| Matcher {
                src: r.src.map(Prefix::new),
                dst: r.dst.map(Prefix::new),
                proto: r.proto,
                src_ports: r.src_ports,
                dst_ports: r.dst_ports,
                count_only: r.action == Action::Count,
            })
            .collect();
        Classifier { rules: rules.to_vec(), matchers, by_vrf }
    }

    #[inline]
    fn matches(r: &Matcher, src: (bool, u128), dst: (bool, u128), k: &FlowKey) -> bool {
        r.src.is_none_or(|n| n.contains(src))
            && r.dst.is_none_or(|n| n.contains(dst))
            && r.proto.is_none_or(|p| p == k.proto)
            && match (r.src_ports, r.dst_ports) {
                (None, None) => true,
                // A rule on ports cannot match a packet whose ports are unknown.
                _ => k.ports.is_some_and(|(s, d)| {
                    r.src_ports.is_none_or(|p| p.contains(s)) && r.dst_ports.is_none_or(|p| p.contains(d))
                }),
            }
    }

    /// The index of the deciding rule, if any; `counted` is called for every `count` rule passed.
    #[inline]
    pub fn classify(&self, k: &FlowKey, mut counted: impl FnMut(usize)) -> Option<usize> {
        let (src, dst) = (bits(k.src), bits(k.dst));
        for &i in self.by_vrf.get(k.vrf as usize)? {
            let r = &self.matchers[i];
            if Self::matches(r, src, dst, k) {
                if r.count_only {
                    counted(i);
                    continue;
                }
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        name: &str,
        vrf: u32,
        dst: Option<&str>,
        proto: Option<u8>,
        dports: Option<(u16, u16)>,
        action: Action,
    ) -> Rule {
        Rule {
            name: name.into(),
            vrf,
            src: None,
            dst: dst.map(|d| d.parse().unwrap()),
            proto,
            src_ports: None,
            dst_ports: dports.map(|(first, last)| PortRange { first, last }),
            action,
        }
    }

    fn key(vrf: u32, dst: &str, proto: u8, ports: Option<(u16, u16)>) -> FlowKey {
        FlowKey { vrf, src: "10.0.0.1".parse().unwrap(), dst: dst.parse().unwrap(), proto, ports }
    }

    #[test]
    fn first_match_wins_count_continues_default_denies() {
        let c = Classifier::new(&[
            rule("count-all", 1, None, None, None, Action::Count),
            rule("no-telnet", 1, None, Some(6), Some((23, 23)), Action::Deny),
            rule("web", 1, Some("198.51.100.0/24"), Some(6), Some((80, 443)), Action::Permit),
            rule("other-vrf", 2, None, None, None, Action::Permit),
        ]);
        let mut counted = Vec::new();
        assert_eq!(c.classify(&key(1, "198.51.100.7", 6, Some((999, 23))), |i| counted.push(i)), Some(1));
        assert_eq!(c.classify(&key(1, "198.51.100.7", 6, Some((999, 443))), |i| counted.push(i)), Some(2));
        assert_eq!(c.classify(&key(1, "198.51.100.7", 17, Some((999, 443))), |i| counted.push(i)), None);
        assert_eq!(c.classify(&key(1, "203.0.113.1", 6, Some((999, 80))), |i| counted.push(i)), None);
        // A later fragment has no ports: port rules cannot match it.
        assert_eq!(c.classify(&key(1, "198.51.100.7", 6, None), |i| counted.push(i)), None);
        assert_eq!(counted, vec![0; 5]);
        assert_eq!(c.classify(&key(2, "203.0.113.1", 1, None), |_| {}), Some(3));
        assert_eq!(c.classify(&key(7, "203.0.113.1", 1, None), |_| {}), None);
    }
}
