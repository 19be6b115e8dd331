//! A [`Config`] compiled into the lookup structures the pipeline uses. Built off the packet
//! path, then published whole (see [`super::Engine::swap`]): a batch sees one `Compiled` from
//! start to end.

use std::{net::IpAddr, sync::Arc};

use ipnet::{Ipv4Net, Ipv6Net};
use rustc_hash::FxHashMap;

use super::classify::Classifier;
use crate::{
    config::{Config, GreTunnel, MAX_VRFS},
    fib::{Fib, Lpm4},
};

/// A port at run time.
#[derive(Clone, Debug)]
pub struct PortRt {
    /// Index of its interface in [`Compiled::ifaces`] (a tunnel port has none: see `tunnel`).
    pub iface: usize,
    /// A GRE tunnel port's endpoints.
    pub tunnel: Option<GreTunnel>,
    pub vlan: Option<u16>,
    pub vrf: u32,
    pub mtu: u16,
}

/// The ports on one interface.
#[derive(Debug, Default)]
struct IfacePorts {
    untagged: Option<usize>,
    vlans: FxHashMap<u16, usize>,
}

/// Netmap or NPTv6 lookups of one VRF: which table entry covers an address.
#[derive(Debug, Default)]
pub struct NatIndex {
    /// IPv4 prefix → index into `Config::netmaps`.
    pub v4: Option<Lpm4>,
    /// IPv6 prefixes with their index into `Config::nptv6`, longest first (few per gateway;
    /// scanned).
    pub v6: Vec<(Ipv6Net, usize)>,
}

#[derive(Debug)]
pub struct Compiled {
    pub config: Config,
    /// Shared with the config before when its ports, routes and VRFs are the same (see
    /// [`Compiled::after`]).
    pub fib: Arc<Fib>,
    pub rules: Classifier,
    /// Distinct interface names, in config order; packets arrive on one of these.
    pub ifaces: Vec<String>,
    pub ports: Vec<PortRt>,
    /// Per interface: its untagged port and its VLAN ports.
    port_of: Vec<IfacePorts>,
    /// The gateway's own addresses, per VRF (a handful each, so scanned).
    local: Vec<Vec<IpAddr>>,
    /// Tunnel ports by (underlay VRF, local, remote).
    tunnels: FxHashMap<(u32, u32, u32), usize>,
    /// Per VRF: translations whose inside is in that VRF (source side) ...
    pub nat_inside: Arc<Vec<NatIndex>>,
    /// ... and whose outside is (destination side). Both shared with the config before when
    /// its translations and VRFs are the same.
    pub nat_outside: Arc<Vec<NatIndex>>,
    /// Per VRF: the outside addresses of the NAT pools and published services there. The
    /// host stack answers echo for them (and ARP, on a port's own subnets).
    nat_addresses: Vec<Vec<Ipv4Net>>,
}

/// The netmap and NPTv6 indexes of `config`, per VRF: by inside and by outside prefix.
fn nat_indexes(config: &Config, vrfs: usize) -> (Arc<Vec<NatIndex>>, Arc<Vec<NatIndex>>) {
    let mut inside_v4: Vec<Vec<_>> = vec![Vec::new(); vrfs];
    let mut outside_v4: Vec<Vec<_>> = vec![Vec::new(); vrfs];
    let mut nat_inside: Vec<NatIndex> = (0..vrfs).map(|_| NatIndex::default()).collect();
    let mut nat_outside: Vec<NatIndex> = (0..vrfs).map(|_| NatIndex::default()).collect();
    for (i, n) in config.netmaps.iter().enumerate() {
        if let (Some(a), Some(b)) =
            (inside_v4.get_mut(n.inside_vrf as usize), outside_v4.get_mut(n.outside_vrf as usize))
        {
            a.push((n.inside, i as u32));
            b.push((n.outside, i as u32));
        }
    }
    for (v, routes) in inside_v4.into_iter().enumerate() {
        if !routes.is_empty() {
            nat_inside[v].v4 = Some(Lpm4::build(routes));
        }
    }
    for (v, routes) in outside_v4.into_iter().enumerate() {
        if !routes.is_empty() {
            nat_outside[v].v4 = Some(Lpm4::build(routes));
        }
    }
    for (i, n) in config.nptv6.iter().enumerate() {
        if let Some(x) = nat_inside.get_mut(n.inside_vrf as usize) {
            x.v6.push((n.inside, i));
        }
        if let Some(x) = nat_outside.get_mut(n.outside_vrf as usize) {
            x.v6.push((n.outside, i));
        }
    }
    // Longest prefix first, as the netmaps' LPM (and the program's tries) find them; of
    // equal prefixes the first in the config.
    for x in nat_inside.iter_mut().chain(nat_outside.iter_mut()) {
        x.v6.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
    }
    (Arc::new(nat_inside), Arc::new(nat_outside))
}

impl Compiled {
    /// Compiles a config; it must have passed [`Config::validate`].
    pub fn new(config: Config) -> Compiled {
        Compiled::build(config, None)
    }

    /// Compiles a config that replaces `before`'s, sharing the tables whose inputs did not
    /// change: the FIB (ports, routes, VRFs) and the netmap indexes (netmaps, NPTv6, VRFs).
    /// Their longest-prefix tables hold 256 KiB each per VRF, so a change of policies alone,
    /// the most common one, would otherwise allocate, zero and fill megabytes to get the same
    /// tables again.
    pub fn after(config: Config, before: &Compiled) -> Compiled {
        Compiled::build(config, Some(before))
    }

    fn build(config: Config, before: Option<&Compiled>) -> Compiled {
        let mut ifaces: Vec<String> = Vec::new();
        let vrfs = config.vrfs.iter().map(|v| v.id + 1).max().unwrap_or(1).min(MAX_VRFS) as usize;
        let mut ports = Vec::new();
        let mut port_of: Vec<IfacePorts> = Vec::new();
        let mut local: Vec<Vec<IpAddr>> = vec![Vec::new(); vrfs];
        let mut tunnels = FxHashMap::default();
        for (i, p) in config.ports.iter().enumerate() {
            if let Some(tun) = &p.tunnel {
                tunnels.insert((tun.underlay_vrf, u32::from(tun.local), u32::from(tun.remote)), i);
                ports.push(PortRt {
                    iface: usize::MAX,
                    tunnel: Some(tun.clone()),
                    vlan: None,
                    vrf: p.vrf,
                    mtu: p.mtu,
                });
                if let Some(l) = local.get_mut(p.vrf as usize) {
                    l.extend(p.addresses.iter().map(|a| a.addr()));
                }
                continue;
            }
            let iface = match ifaces.iter().position(|n| *n == p.name) {
                Some(k) => k,
                None => {
                    ifaces.push(p.name.clone());
                    ifaces.len() - 1
                }
            };
            if port_of.len() <= iface {
                port_of.resize_with(iface + 1, IfacePorts::default);
            }
            match p.vlan {
                Some(v) => {
                    port_of[iface].vlans.insert(v, i);
                }
                None => port_of[iface].untagged = Some(i),
            }
            ports.push(PortRt { iface, tunnel: None, vlan: p.vlan, vrf: p.vrf, mtu: p.mtu });
            if let Some(l) = local.get_mut(p.vrf as usize) {
                l.extend(p.addresses.iter().map(|a| a.addr()));
            }
        }
        let (nat_inside, nat_outside) = match before {
            Some(b)
                if b.config.vrfs == config.vrfs
                    && b.config.netmaps == config.netmaps
                    && b.config.nptv6 == config.nptv6 =>
            {
                (b.nat_inside.clone(), b.nat_outside.clone())
            }
            _ => nat_indexes(&config, vrfs),
        };
        let fib = match before {
            Some(b)
                if b.config.vrfs == config.vrfs
                    && b.config.ports == config.ports
                    && b.config.routes == config.routes =>
            {
                b.fib.clone()
            }
            _ => Arc::new(Fib::build(&config)),
        };
        let mut nat_addresses: Vec<Vec<Ipv4Net>> = vec![Vec::new(); vrfs];
        for p in &config.nat_pools {
            if let Some(a) = nat_addresses.get_mut(p.outside_vrf as usize) {
                a.extend(&p.addresses);
            }
        }
        for s in &config.services {
            if let Some(a) = nat_addresses.get_mut(s.outside_vrf as usize) {
                a.push(Ipv4Net::from(s.outside));
            }
        }
        Compiled {
            fib,
            rules: Classifier::new(&config.policies),
            ifaces,
            ports,
            port_of,
            local,
            tunnels,
            nat_inside,
            nat_outside,
            nat_addresses,
            config,
        }
    }

    /// The port a frame belongs to: its interface and VLAN tag.
    #[inline]
    pub fn port(&self, iface: usize, vlan: Option<u16>) -> Option<usize> {
        let ports = self.port_of.get(iface)?;
        match vlan {
            None => ports.untagged,
            Some(v) => ports.vlans.get(&v).copied(),
        }
    }

    /// Whether `addr` is one of the gateway's own addresses in `vrf`.
    #[inline]
    pub fn is_local(&self, vrf: u32, addr: IpAddr) -> bool {
        self.local.get(vrf as usize).is_some_and(|l| l.contains(&addr))
    }

    /// Whether `addr` is the outside address of a NAT pool or published service in `vrf`.
    #[inline]
    pub fn is_nat_address(&self, vrf: u32, addr: IpAddr) -> bool {
        let IpAddr::V4(a) = addr else { return false };
        self.nat_addresses.get(vrf as usize).is_some_and(|n| n.iter().any(|n| n.contains(&a)))
    }

    /// The tunnel port whose GRE packets arrive in `vrf` from `remote` to `local`.
    #[inline]
    pub fn tunnel(&self, vrf: u32, local: u32, remote: u32) -> Option<usize> {
        if self.tunnels.is_empty() {
            return None;
        }
        self.tunnels.get(&(vrf, local, remote)).copied()
    }

    /// Index of the interface called `name`.
    pub fn iface(&self, name: &str) -> Option<usize> {
        self.ifaces.iter().position(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, sync::Arc};

    use super::Compiled;
    use crate::config::{RouteConfig, examples::demo};

    #[test]
    fn a_new_config_shares_only_the_tables_whose_inputs_are_unchanged() {
        let first = Compiled::new(demo());
        // Policies alone: the FIB and the netmap indexes are the same tables.
        let mut policies = demo();
        policies.policies.pop();
        let second = Compiled::after(policies, &first);
        assert!(Arc::ptr_eq(&first.fib, &second.fib));
        assert!(Arc::ptr_eq(&first.nat_inside, &second.nat_inside));
        assert!(Arc::ptr_eq(&first.nat_outside, &second.nat_outside));
        // A route: a new FIB that has it, the same netmap indexes.
        let mut routed = demo();
        routed.routes.push(RouteConfig {
            vrf: 1,
            prefix: "10.30.0.0/16".parse().unwrap(),
            port: "legacy0".into(),
            via: Some("10.20.0.9".parse().unwrap()),
        });
        let third = Compiled::after(routed, &second);
        assert!(!Arc::ptr_eq(&second.fib, &third.fib));
        assert!(Arc::ptr_eq(&second.nat_inside, &third.nat_inside));
        let hop = third.fib.lookup(1, Ipv4Addr::new(10, 30, 1, 1).into(), 0).unwrap();
        assert_eq!(hop.via, Some("10.20.0.9".parse().unwrap()));
        assert!(second.fib.lookup(1, Ipv4Addr::new(10, 30, 1, 1).into(), 0).is_none());
        // A netmap moved: new indexes that translate to the new block.
        let mut moved = demo();
        moved.netmaps[0].outside = "198.18.30.0/24".parse().unwrap();
        let fourth = Compiled::after(moved, &third);
        assert!(!Arc::ptr_eq(&third.nat_outside, &fourth.nat_outside));
        let lookup =
            |c: &Compiled, a: Ipv4Addr| c.nat_outside[0].v4.as_ref().and_then(|l| l.lookup(u32::from(a)));
        assert_eq!(lookup(&fourth, Ipv4Addr::new(198, 18, 30, 5)), Some(0));
        assert_eq!(lookup(&fourth, Ipv4Addr::new(198, 18, 20, 5)), None);
    }
}
