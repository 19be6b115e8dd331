//! The stateful translations of a config: NAPT pools (dynamic port blocks, or deterministic per
//! RFC 7422) and published services (destination NAT).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::PortRange;

/// Outbound NAPT from an inside VRF onto outside addresses, port blocks per inside host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatPool {
    pub name: String,
    pub inside_vrf: u32,
    pub outside_vrf: u32,
    /// The outside addresses (plan addresses of the extranet).
    pub addresses: Vec<Ipv4Net>,
    #[serde(default)]
    pub mode: PoolMode,
    /// Outside ports handed out, on every address.
    #[serde(default = "default_ports")]
    pub ports: PortRange,
    /// Ports per block; an inside host's ports come from its blocks only.
    #[serde(default = "default_block")]
    pub block_size: u16,
    /// Blocks one inside host may hold at once (dynamic mode).
    #[serde(default = "default_blocks_per_host")]
    pub max_blocks_per_host: u16,
    #[serde(default)]
    pub filtering: Filtering,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Bound on this pool's sessions per worker; beyond it new flows are dropped and counted.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u32,
}

impl NatPool {
    /// A dynamic pool with every default: ports 1024-65535, blocks of 256, 4 per host,
    /// address-and-port-dependent filtering, RFC timeouts, 1Mi sessions.
    pub fn defaults(name: String, inside_vrf: u32, outside_vrf: u32, addresses: Vec<Ipv4Net>) -> NatPool {
        NatPool {
            name,
            inside_vrf,
            outside_vrf,
            addresses,
            mode: PoolMode::Dynamic,
            ports: default_ports(),
            block_size: default_block(),
            max_blocks_per_host: default_blocks_per_host(),
            filtering: Filtering::default(),
            timeouts: Timeouts::default(),
            max_sessions: default_max_sessions(),
        }
    }
}

fn default_ports() -> PortRange {
    PortRange { first: 1024, last: 65535 }
}

fn default_block() -> u16 {
    256
}

fn default_blocks_per_host() -> u16 {
    4
}

fn default_max_sessions() -> u32 {
    1 << 20
}

/// How an inside host gets its port block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// Blocks from a free list, on demand (logged allocations answer "who had this port").
    #[default]
    Dynamic,
    /// RFC 7422: host number `i` of `inside` gets block `i`, a pure function both ways (see
    /// `nat::det44`), so no per-session log is needed to answer "who had this port".
    Deterministic { inside: Ipv4Net },
}

/// RFC 4787 filtering: who may send to a mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filtering {
    /// Anyone (REQ-8's transparent choice).
    EndpointIndependent,
    /// Only an address and port the inside host has sent to (the boundary's safe default).
    #[default]
    AddressAndPortDependent,
}

/// Idle timeouts in seconds. Defaults meet the RFC minimums: UDP 5 min (RFC 4787 REQ-5 allows
/// no less than 2), TCP established 2 h 4 min and transitory 4 min (RFC 5382 REQ-5), ICMP query
/// 60 s (RFC 5508 REQ-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub udp: u32,
    pub tcp_established: u32,
    pub tcp_transitory: u32,
    pub icmp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { udp: 300, tcp_established: 7440, tcp_transitory: 240, icmp: 60 }
    }
}

impl Timeouts {
    /// The RFC minimums, below which a config is refused.
    pub const MIN: Timeouts = Timeouts { udp: 120, tcp_established: 7440, tcp_transitory: 240, icmp: 60 };
}

/// A legacy service published at a plan address and port (destination NAT), reached through
/// rules whose action is `dnat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub outside_vrf: u32,
    pub outside: Ipv4Addr,
    pub outside_port: u16,
    pub inside_vrf: u32,
    pub inside: Ipv4Addr,
    pub inside_port: u16,
}

/// Checks pools and services, and the `napt`/`dnat` rules that use them.
pub(super) fn validate(
    c: &super::Config,
    vrf_ids: &std::collections::BTreeSet<u32>,
    err: &mut impl FnMut(String, String),
) {
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in c.nat_pools.iter().enumerate() {
        let path = format!("nat_pools[{i}]");
        if p.name.is_empty() || !names.insert(p.name.as_str()) {
            err(path.clone(), format!("pool name {:?} must be non-empty and unique", p.name));
        }
        for vrf in [p.inside_vrf, p.outside_vrf] {
            if !vrf_ids.contains(&vrf) {
                err(path.clone(), format!("VRF {vrf} is not declared in vrfs"));
            }
        }
        if p.inside_vrf == p.outside_vrf {
            err(path.clone(), "a pool must translate from one VRF to another".into());
        }
        if p.addresses.is_empty() {
            err(path.clone(), "a pool needs outside addresses".into());
        }
        if p.addresses.iter().any(|a| *a != a.trunc()) {
            err(path.clone(), "pool prefixes must have no host bits set".into());
        }
        if p.ports.first == 0 || p.ports.first > p.ports.last {
            err(
                path.clone(),
                format!("port range {}-{} must be non-empty and exclude 0", p.ports.first, p.ports.last),
            );
        }
        let span = p.ports.last as u32 - p.ports.first as u32 + 1;
        if p.block_size == 0 || p.block_size as u32 > span {
            err(path.clone(), format!("block size {} must be 1-{span}", p.block_size));
        }
        if p.max_blocks_per_host == 0 {
            err(path.clone(), "max_blocks_per_host must be at least 1".into());
        }
        if p.max_sessions == 0 || p.max_sessions > super::bounds::MAX_POOL_SESSIONS {
            err(
                path.clone(),
                format!(
                    "max_sessions {} must be 1-{} (sessions per worker; memory is taken for them up front)",
                    p.max_sessions,
                    super::bounds::MAX_POOL_SESSIONS
                ),
            );
        }
        if super::bounds::addresses(p) > super::bounds::MAX_POOL_ADDRESSES {
            err(
                path.clone(),
                format!(
                    "the pool has {} outside addresses; at most {} (a /16), since every address's port blocks are listed",
                    super::bounds::addresses(p),
                    super::bounds::MAX_POOL_ADDRESSES
                ),
            );
        }
        let t = p.timeouts;
        let m = Timeouts::MIN;
        if t.udp < m.udp
            || t.tcp_established < m.tcp_established
            || t.tcp_transitory < m.tcp_transitory
            || t.icmp < m.icmp
        {
            err(path.clone(), format!("timeouts {t:?} are below the RFC minimums {m:?}"));
        }
        if let PoolMode::Deterministic { inside } = &p.mode {
            let hosts = 1u64 << (32 - inside.prefix_len());
            let addrs: u64 = p.addresses.iter().map(|a| 1u64 << (32 - a.prefix_len())).sum();
            let per_addr = (span / p.block_size.max(1) as u32) as u64;
            if hosts > addrs * per_addr {
                err(
                    path.clone(),
                    format!(
                        "{inside} has {hosts} hosts but the pool holds {} blocks of {}",
                        addrs * per_addr,
                        p.block_size
                    ),
                );
            }
        }
    }
    let mut snames = std::collections::BTreeSet::new();
    for (i, s) in c.services.iter().enumerate() {
        let path = format!("services[{i}]");
        if s.name.is_empty() || !snames.insert(s.name.as_str()) {
            err(path.clone(), format!("service name {:?} must be non-empty and unique", s.name));
        }
        if !matches!(s.proto, 6 | 17) {
            err(path.clone(), format!("protocol {} must be 6 (TCP) or 17 (UDP)", s.proto));
        }
        for vrf in [s.inside_vrf, s.outside_vrf] {
            if !vrf_ids.contains(&vrf) {
                err(path.clone(), format!("VRF {vrf} is not declared in vrfs"));
            }
        }
        let clash = c.nat_pools.iter().find(|p| {
            p.outside_vrf == s.outside_vrf
                && p.addresses.iter().any(|a| a.contains(&s.outside))
                && p.ports.contains(s.outside_port)
        });
        if let Some(p) = clash {
            err(
                path.clone(),
                format!(
                    "{}:{} lies in pool {:?}'s ports; publish outside them",
                    s.outside, s.outside_port, p.name
                ),
            );
        }
        if c.services[..i].iter().any(|o| {
            (o.proto, o.outside_vrf, o.outside, o.outside_port)
                == (s.proto, s.outside_vrf, s.outside, s.outside_port)
        }) {
            err(path, format!("{}:{} is published twice", s.outside, s.outside_port));
        }
    }
    for (i, r) in c.policies.iter().enumerate() {
        if let super::Action::Napt { pool } = &r.action {
            match c.nat_pools.iter().find(|p| p.name == *pool) {
                None => err(format!("policies[{i}]"), format!("pool {pool:?} does not exist")),
                Some(p) if p.inside_vrf != r.vrf => err(
                    format!("policies[{i}]"),
                    format!("rule in VRF {} uses pool {pool:?} whose inside is VRF {}", r.vrf, p.inside_vrf),
                ),
                Some(_) => {}
            }
        }
    }
}
