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

/// Sessions one scan step examines: the forwarding loop advances a query by this much between
/// packet batches, so a query over millions of sessions never stalls forwarding for long.
pub const SCAN_STEP: usize = 4096;

/// The deepest page a query may ask for (`offset + limit`): a scan keeps that many candidates
/// (about 0.5 MiB), and the API's connection limit bounds how many scans run at once.
pub const MAX_DEPTH: usize = 10_000;

/// A query under way: walks the session table a step at a time ([`Nat::scan`]), keeping the
/// `offset + limit` matching sessions that come first by outside key, and counting all matches.
/// Not a snapshot: a session that comes or goes while the walk is under way may or may not be
/// in the answer, as with any live table.
#[derive(Debug)]
pub struct SessionScan {
    filter: SessionFilter,
    offset: usize,
    limit: usize,
    now: u32,
    next: usize,
    total: usize,
    /// The first `offset + limit` matches by outside key: a max-heap, so the worst is on top.
    best: std::collections::BinaryHeap<Candidate>,
}

#[derive(Debug)]
struct Candidate(u64, Session);

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

impl SessionScan {
    /// A query for sessions live at `now` matching `filter`, `limit` of them from `offset` on
    /// (`offset + limit` is capped at [`MAX_DEPTH`]).
    pub fn new(filter: SessionFilter, offset: usize, limit: usize, now: u32) -> SessionScan {
        let limit = limit.min(MAX_DEPTH.saturating_sub(offset));
        SessionScan { filter, offset, limit, now, next: 0, total: 0, best: Default::default() }
    }
}

impl Nat {
    /// Sessions live at `now` matching `f`, ordered by outside address and port: `limit` of them
    /// from `offset` on, and the number matching in all. The whole walk at once: for tests and
    /// small tables; the forwarding loop uses [`Nat::scan`].
    pub fn query(&self, f: &SessionFilter, offset: usize, limit: usize, now: u32) -> SessionPage {
        let mut scan = SessionScan::new(f.clone(), offset, limit, now);
        while !self.scan(&mut scan, usize::MAX) {}
        self.page(scan)
    }

    /// Advances `scan` over up to `budget` slots; true once it has walked the whole table.
    pub fn scan(&self, scan: &mut SessionScan, budget: usize) -> bool {
        let pools = self.pools();
        let (f, now, depth) = (&scan.filter, scan.now, scan.offset + scan.limit);
        let table = self.sessions();
        let end = table.slots().min(scan.next.saturating_add(budget));
        for slot in scan.next..end {
            let s = table.get(slot as u32);
            if s.live != 1 || !(s.expires > now || s.state & super::sessions::STATIC != 0) {
                continue;
            }
            let pool = pools.get(s.pool as usize);
            let a = f.addr.map(u32::from);
            let hit = a
                .is_none_or(|a| s.in_addr == a || s.out_addr == a || s.remotes.iter().any(|r| r.0 == a))
                && f.port.is_none_or(|p| s.in_port == p || s.out_port == p)
                && f.vrf.is_none_or(|v| pool.is_some_and(|p| p.inside_vrf == v || p.outside_vrf == v))
                && f.proto.is_none_or(|p| super::proto_of(s.proto) == p);
            if !hit {
                continue;
            }
            scan.total += 1;
            let key = s.out_key();
            if scan.best.len() < depth {
                scan.best.push(Candidate(key, *s));
            } else if scan.best.peek().is_some_and(|worst| key < worst.0) {
                scan.best.pop();
                scan.best.push(Candidate(key, *s));
            }
        }
        scan.next = end;
        end >= table.slots()
    }

    /// The page a finished `scan` found.
    pub fn page(&self, scan: SessionScan) -> SessionPage {
        let pools = self.pools();
        let now = scan.now;
        let hits = scan.best.into_sorted_vec();
        let sessions = hits
            .iter()
            .map(|c| &c.1)
            .skip(scan.offset)
            .take(scan.limit)
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
        SessionPage { total: scan.total, offset: scan.offset, sessions }
    }
}
