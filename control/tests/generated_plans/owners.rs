//! The owners check: what each gateway hands out at an outside address, and which claims
//! conflict (two owners of one address).

use super::*;

/// What a gateway hands out at an outside address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handed {
    Netmap,
    Nptv6,
    Pool,
    Service { proto: u8, port: u16 },
    Port,
}

impl Handed {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Handed::Netmap => "netmap outside",
            Handed::Nptv6 => "NPTv6 outside",
            Handed::Pool => "NAT pool",
            Handed::Service { .. } => "service",
            Handed::Port => "port address",
        }
    }
}

/// One gateway's claim on an inclusive range of outside addresses.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    pub(crate) gateway: &'a str,
    pub(crate) handed: Handed,
    pub(crate) v6: bool,
    pub(crate) first: u128,
    pub(crate) last: u128,
    pub(crate) what: String,
}

/// The outside addresses every config hands out in the extranet (VRF 0, and the VRF named
/// `internet-access`, both real plan addresses): netmap and NPTv6 outside prefixes, NAT pool
/// addresses, published services (address, protocol, port) and the own addresses of extranet
/// and internet-access ports; and every pair of them that breaks the one-owner rule, described.
///
/// The rule: two different gateways never hand out overlapping addresses (a service's address
/// not at all, whatever its port). Within one gateway, services may share an address with other
/// services but not address, protocol and port; netmap outsides and pools never overlap one
/// another; a service address never lies inside a netmap outside or a pool; a port's own address
/// never lies inside a netmap outside, a pool, or a service address. Ports' own addresses are
/// hosts: two gateways on one link subnet are fine, on one address are not.
///
/// Claims are sorted by first address and swept once, so the cost is the number of claims times
/// the number open at once.
pub(crate) fn outside_address_conflicts<'a>(configs: impl IntoIterator<Item = &'a Config>) -> Vec<String> {
    let mut claims = Vec::new();
    for c in configs {
        collect_claims(c, &mut claims);
    }
    conflicting_claims(&mut claims).iter().map(|(a, b)| format!("{} overlaps {}", a.what, b.what)).collect()
}

/// The pairs of `claims` that overlap and may not (sorts `claims`).
pub(crate) fn conflicting_claims<'c, 'a>(claims: &'c mut [Claim<'a>]) -> Vec<(&'c Claim<'a>, &'c Claim<'a>)> {
    claims.sort_by_key(|c| (c.v6, c.first, Reverse(c.last)));
    let claims = &*claims;
    let mut open: Vec<usize> = Vec::new();
    let mut conflicts = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        open.retain(|&j| claims[j].v6 == c.v6 && claims[j].last >= c.first);
        for &j in &open {
            if !may_share(&claims[j], c) {
                conflicts.push((&claims[j], c));
            }
        }
        open.push(i);
    }
    conflicts
}

/// Whether two overlapping claims are allowed to overlap.
pub(crate) fn may_share(a: &Claim, b: &Claim) -> bool {
    if a.gateway != b.gateway {
        return false;
    }
    match (a.handed, b.handed) {
        (Handed::Port, Handed::Port) => true,
        (Handed::Service { proto: p, port: q }, Handed::Service { proto: r, port: s }) => (p, q) != (r, s),
        _ => false,
    }
}

pub(crate) fn span(net: IpNet) -> (bool, u128, u128) {
    match net {
        IpNet::V4(n) => (false, u32::from(n.network()).into(), u32::from(n.broadcast()).into()),
        IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

pub(crate) fn collect_claims<'a>(c: &'a Config, out: &mut Vec<Claim<'a>>) {
    let gw = c.gateway.as_str();
    let outside: Vec<u32> = c
        .vrfs
        .iter()
        .filter(|v| v.id == EXTRANET_VRF || v.name == control::model::INTERNET_ACCESS)
        .map(|v| v.id)
        .chain([EXTRANET_VRF])
        .collect();
    let mut claim = |net: IpNet, handed: Handed, what: String| {
        let (v6, first, last) = span(net);
        out.push(Claim { gateway: gw, handed, v6, first, last, what: format!("{what} of {gw}") });
    };
    for n in c.netmaps.iter().filter(|n| outside.contains(&n.outside_vrf)) {
        claim(IpNet::V4(n.outside), Handed::Netmap, format!("netmap outside {}", n.outside));
    }
    for n in c.nptv6.iter().filter(|n| outside.contains(&n.outside_vrf)) {
        claim(IpNet::V6(n.outside), Handed::Nptv6, format!("NPTv6 outside {}", n.outside));
    }
    for p in c.nat_pools.iter().filter(|p| outside.contains(&p.outside_vrf)) {
        for a in &p.addresses {
            claim(IpNet::V4(*a), Handed::Pool, format!("NAT pool {} address {a}", p.name));
        }
    }
    for s in c.services.iter().filter(|s| outside.contains(&s.outside_vrf)) {
        let handed = Handed::Service { proto: s.proto, port: s.outside_port };
        let what = format!("service {} at {}:{} (protocol {})", s.name, s.outside, s.outside_port, s.proto);
        claim(IpNet::V4(Ipv4Net::from(s.outside)), handed, what);
    }
    for p in c.ports.iter().filter(|p| matches!(p.role, Role::Extranet | Role::InternetAccess)) {
        for a in &p.addresses {
            let host = IpNet::new(a.addr(), a.max_prefix_len()).expect("a host prefix");
            claim(host, Handed::Port, format!("{} port {} address {}", p.role.name(), p.key(), a.addr()));
        }
    }
}
