//! [`Config::validate`]: every problem of a config, each with its path, checked again on every
//! load (a config file can be edited by hand). The checks are split by what they look at.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::*;

/// Ports by key, looked up once per route, rule and tunnel: indexed, so that a gateway with
/// tens of thousands of ports and routes is checked in linear time.
type PortsByKey<'a> = HashMap<String, &'a PortConfig>;

impl Config {
    /// Checks internal consistency: references resolve, VRFs exist, translations are 1:1, no
    /// route or rule crosses VRFs except through a translation.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |path: String, message: String| errors.push(ConfigError { path, message });
        self.check_names(&mut err);
        let vrf_ids: BTreeSet<u32> = self.vrfs.iter().map(|v| v.id).collect();
        if vrf_ids.len() != self.vrfs.len() {
            err("vrfs".into(), "VRF ids must be unique".into());
        }
        if let Some(big) = vrf_ids.iter().find(|v| **v >= MAX_VRFS) {
            err("vrfs".into(), format!("VRF id {big} is not below {MAX_VRFS}"));
        }
        if self.ports.is_empty() {
            err("ports".into(), "a gateway needs at least one port".into());
        }
        let by_key: PortsByKey = self.ports.iter().rev().map(|p| (p.key(), p)).collect();
        self.check_ports(&vrf_ids, &mut err);
        self.check_translations(&vrf_ids, &mut err);
        self.check_routes(&by_key, &mut err);
        self.check_rules(&vrf_ids, &by_key, &mut err);
        nat::validate(self, &vrf_ids, &mut err);
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Names end up in the counters file (`rule.<name> value` lines), in `/metrics` labels and
    /// in logs: one character set, with nothing that could end a line, a field or a quoted
    /// label there.
    fn check_names(&self, err: &mut impl FnMut(String, String)) {
        let names = std::iter::once(("gateway".to_string(), "gateway", &self.gateway))
            .chain(self.vrfs.iter().enumerate().map(|(i, v)| (format!("vrfs[{i}]"), "VRF", &v.name)))
            .chain(self.policies.iter().enumerate().map(|(i, r)| (format!("policies[{i}]"), "rule", &r.name)))
            .chain(
                self.nat_pools.iter().enumerate().map(|(i, p)| (format!("nat_pools[{i}]"), "pool", &p.name)),
            )
            .chain(
                self.services.iter().enumerate().map(|(i, s)| (format!("services[{i}]"), "service", &s.name)),
            );
        for (path, what, name) in names {
            if let Some(why) = name_problem(name) {
                err(path, format!("{what} name {name:?} {why}; {NAME_RULE}"));
            }
        }
    }

    /// Each port: unique, a valid interface name, VLAN and MTU, a declared VRF that fits its
    /// role, and a tunnel port's endpoints.
    fn check_ports(&self, vrf_ids: &BTreeSet<u32>, err: &mut impl FnMut(String, String)) {
        let owned: BTreeSet<(u32, IpAddr)> =
            self.ports.iter().flat_map(|q| q.addresses.iter().map(move |a| (q.vrf, a.addr()))).collect();
        let mut keys = BTreeSet::new();
        // GRE packets find their tunnel port by (underlay VRF, local, remote): two tunnels with
        // the same ends would share one port's traffic.
        let mut tunnel_ends = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let path = format!("ports[{i}]");
            if !keys.insert(p.key()) {
                err(path.clone(), format!("port {:?} appears twice", p.key()));
            }
            if p.name.is_empty() || p.name.len() > 15 {
                err(path.clone(), format!("interface name {:?} must be 1-15 bytes", p.name));
            }
            if p.vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
                err(path.clone(), format!("VLAN {} is outside 1-4094", p.vlan.unwrap_or(0)));
            }
            if p.mtu < 576 {
                err(path.clone(), format!("MTU {} is below 576", p.mtu));
            }
            if !vrf_ids.contains(&p.vrf) {
                err(path.clone(), format!("VRF {} is not declared in vrfs", p.vrf));
            }
            if p.role == Role::Extranet && p.vrf != EXTRANET_VRF {
                err(path.clone(), format!("an extranet port must be in VRF {EXTRANET_VRF}"));
            }
            if matches!(p.role, Role::Legacy | Role::InternetAccess) && p.vrf == EXTRANET_VRF {
                err(path.clone(), "a legacy port needs its legacy network's VRF, not the extranet's".into());
            }
            match (&p.tunnel, p.role) {
                (Some(t), Role::Tunnel) => {
                    if !tunnel_ends.insert((t.underlay_vrf, t.local, t.remote)) {
                        err(
                            path.clone(),
                            format!(
                                "a second tunnel from {} to {} in VRF {}: GRE packets could not tell them apart",
                                t.local, t.remote, t.underlay_vrf
                            ),
                        );
                    }
                    if p.vlan.is_some() {
                        err(path.clone(), "a tunnel port has no VLAN".into());
                    }
                    if !owned.contains(&(t.underlay_vrf, IpAddr::V4(t.local))) {
                        err(
                            path,
                            format!(
                                "tunnel source {} is not an address of this gateway in VRF {}",
                                t.local, t.underlay_vrf
                            ),
                        );
                    }
                }
                (None, Role::Tunnel) => err(path, "a tunnel port needs its tunnel endpoints".into()),
                (Some(_), _) => err(path, "only a port with role tunnel has tunnel endpoints".into()),
                (None, _) => {}
            }
        }
    }

    /// Netmaps and NPTv6: equal prefix sizes, no host bits, from one declared VRF to another.
    fn check_translations(&self, vrf_ids: &BTreeSet<u32>, err: &mut impl FnMut(String, String)) {
        let translations =
            self.netmaps
                .iter()
                .map(|n| (IpNet::V4(n.inside), n.inside_vrf, IpNet::V4(n.outside), n.outside_vrf, "netmaps"))
                .chain(self.nptv6.iter().map(|n| {
                    (IpNet::V6(n.inside), n.inside_vrf, IpNet::V6(n.outside), n.outside_vrf, "nptv6")
                }));
        let mut counts = BTreeMap::<&str, usize>::new();
        for (inside, inside_vrf, outside, outside_vrf, table) in translations {
            let i = counts.entry(table).or_default();
            let path = format!("{table}[{i}]");
            *i += 1;
            if inside.prefix_len() != outside.prefix_len() {
                err(path.clone(), format!("{inside} -> {outside} maps prefixes of different sizes"));
            }
            if inside != inside.trunc() || outside != outside.trunc() {
                err(path.clone(), "translation prefixes must have no host bits set".into());
            }
            if table == "nptv6" && inside.prefix_len() > 48 {
                err(
                    path.clone(),
                    "NPTv6 prefixes longer than /48 are not supported (RFC 6296 section 3.7)".into(),
                );
            }
            for vrf in [inside_vrf, outside_vrf] {
                if !vrf_ids.contains(&vrf) {
                    err(path.clone(), format!("VRF {vrf} is not declared in vrfs"));
                }
            }
            if inside_vrf == outside_vrf {
                err(path, "a translation must cross from one VRF to another".into());
            }
        }
    }

    fn check_routes(&self, by_key: &PortsByKey, err: &mut impl FnMut(String, String)) {
        for (i, r) in self.routes.iter().enumerate() {
            let path = format!("routes[{i}]");
            if r.prefix != r.prefix.trunc() {
                err(path.clone(), format!("route prefix {} has host bits set", r.prefix));
            }
            if r.via.is_some_and(|v| v.is_ipv4() != matches!(r.prefix, IpNet::V4(_))) {
                err(path.clone(), "next hop and prefix are of different address families".into());
            }
            check_port_in_vrf(by_key, &path, &r.port, r.vrf, err);
        }
    }

    /// Policy rules: unique names, a declared VRF, one address family, port ranges only for
    /// TCP and UDP, and a route-via's port in the rule's VRF.
    fn check_rules(
        &self,
        vrf_ids: &BTreeSet<u32>,
        by_key: &PortsByKey,
        err: &mut impl FnMut(String, String),
    ) {
        let mut rule_names = BTreeSet::new();
        for (i, r) in self.policies.iter().enumerate() {
            let path = format!("policies[{i}]");
            if r.name.is_empty() || !rule_names.insert(r.name.as_str()) {
                err(path.clone(), format!("rule name {:?} must be non-empty and unique", r.name));
            }
            if !vrf_ids.contains(&r.vrf) {
                err(path.clone(), format!("VRF {} is not declared in vrfs", r.vrf));
            }
            if let (Some(s), Some(d)) = (r.src, r.dst) {
                if matches!(s, IpNet::V4(_)) != matches!(d, IpNet::V4(_)) {
                    err(path.clone(), "src and dst are of different address families".into());
                }
            }
            if (r.src_ports.is_some() || r.dst_ports.is_some()) && !matches!(r.proto, Some(6) | Some(17)) {
                err(path.clone(), "port ranges need proto 6 (TCP) or 17 (UDP)".into());
            }
            for range in [r.src_ports, r.dst_ports].into_iter().flatten() {
                if range.first > range.last {
                    err(path.clone(), format!("port range {}-{} is empty", range.first, range.last));
                }
            }
            if let Action::RouteVia { port, .. } = &r.action {
                check_port_in_vrf(by_key, &path, port, r.vrf, err);
            }
        }
    }
}

/// A route or route-via must leave through an existing port of its own VRF: crossing VRFs
/// untranslated would leak one legacy network into another.
fn check_port_in_vrf(
    ports: &PortsByKey,
    path: &str,
    key: &str,
    vrf: u32,
    err: &mut impl FnMut(String, String),
) {
    match ports.get(key) {
        None => err(path.to_string(), format!("port {key:?} does not exist")),
        Some(p) if p.vrf != vrf => {
            err(path.to_string(), format!("VRF {vrf} leaves through port {key:?} of VRF {}", p.vrf))
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::{demo, port, rule};

    #[test]
    fn names_that_would_forge_a_counter_or_label_line_are_refused() {
        for bad in ["a\nrule.x 999", "x\"} 1\nfake{a=\"", "with space", "", &"x".repeat(129)] {
            let mut c = demo();
            c.policies[0].name = bad.into();
            let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
            assert!(
                text.iter().any(|e| e.contains("rule name") && e.contains(NAME_RULE)),
                "{bad:?}: {text:#?}"
            );
        }
        let mut c = demo();
        c.vrfs[1].name = "city\nhall".into();
        assert!(c.validate().is_err());
        let mut c = demo();
        c.policies[0].name = "430100:city-hall:netmap0/out@v2+x".into();
        c.validate().unwrap();
    }

    /// What the probes sent: well-typed, but more than any machine should be asked for.
    #[test]
    fn pools_beyond_any_machine_are_refused() {
        let with_pool = |max_sessions: u32, addresses: &str| {
            let mut c = demo();
            c.nat_pools = vec![NatPool {
                max_sessions,
                ..NatPool::defaults("p".into(), 1, 0, vec![addresses.parse().unwrap()])
            }];
            c.validate().map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))
        };
        let e = with_pool(u32::MAX, "198.18.30.0/24").unwrap_err();
        assert!(e.contains("max_sessions 4294967295 must be 1-16777216"), "{e}");
        let e = with_pool(1000, "100.64.0.0/10").unwrap_err();
        assert!(e.contains("4194304 outside addresses; at most 65536"), "{e}");
        with_pool(bounds::MAX_POOL_SESSIONS, "198.18.0.0/16").unwrap();
    }

    #[test]
    fn tunnel_ports_need_their_own_local_address() {
        let mut c = demo();
        let mut t = port("gre0", Role::Tunnel, 1, "10.99.0.1/30");
        t.tunnel = Some(GreTunnel {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            underlay_vrf: 0,
            key: None,
        });
        c.ports.push(t);
        let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|e| e.contains("tunnel source 192.0.2.1 is not an address of this gateway")),
            "{text:#?}"
        );
        c.ports[2].tunnel.as_mut().unwrap().local = "198.19.0.1".parse().unwrap();
        c.validate().unwrap();
        let mut twin = c.ports[2].clone();
        twin.name = "gre1".into();
        c.ports.push(twin);
        let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(text.iter().any(|e| e.contains("a second tunnel from 198.19.0.1 to 192.0.2.2")), "{text:#?}");
        c.ports.pop();
        c.ports[2].tunnel = None;
        assert!(c.validate().is_err(), "a tunnel port without endpoints");
    }

    #[test]
    fn policy_problems_are_reported() {
        let mut c = demo();
        c.policies.push(rule("lan-out", 9, Some("10.0.0.0/8"), Some("2001:db8::/32"), Action::Permit));
        let mut ports = rule("ports", 1, None, None, Action::RouteVia { port: "uplink0".into(), via: None });
        ports.dst_ports = Some(PortRange { first: 90, last: 80 });
        c.policies.push(ports);
        let text: Vec<String> = c.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
        for want in [
            "unique",
            "VRF 9 is not declared",
            "different address families",
            "need proto",
            "is empty",
            "VRF 1 leaves through port \"uplink0\" of VRF 0",
        ] {
            assert!(text.iter().any(|e| e.contains(want)), "missing {want:?} in {text:#?}");
        }
    }

    #[test]
    fn demo_is_valid_and_round_trips_through_json() {
        let c = demo();
        c.validate().unwrap();
        assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn every_problem_is_reported() {
        let mut c = demo();
        c.netmaps[0].outside = "198.18.0.0/16".parse().unwrap();
        c.routes[0].port = "nope".into();
        c.ports[1].vrf = 7;
        let errors = c.validate().unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(text.iter().any(|e| e.starts_with("netmaps[0]") && e.contains("different sizes")));
        assert!(text.iter().any(|e| e.starts_with("routes[0]") && e.contains("\"nope\"")));
        assert!(text.iter().any(|e| e.starts_with("ports[1]") && e.contains("VRF 7")));
        assert!(text.iter().any(|e| e.starts_with("ports[1]") && e.contains("extranet port")));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = demo().to_json().replacen("\"gateway\"", "\"gatewya\": 1, \"gateway\"", 1);
        let errors = Config::from_json(&text).unwrap_err();
        assert!(errors[0].message.contains("unknown field `gatewya`"), "{errors:?}");
    }
}
