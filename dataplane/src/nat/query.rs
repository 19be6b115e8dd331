//! "Which sessions does this gateway hold for that host?": NAT sessions filtered by address,
//! port, VRF and protocol, in a stable order (outside address and port), a page at a time.

use std::net::Ipv4Addr;

use serde::Serialize;

use super::{
    Nat,
    sessions::{FIN_IN, FIN_OUT, ICMP, RST, SYN_IN, SYN_OUT, Session, TCP, UDP},
};

/// What to look for; every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// The inside, outside or a remote address.
    pub addr: Option<Ipv4Addr>,
    /// The inside or outside port (ICMP: identifier).
    pub port: Option<u16>,
    /// The inside or outside VRF.
    pub vrf: Option<u32>,
    /// 6, 17 or 1.
    pub proto: Option<u8>,
}

/// One session as people and scripts see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub proto: &'static str,
    pub pool: String,
    pub inside_vrf: u32,
    pub inside: String,
    pub outside_vrf: u32,
    pub outside: String,
    /// The remotes its filtering admits (address-and-port-dependent), most recent first.
    pub remotes: Vec<String>,
    /// TCP: syn_sent, established, closing, reset; others: active.
    pub state: &'static str,
    /// Seconds until it expires if idle; `None` for a static mapping.
    pub expires_in_seconds: Option<u32>,
    /// Flows the XDP program forwards it by (filled in by the XDP engine's slow path).
    pub kernel_flows: usize,
    /// Its outside key, for the flows the XDP program forwards it by.
    #[serde(skip)]
    pub key: u64,
}

/// A page of matching sessions and how many match in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionPage {
    pub total: usize,
    pub offset: usize,
    pub sessions: Vec<SessionView>,
}

fn proto_number(class: u8) -> u8 {
    match class {
        TCP => 6,
        UDP => 17,
        _ => 1,
    }
}

fn state(s: &Session) -> &'static str {
    if s.proto != TCP {
        return "active";
    }
    if s.state & RST != 0 {
        "reset"
    } else if s.state & (FIN_IN | FIN_OUT) != 0 {
        "closing"
    } else if s.state & (SYN_IN | SYN_OUT) == SYN_IN | SYN_OUT {
        "established"
    } else {
        "syn_sent"
    }
}

impl Nat {
    /// Sessions live at `now` matching `f`, ordered by outside address and port: `limit` of them
    /// from `offset` on, and the number matching in all.
    pub fn query(&self, f: &SessionFilter, offset: usize, limit: usize, now: u32) -> SessionPage {
        let pools = self.pools();
        let mut hits: Vec<&Session> = self
            .sessions()
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.expires > now || s.state & super::sessions::STATIC != 0)
            .filter(|s| {
                let pool = pools.get(s.pool as usize);
                let a = f.addr.map(u32::from);
                a.is_none_or(|a| s.in_addr == a || s.out_addr == a || s.remotes.iter().any(|r| r.0 == a))
                    && f.port.is_none_or(|p| s.in_port == p || s.out_port == p)
                    && f.vrf.is_none_or(|v| pool.is_some_and(|p| p.inside_vrf == v || p.outside_vrf == v))
                    && f.proto.is_none_or(|p| proto_number(s.proto) == p)
            })
            .collect();
        hits.sort_unstable_by_key(|s| s.out_key());
        let total = hits.len();
        let sessions = hits
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|s| {
                let pool = pools.get(s.pool as usize);
                let endpoint = |a: u32, p: u16| format!("{}:{p}", Ipv4Addr::from(a));
                SessionView {
                    proto: match s.proto {
                        TCP => "tcp",
                        UDP => "udp",
                        ICMP => "icmp",
                        _ => "?",
                    },
                    pool: pool.map_or_else(|| "?".into(), |p| p.name.clone()),
                    inside_vrf: pool.map_or(0, |p| p.inside_vrf),
                    inside: endpoint(s.in_addr, s.in_port),
                    outside_vrf: pool.map_or(0, |p| p.outside_vrf),
                    outside: endpoint(s.out_addr, s.out_port),
                    remotes: s.remotes.iter().filter(|r| **r != (0, 0)).map(|r| endpoint(r.0, r.1)).collect(),
                    state: state(s),
                    expires_in_seconds: (s.state & super::sessions::STATIC == 0)
                        .then(|| s.expires.saturating_sub(now)),
                    kernel_flows: 0,
                    key: s.out_key(),
                }
            })
            .collect();
        SessionPage { total, offset, sessions }
    }
}
