//! Next-hop MAC resolution without static configuration, for IPv4 and IPv6.
//!
//! The gateway's interfaces carry its addresses in the kernel, so the kernel already speaks ARP
//! and NDP for them. This module borrows the kernel's neighbor tables instead of writing a second
//! ARP/NDP stack:
//! - when the program misses a next hop it reports it on a ring buffer, and we ask the kernel to
//!   resolve it (RTM_NEWNEIGH with NTF_USE, which sends the ARP request or neighbor solicitation);
//! - configured next hops are requested ahead of traffic, so the first packet finds them;
//! - a periodic dump copies every usable entry on our ports into the program's map and removes
//!   the ones the kernel has dropped or failed;
//! - entries that went STALE are nudged with NTF_USE too, so a host that changed its MAC is
//!   re-learned (the kernel never re-probes an entry it does not use itself).
//!
//! The program also gleans senders of ARP packets addressed to the gateway straight into its map,
//! so a host's first reply does not wait for the next sync; entries only the program learned are
//! left alone here.

use std::{
    collections::{BTreeSet, HashMap as StdHashMap},
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
    time::{Duration, Instant},
};

use anyhow::Result;
use futures::TryStreamExt;
use hutong_common::{Neigh, Neigh6Key, NeighKey};
use netlink_packet_route::{
    AddressFamily,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState},
};
use rtnetlink::Handle;
use tokio::io::unix::AsyncFd;

use crate::xdp::NeighborMaps;

/// How often the kernel table is copied into the program's map.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// A missing next hop is asked for at most this often, however many packets miss it.
const MISS_HOLDOFF: Duration = Duration::from_millis(500);
/// A STALE entry is re-confirmed at most this often (the kernel's own reachable time is ~30 s).
const STALE_HOLDOFF: Duration = Duration::from_secs(30);

/// A next hop: the interface (ifindex) and its address there.
pub type NextHop = (u32, IpAddr);

pub struct NeighborSync {
    handle: Handle,
    maps: NeighborMaps,
    ports: BTreeSet<u32>,
    nexthops: Vec<NextHop>,
    /// What the program's maps hold now, mirrored so each sync writes only changes.
    installed: StdHashMap<NextHop, [u8; 6]>,
    requested: StdHashMap<NextHop, Instant>,
    /// Misses reported by the slow path's userspace engine.
    requests: tokio::sync::mpsc::UnboundedReceiver<NextHop>,
    requests_tx: tokio::sync::mpsc::UnboundedSender<NextHop>,
    /// Where the program's misses on ports the kernel does not know (VLAN ports) go.
    foreign: Option<std::sync::mpsc::Sender<NextHop>>,
}

/// A kernel neighbor entry usable for forwarding, or `None` for incomplete/failed ones.
fn usable(msg: &NeighbourMessage) -> Option<(NextHop, [u8; 6], bool)> {
    let stale = match msg.header.state {
        NeighbourState::Reachable | NeighbourState::Permanent | NeighbourState::Noarp => false,
        NeighbourState::Stale | NeighbourState::Delay | NeighbourState::Probe => true,
        _ => return None,
    };
    let mut addr = None;
    let mut mac = None;
    for a in &msg.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => addr = Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => addr = Some(IpAddr::V6(*ip)),
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                mac = Some([l[0], l[1], l[2], l[3], l[4], l[5]])
            }
            _ => {}
        }
    }
    Some(((msg.header.ifindex, addr?), mac?, stale))
}

impl NeighborSync {
    pub fn new(handle: Handle, maps: NeighborMaps, ports: BTreeSet<u32>, nexthops: Vec<NextHop>) -> Self {
        let (requests_tx, requests) = tokio::sync::mpsc::unbounded_channel();
        Self {
            handle,
            maps,
            ports,
            nexthops,
            installed: StdHashMap::new(),
            requested: StdHashMap::new(),
            requests,
            requests_tx,
            foreign: None,
        }
    }

    /// Sends the program's misses on ports other than `ports` (VLAN ports, by their keys) to
    /// `to` instead of asking the kernel, which does not know them.
    pub fn forward_foreign(&mut self, to: std::sync::mpsc::Sender<NextHop>) {
        self.foreign = Some(to);
    }

    /// Where other parts of the gateway (the slow path) report next hops they found unresolved.
    pub fn requester(&self) -> tokio::sync::mpsc::UnboundedSender<NextHop> {
        self.requests_tx.clone()
    }

    /// Asks the kernel to resolve (or re-confirm) `key`, at most once per `holdoff`.
    async fn request(&mut self, key: NextHop, holdoff: Duration) {
        let now = Instant::now();
        if self.requested.get(&key).is_some_and(|t| now.duration_since(*t) < holdoff) {
            return;
        }
        self.requested.insert(key, now);
        let (ifindex, ip) = key;
        let req = self.handle.neighbours().add(ifindex, ip).state(NeighbourState::None);
        if let Err(e) = req.flags(NeighbourFlags::Use).replace().execute().await {
            log::warn!("asking the kernel to resolve {ip} on ifindex {ifindex}: {e}");
        }
    }

    fn install(&mut self, (ifindex, ip): NextHop, mac: [u8; 6]) -> Result<()> {
        let value = Neigh { mac, _pad: [0; 2] };
        match ip {
            IpAddr::V4(a) => self.maps.table.insert(NeighKey { ifindex, addr: a.octets() }, value, 0)?,
            IpAddr::V6(a) => self.maps.table6.insert(Neigh6Key { ifindex, addr: a.octets() }, value, 0)?,
        }
        Ok(())
    }

    fn uninstall(&mut self, (ifindex, ip): NextHop) {
        // Already absent is fine: the goal is that the program cannot use it.
        let _ = match ip {
            IpAddr::V4(a) => self.maps.table.remove(&NeighKey { ifindex, addr: a.octets() }),
            IpAddr::V6(a) => self.maps.table6.remove(&Neigh6Key { ifindex, addr: a.octets() }),
        };
    }

    /// One pass: copy the kernel table into the map, request what is missing or stale.
    pub async fn sync(&mut self) -> Result<()> {
        let mut current = StdHashMap::new();
        let mut stale = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut dump = self.handle.neighbours().get().set_address_family(family).execute();
            while let Some(msg) = dump.try_next().await? {
                if msg.header.family != family || !self.ports.contains(&msg.header.ifindex) {
                    continue;
                }
                if let Some((key, mac, is_stale)) = usable(&msg) {
                    current.insert(key, mac);
                    if is_stale {
                        stale.push(key);
                    }
                }
            }
        }
        for (key, mac) in &current {
            if self.installed.get(key) != Some(mac) {
                self.install(*key, *mac)?;
                log::info!("neighbor {} is {}", key.1, fmt_mac(mac));
            }
        }
        let gone: Vec<NextHop> =
            self.installed.keys().filter(|k| !current.contains_key(k)).copied().collect();
        for key in gone {
            self.uninstall(key);
            log::info!("neighbor {} forgotten", key.1);
        }
        self.installed = current;
        let missing: Vec<NextHop> =
            self.nexthops.iter().filter(|k| !self.installed.contains_key(k)).copied().collect();
        for key in missing {
            self.request(key, MISS_HOLDOFF).await;
        }
        for key in stale {
            self.request(key, STALE_HOLDOFF).await;
        }
        // Forget old requests, so a scan of many absent hosts cannot grow this map without bound.
        let now = Instant::now();
        self.requested.retain(|_, t| now.duration_since(*t) < STALE_HOLDOFF);
        Ok(())
    }

    /// Syncs until every configured next hop is resolved, or `within` has passed; returns those
    /// still unresolved. A gateway starts forwarding with its next hops known, so its first
    /// packets are not lost to resolution (the program drops what it cannot send).
    pub async fn settle(&mut self, within: Duration) -> Vec<NextHop> {
        let deadline = Instant::now() + within;
        loop {
            if let Err(e) = self.sync().await {
                log::warn!("neighbor sync: {e:#}");
            }
            let missing: Vec<NextHop> =
                self.nexthops.iter().filter(|k| !self.installed.contains_key(k)).copied().collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads every pending miss report and requests resolution for each.
    async fn drain_misses(&mut self) {
        let mut keys = Vec::new();
        while let Some(item) = self.maps.misses.next() {
            if let Some(key) = miss(&item) {
                keys.push(key);
            }
        }
        for key in keys {
            if self.ports.contains(&key.0) {
                self.request(key, MISS_HOLDOFF).await;
            } else if let Some(to) = &self.foreign {
                let _ = to.send(key);
            }
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) -> Result<()> {
        // Readiness is polled on the ring buffer's fd while `self` keeps the ring buffer itself.
        // SAFETY: the fd belongs to `self.maps.misses`, which outlives `ready`: `ready` is a local
        // of this function and `self` (a parameter) is dropped after it.
        let mut ready = unsafe { AsyncFd::register(BorrowedRaw(self.maps.misses.as_raw_fd()))? };
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.sync().await {
                        log::warn!("neighbor sync: {e:#}");
                    }
                }
                guard = ready.readable_mut() => {
                    guard?.clear_ready();
                    self.drain_misses().await;
                }
                Some(key) = self.requests.recv() => {
                    if self.ports.contains(&key.0) {
                        self.request(key, MISS_HOLDOFF).await;
                    }
                }
            }
        }
    }
}

/// A miss record from the program: a `NeighKey` (8 bytes) or a `Neigh6Key` (20 bytes).
fn miss(item: &[u8]) -> Option<NextHop> {
    let ifindex = u32::from_ne_bytes(item.get(..4)?.try_into().ok()?);
    let addr = match item.len() {
        8 => IpAddr::from(<[u8; 4]>::try_from(&item[4..8]).ok()?),
        20 => IpAddr::from(<[u8; 16]>::try_from(&item[4..20]).ok()?),
        _ => return None,
    };
    Some((ifindex, addr))
}

/// The ring buffer's fd, for readiness only; `NeighborSync` owns (and closes) the real one.
struct BorrowedRaw(RawFd);

impl AsRawFd for BorrowedRaw {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miss_records_of_both_families_are_read() {
        let v4 = [7u32.to_ne_bytes().as_slice(), &[10, 20, 0, 5]].concat();
        assert_eq!(miss(&v4), Some((7, "10.20.0.5".parse().unwrap())));
        let a: std::net::Ipv6Addr = "fd20::5".parse().unwrap();
        let v6 = [9u32.to_ne_bytes().as_slice(), &a.octets()].concat();
        assert_eq!(miss(&v6), Some((9, IpAddr::V6(a))));
        assert_eq!(miss(&v6[..12]), None, "neither size");
        assert_eq!(miss(&[]), None);
    }
}
