//! Stateful translation for IPv4: NAPT with port blocks per inside host (dynamic, or
//! deterministic per RFC 7422), published services (destination NAT), ICMP echo identifier
//! translation, hairpinning, and fragments that follow their first fragment.
//!
//! One [`Nat`] per worker: its sessions, port blocks and fragment memory belong to it alone
//! (see [`ports`] for how workers split the port space). The engine asks it, in this order:
//! an existing session for the packet (inside → outside, or outside → inside with filtering),
//! else the policy, whose `napt` / `dnat` rules call [`Nat::create`] / [`Nat::service_inbound`].

#![forbid(unsafe_code)]

pub mod cost;
pub mod det44;
pub mod index;
pub mod ports;
pub mod query;
pub mod sessions;

use std::{collections::VecDeque, net::Ipv4Addr};

use hutong_common::{
    Drop,
    wire::{self, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};
use rustc_hash::FxHashMap;

use crate::config::{Config, Filtering, NatPool, Service};
use ports::{Exhausted, Ports};
use sessions::{
    FIN_IN, FIN_OUT, ICMP, RST, STATIC, SYN_IN, SYN_OUT, Session, TCP, Table, UDP, in_key, out_key,
};

/// How long a first fragment's translation is remembered for its later fragments, seconds.
pub const FRAGMENT_TIMEOUT: u32 = 10;
/// Fragment translations remembered at most (per worker).
pub const MAX_FRAGMENTS: usize = 65536;

/// What NAT sees of a packet: the inside/outside VRF, protocol class, and endpoints. For ICMP
/// queries both ports carry the identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub vrf: u32,
    pub class: u8,
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (0 for others).
    pub flags: u8,
}

/// A translation: the packet's new endpoints and the VRF it continues in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xlat {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub vrf: u32,
    /// The session it came from (its outside key), if any; `None` for published services,
    /// which live as long as the config.
    pub session: Option<u64>,
}

/// A pool's use: sessions, and port blocks held by hosts out of all its blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub pool: String,
    pub sessions: u64,
    pub blocks_used: u64,
    pub blocks_total: u64,
}

/// What happened to sessions, for whoever caches their decisions (the XDP program's flows):
/// recorded only after [`Nat::track_events`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatEvent {
    /// The session with this outside key is gone (expired, reset, or removed by a new policy);
    /// its outside address and port may be given to someone else next.
    Freed(u64),
    /// The session forgot this remote (address, port): filtering no longer admits it.
    Forgot(SessionRef),
}

/// A NAT session as something else depends on it (a flow the XDP program repeats): the
/// session's outside key, and the remote (address, port; port 0 for ICMP) its filtering
/// admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub session: u64,
    pub remote: (u32, u16),
}

/// The protocol class of an IP protocol number, if NAPT translates it.
pub fn class(proto: u8) -> Option<u8> {
    match proto {
        IPPROTO_TCP => Some(TCP),
        IPPROTO_UDP => Some(UDP),
        IPPROTO_ICMP => Some(ICMP),
        _ => None,
    }
}

/// The IP protocol number of a session class (the inverse of [`class`]).
pub fn proto_of(class: u8) -> u8 {
    match class {
        TCP => IPPROTO_TCP,
        UDP => IPPROTO_UDP,
        _ => IPPROTO_ICMP,
    }
}

/// The remote port a mapping remembers for filtering (none for ICMP, whose "ports" are the
/// query identifier).
fn remote_port_out(t: &Tuple) -> u16 {
    if t.class == ICMP { 0 } else { t.dport }
}

/// Fragment key: VRF, source, destination, protocol, IP id.
type FragKey = (u32, u32, u32, u8, u16);

pub struct Nat {
    pools: Vec<NatPool>,
    ports: Vec<Ports>,
    table: Table,
    pool_live: Vec<usize>,
    /// Per VRF: the pools whose inside is that VRF.
    inside_pools: Vec<Vec<u16>>,
    /// Per VRF: whether it is some pool's outside.
    outside: Vec<bool>,
    services: Vec<Service>,
    svc_in: FxHashMap<(u32, u8, u32, u16), u16>,
    svc_out: FxHashMap<(u32, u8, u32, u16), u16>,
    frags: FxHashMap<FragKey, (Xlat, u32)>,
    frag_order: VecDeque<FragKey>,
    /// Session events since the last [`Nat::take_events`], when tracked.
    events: Option<Vec<NatEvent>>,
}

fn timeout(pool: &NatPool, s: &Session) -> u32 {
    let t = pool.timeouts;
    match s.proto {
        TCP if s.state & RST != 0 => t.tcp_transitory,
        TCP if s.state & (FIN_IN | FIN_OUT) == FIN_IN | FIN_OUT => t.tcp_transitory,
        TCP if s.state & (SYN_IN | SYN_OUT) == SYN_IN | SYN_OUT => t.tcp_established,
        TCP => t.tcp_transitory,
        UDP => t.udp,
        _ => t.icmp,
    }
}

/// Updates TCP state from a segment's flags (SYN, FIN, RST) and refreshes the
/// idle timer. Both directions refresh (RFC 4787 REQ-6 requires outbound; inbound is allowed).
fn touch(pool: &NatPool, s: &mut Session, flags: u8, outbound: bool, now: u32) {
    if s.proto == TCP {
        if flags & wire::TCP_SYN != 0 {
            s.state |= if outbound { SYN_IN } else { SYN_OUT };
        }
        if flags & wire::TCP_FIN != 0 {
            s.state |= if outbound { FIN_IN } else { FIN_OUT };
        }
        if flags & wire::TCP_RST != 0 {
            s.state |= RST;
        }
    }
    s.expires = now.saturating_add(timeout(pool, s));
}

/// How often a worker expires sessions on its own, traffic or not.
pub const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a full turn of the clock hand takes at most, for tables up to
/// `EXPIRY_MOST * 100` slots (6.5 Mi); larger ones take proportionally longer.
pub const EXPIRY_TURN: std::time::Duration = std::time::Duration::from_secs(1);
/// The most slots one timed call examines (about 0.1-0.3 ms).
pub const EXPIRY_MOST: usize = 65_536;

impl Nat {
    /// NAT state for worker `worker` of `workers`, for a validated config.
    pub fn new(config: &Config, worker: u32, workers: u32) -> Nat {
        let vrfs = config.vrfs.iter().map(|v| v.id as usize + 1).max().unwrap_or(1);
        let mut inside_pools = vec![Vec::new(); vrfs];
        let mut outside = vec![false; vrfs];
        for (i, p) in config.nat_pools.iter().enumerate() {
            if let Some(v) = inside_pools.get_mut(p.inside_vrf as usize) {
                v.push(i as u16);
            }
            if let Some(o) = outside.get_mut(p.outside_vrf as usize) {
                *o = true;
            }
        }
        let mut svc_in = FxHashMap::default();
        let mut svc_out = FxHashMap::default();
        for (i, s) in config.services.iter().enumerate() {
            let c = class(s.proto).unwrap_or(TCP);
            svc_in.insert((s.inside_vrf, c, u32::from(s.inside), s.inside_port), i as u16);
            svc_out.insert((s.outside_vrf, c, u32::from(s.outside), s.outside_port), i as u16);
        }
        let max: usize = config.nat_pools.iter().map(|p| p.max_sessions as usize).sum();
        Nat {
            ports: config.nat_pools.iter().map(|p| Ports::new(p, worker, workers.max(1))).collect(),
            pool_live: vec![0; config.nat_pools.len()],
            pools: config.nat_pools.clone(),
            table: Table::new(max.max(1)),
            inside_pools,
            outside,
            services: config.services.clone(),
            svc_in,
            svc_out,
            frags: FxHashMap::default(),
            frag_order: VecDeque::new(),
            events: None,
        }
    }

    /// From now on, records what happens to sessions (see [`NatEvent`]).
    pub fn track_events(&mut self) {
        self.events.get_or_insert_with(Vec::new);
    }

    /// The session events since the last call (empty when not tracked).
    pub fn take_events(&mut self) -> Vec<NatEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn event(&mut self, e: NatEvent) {
        if let Some(v) = self.events.as_mut() {
            v.push(e);
        }
    }

    /// Keeps the session with outside key `key` alive as if a packet without TCP flags had
    /// passed at `at` (engine seconds): its idle timer runs from then, never shorter than now.
    /// Returns whether the session is live at `now`.
    pub fn refresh(&mut self, key: u64, at: u32, now: u32) -> bool {
        let Some(slot) = self.table.find_out(key, now) else { return false };
        let s = self.table.get_mut(slot);
        let Some(pool) = self.pools.get(s.pool as usize) else { return true };
        if s.state & STATIC == 0 {
            let until = at.saturating_add(timeout(pool, s));
            s.expires = s.expires.max(until);
        }
        true
    }

    /// Recreates a session a previous process had handed to the XDP program (a keep-forwarding
    /// restart), or adds `remote` to it if it exists already: inside `in_addr`:`in_port` of
    /// protocol class `class` mapped to outside `out_addr`:`out_port` of `pool`. TCP sessions
    /// are taken as established (only established flows are handed over). Returns the session's
    /// outside key, or `None` if the mapping cannot be had (the port is someone else's now).
    #[allow(clippy::too_many_arguments)]
    pub fn adopt(
        &mut self,
        pool: u16,
        class: u8,
        (in_addr, in_port): (u32, u16),
        (out_addr, out_port): (u32, u16),
        remote: (u32, u16),
        now: u32,
    ) -> Option<u64> {
        let key = out_key(class, out_addr, out_port);
        if let Some(slot) = self.table.find_out(key, now) {
            let s = self.table.get_mut(slot);
            if (s.pool, s.in_addr, s.in_port) != (pool, in_addr, in_port) {
                return None;
            }
            let forgotten = s.remember(remote.0, remote.1);
            if let Some(r) = forgotten {
                self.event(NatEvent::Forgot(SessionRef { session: key, remote: r }));
            }
            return Some(key);
        }
        let p = self.pools.get(pool as usize)?;
        if self.table.is_full() || self.pool_live[pool as usize] >= p.max_sessions as usize {
            return None;
        }
        if self.table.find_in(in_key(pool, class, in_addr, in_port), now).is_some() {
            return None;
        }
        if !self.ports[pool as usize].reserve(Ipv4Addr::from(in_addr), Ipv4Addr::from(out_addr), out_port) {
            return None;
        }
        let mut s =
            Session { in_addr, in_port, out_addr, out_port, pool, proto: class, ..Session::default() };
        if class == TCP {
            s.state = SYN_IN | SYN_OUT;
        }
        s.remember(remote.0, remote.1);
        touch(p, &mut s, 0, true, now);
        self.table.insert(s);
        self.pool_live[pool as usize] += 1;
        Some(key)
    }

    /// The pool whose outside addresses hold `addr`, with the given inside and outside VRFs
    /// (`None`: any).
    pub fn pool_of(&self, inside_vrf: Option<u32>, outside_vrf: Option<u32>, addr: u32) -> Option<u16> {
        let a = Ipv4Addr::from(addr);
        self.pools
            .iter()
            .position(|p| {
                inside_vrf.is_none_or(|v| v == p.inside_vrf)
                    && outside_vrf.is_none_or(|v| v == p.outside_vrf)
                    && p.addresses.iter().any(|n| n.contains(&a))
            })
            .map(|i| i as u16)
    }

    /// Each pool's sessions and port blocks in use, for metrics.
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        self.pools
            .iter()
            .zip(&self.ports)
            .zip(&self.pool_live)
            .map(|((p, ports), live)| PoolUsage {
                pool: p.name.clone(),
                sessions: *live as u64,
                blocks_used: ports.usage().0 as u64,
                blocks_total: ports.total_blocks() as u64,
            })
            .collect()
    }

    /// Whether `addr`:`port` in `vrf` is a published service's inside end (its replies go out
    /// through the service's mapping, which lives as long as the config).
    pub fn serves(&self, vrf: u32, class: u8, addr: u32, port: u16) -> bool {
        self.svc_in.contains_key(&(vrf, class, addr, port))
    }

    /// Whether `addr`:`port` in `vrf` is a published service's outside end.
    pub fn publishes(&self, vrf: u32, class: u8, addr: u32, port: u16) -> bool {
        self.svc_out.contains_key(&(vrf, class, addr, port))
    }

    /// Whether the session with outside key `key` is live at `now`.
    pub fn is_live(&self, key: u64, now: u32) -> bool {
        self.table.find_out(key, now).is_some()
    }

    /// Whether NAT has anything to do with packets arriving in `vrf`.
    #[inline]
    pub fn involved(&self, vrf: u32) -> bool {
        let v = vrf as usize;
        self.inside_pools.get(v).is_some_and(|p| !p.is_empty())
            || self.outside.get(v).copied().unwrap_or(false)
            || !self.services.is_empty()
    }

    /// Whether `addr` in `vrf` is a pool's or a service's outside address.
    pub fn is_outside_address(&self, vrf: u32, addr: u32) -> bool {
        let a = Ipv4Addr::from(addr);
        self.pools.iter().any(|p| p.outside_vrf == vrf && p.addresses.iter().any(|n| n.contains(&a)))
            || self.services.iter().any(|s| s.outside_vrf == vrf && s.outside == a)
    }

    pub fn sessions(&self) -> &Table {
        &self.table
    }

    pub fn pools(&self) -> &[NatPool] {
        &self.pools
    }

    fn xlat_out(&self, s: &Session, t: &Tuple) -> Xlat {
        let vrf = self.pools.get(s.pool as usize).map_or(0, |p| p.outside_vrf);
        Xlat {
            src: s.out_addr,
            sport: s.out_port,
            dst: t.dst,
            dport: t.dport,
            vrf,
            session: Some(s.out_key()),
        }
    }

    /// Inside → outside through an existing mapping or a published service's return path.
    pub fn outbound_existing(&mut self, t: &Tuple, now: u32) -> Option<Xlat> {
        let pools = self.inside_pools.get(t.vrf as usize)?;
        for &p in pools {
            if let Some(slot) = self.table.find_in(in_key(p, t.class, t.src, t.sport), now) {
                let pool = &self.pools[p as usize];
                let s = self.table.get_mut(slot);
                let forgotten = s.remember(t.dst, remote_port_out(t));
                touch(pool, s, t.flags, true, now);
                let s = *s;
                if let Some(r) = forgotten {
                    self.event(NatEvent::Forgot(SessionRef { session: s.out_key(), remote: r }));
                }
                return Some(self.xlat_out(&s, t));
            }
        }
        let &i = self.svc_in.get(&(t.vrf, t.class, t.src, t.sport))?;
        let svc = &self.services[i as usize];
        Some(Xlat {
            src: u32::from(svc.outside),
            sport: svc.outside_port,
            dst: t.dst,
            dport: t.dport,
            vrf: svc.outside_vrf,
            session: None,
        })
    }

    /// Outside → inside through an existing mapping, applying the pool's filtering.
    pub fn inbound_existing(&mut self, t: &Tuple, now: u32) -> Result<Option<Xlat>, Drop> {
        if !self.outside.get(t.vrf as usize).copied().unwrap_or(false) {
            return Ok(None);
        }
        let Some(slot) = self.table.find_out(out_key(t.class, t.dst, t.dport), now) else { return Ok(None) };
        let s = self.table.get(slot);
        let pool = &self.pools[s.pool as usize];
        if pool.outside_vrf != t.vrf {
            return Ok(None);
        }
        // ICMP has no remote port: a reply is admitted from an address the inside queried.
        let remote_port = if t.class == ICMP { 0 } else { t.sport };
        let allowed = match pool.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressAndPortDependent => s.permits(t.src, remote_port),
        };
        if !allowed {
            return Err(Drop::Filtered);
        }
        let s = self.table.get_mut(slot);
        touch(pool, s, t.flags, false, now);
        Ok(Some(Xlat {
            src: t.src,
            sport: t.sport,
            dst: s.in_addr,
            dport: s.in_port,
            vrf: pool.inside_vrf,
            session: Some(s.out_key()),
        }))
    }

    /// Creates a mapping in `pool` for an outbound packet (the slow path).
    pub fn create(&mut self, pool: u16, t: &Tuple, now: u32) -> Result<Xlat, Drop> {
        let max = self.pools.get(pool as usize).ok_or(Drop::NoTranslation)?.max_sessions as usize;
        if self.table.is_full() || self.pool_live[pool as usize] >= max {
            return Err(Drop::SessionsFull);
        }
        let (out_addr, out_port) =
            self.ports[pool as usize].allocate(Ipv4Addr::from(t.src), t.sport).map_err(|e| match e {
                Exhausted::HostPorts | Exhausted::PoolBlocks => Drop::PortsExhausted,
                Exhausted::NotInPrefix => Drop::NoTranslation,
            })?;
        let mut s = Session {
            in_addr: t.src,
            in_port: t.sport,
            out_addr: u32::from(out_addr),
            out_port,
            pool,
            proto: t.class,
            ..Session::default()
        };
        // A session that expired but was not swept yet may still hold the keys.
        while let Some(old) = self.table.stale(s.in_key(), s.out_key()) {
            self.retire(old);
        }
        s.remember(t.dst, remote_port_out(t));
        touch(&self.pools[pool as usize], &mut s, t.flags, true, now);
        self.table.insert(s);
        self.pool_live[pool as usize] += 1;
        Ok(self.xlat_out(&s, t))
    }

    fn retire(&mut self, slot: u32) {
        let s = self.table.remove(slot);
        self.event(NatEvent::Freed(s.out_key()));
        if s.state & STATIC == 0 {
            if let Some(p) = self.ports.get_mut(s.pool as usize) {
                p.release(Ipv4Addr::from(s.out_addr), s.out_port);
            }
            if let Some(n) = self.pool_live.get_mut(s.pool as usize) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// A published service at the packet's destination (for a `dnat` rule).
    pub fn service_inbound(&self, t: &Tuple) -> Option<Xlat> {
        let &i = self.svc_out.get(&(t.vrf, t.class, t.dst, t.dport))?;
        let s = &self.services[i as usize];
        Some(Xlat {
            src: t.src,
            sport: t.sport,
            dst: u32::from(s.inside),
            dport: s.inside_port,
            vrf: s.inside_vrf,
            session: None,
        })
    }

    /// Hairpinning (RFC 4787 REQ-9): an outbound packet addressed to another mapping of this
    /// gateway turns back inside, keeping its translated source, if that mapping's filtering
    /// admits the source. Returns whether the destination is one of this gateway's mappings at
    /// all (hairpinned, or refused by its filtering and sent on as it was).
    pub fn hairpin(&mut self, x: &mut Xlat, class: u8, now: u32) -> bool {
        let t = Tuple { vrf: x.vrf, class, src: x.src, dst: x.dst, sport: x.sport, dport: x.dport, flags: 0 };
        match self.inbound_existing(&t, now) {
            Ok(Some(back)) => {
                *x = back;
                x.src = t.src;
                x.sport = t.sport;
                true
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Frees idle sessions under the clock hand (a few per packet batch) and forgets old
    /// fragment translations.
    pub fn sweep(&mut self, now: u32) {
        self.sweep_some(now, sessions::SWEEP);
    }

    /// What the worker calls on a timer, traffic or not ([`EXPIRY_INTERVAL`]): enough of the
    /// table that the clock hand goes round at least once every [`EXPIRY_TURN`] (at most
    /// [`EXPIRY_MOST`] slots a call, so a huge table costs a bounded pause), so an idle
    /// session's ports are free again within its timeout plus about a turn, whatever the
    /// traffic. Returns how many it freed.
    pub fn expire(&mut self, now: u32) -> usize {
        let calls = (EXPIRY_TURN.as_millis() / EXPIRY_INTERVAL.as_millis()) as usize;
        let budget = self.table.slots().div_ceil(calls).clamp(sessions::SWEEP, EXPIRY_MOST);
        self.sweep_some(now, budget)
    }

    fn sweep_some(&mut self, now: u32, budget: usize) -> usize {
        let mut gone = Vec::new();
        self.table.sweep(now, budget, |s| gone.push(s));
        let freed = gone.len();
        for s in gone {
            self.event(NatEvent::Freed(s.out_key()));
            if let Some(p) = self.ports.get_mut(s.pool as usize) {
                p.release(Ipv4Addr::from(s.out_addr), s.out_port);
            }
            if let Some(n) = self.pool_live.get_mut(s.pool as usize) {
                *n = n.saturating_sub(1);
            }
        }
        while let Some(k) = self.frag_order.front() {
            match self.frags.get(k) {
                Some((_, exp)) if *exp > now => break,
                _ => {
                    let k = self.frag_order.pop_front().expect("front exists");
                    if self.frags.get(&k).is_some_and(|(_, exp)| *exp <= now) {
                        self.frags.remove(&k);
                    }
                }
            }
        }
        freed
    }

    /// Remembers a first fragment's translation for its later fragments.
    pub fn remember_fragment(&mut self, key: FragKey, x: Xlat, now: u32) {
        if self.frags.len() >= MAX_FRAGMENTS {
            return; // later fragments of this datagram will be dropped and counted
        }
        if self.frags.insert(key, (x, now + FRAGMENT_TIMEOUT)).is_none() {
            self.frag_order.push_back(key);
        }
    }

    /// The translation of a later fragment's first fragment.
    pub fn recall_fragment(&self, key: FragKey, now: u32) -> Option<Xlat> {
        self.frags.get(&key).filter(|(_, exp)| *exp > now).map(|(x, _)| *x)
    }

    /// Removes every session for which `keep` says no (after a config change).
    pub fn retain(&mut self, mut keep: impl FnMut(&NatPool, &Session) -> bool) {
        let doomed: Vec<u32> = self
            .table
            .iter()
            .filter(|(_, s)| {
                s.state & STATIC == 0 && !self.pools.get(s.pool as usize).is_some_and(|p| keep(p, s))
            })
            .map(|(i, _)| i)
            .collect();
        for slot in doomed {
            self.retire(slot);
        }
    }

    /// Deterministic reverse lookup (RFC 7422): which inside host owns outside `addr`:`port`.
    pub fn who_owned(&self, addr: Ipv4Addr, port: u16) -> Option<Ipv4Addr> {
        self.ports.iter().find_map(|p| p.deterministic().and_then(|d| d.reverse(addr, port)))
    }
}
