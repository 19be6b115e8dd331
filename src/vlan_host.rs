//! The slow path's neighbor resolution for VLAN ports (see `dataplane::host::vlan_neighbors`): the
//! kernel has no 802.1Q devices here, so nothing else resolves a VLAN port's neighbors (the
//! host stack answers for its addresses). What it learns goes to both engines: the slow path's, and the program's neighbor
//! tables under the VLAN port's key.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use dataplane::{Config, engine::Engine, host, xdp::kernel_neighbors::NextHop};
use hutong_common::{Neigh, Neigh6Key, NeighKey};
use ipnet::IpNet;

/// A next hop is asked for at most this often.
const ASK_HOLDOFF: Duration = Duration::from_millis(500);
/// A learned neighbor not heard from for this long is asked for again (the kernel's base
/// reachable time is 30 s; a neighbor here is only refreshed by what it sends us)...
const REFRESH: Duration = Duration::from_secs(60);
/// ...and forgotten, in both engines, if it has not answered this much later.
const FORGET: Duration = Duration::from_secs(3);

/// One VLAN port, as the slow path serves it.
struct VlanHost {
    /// Its key in the program's tables.
    key: u32,
    /// The engine's interface it is on, and its VLAN id.
    iface: usize,
    vid: u16,
    mac: [u8; 6],
    addrs: Vec<IpNet>,
}

pub struct VlanHosts {
    ports: Vec<VlanHost>,
    /// Configured next hops on VLAN ports, asked for until learned.
    nexthops: Vec<NextHop>,
    /// Neighbors learned, with when they were last heard from.
    learned: HashMap<NextHop, ([u8; 6], Instant)>,
    asked: HashMap<NextHop, Instant>,
    /// The program's neighbor tables (IPv4, IPv6), through their pins.
    pins: [PathBuf; 2],
}

impl VlanHosts {
    /// `ifaces`: the engine's interfaces (names and MACs) in slot order, so a VLAN port's key
    /// is `vlan_port_key(its interface's index, vid)`; `nexthops`: the config's next hops, of
    /// which those on VLAN ports count.
    pub fn new(
        config: &Config,
        ifaces: &[(String, [u8; 6])],
        nexthops: &[NextHop],
        pins: [PathBuf; 2],
    ) -> VlanHosts {
        let ports: Vec<VlanHost> = config
            .ports
            .iter()
            .filter_map(|p| {
                let vid = p.vlan?;
                let iface = ifaces.iter().position(|(name, _)| *name == p.name)?;
                let key = hutong_common::vlan_port_key(iface as u16, vid);
                Some(VlanHost { key, iface, vid, mac: ifaces[iface].1, addrs: p.addresses.clone() })
            })
            .collect();
        let nexthops = nexthops.iter().filter(|(k, _)| ports.iter().any(|p| p.key == *k)).copied().collect();
        VlanHosts { ports, nexthops, learned: HashMap::new(), asked: HashMap::new(), pins }
    }

    /// A frame the engine handed to the host stack, from engine interface `iface`: if it came
    /// tagged on a VLAN port and is ARP or NDP meant for it, learns the neighbor it tells of.
    /// (The host stack answers it: `dataplane::host::HostStack`.)
    pub fn heard(&mut self, engine: &mut Engine, iface: usize, frame: &[u8]) {
        let Some(vid) = frame.get(14..16).map(|t| u16::from_be_bytes([t[0], t[1]]) & 0x0fff) else { return };
        let Some(p) = self.ports.iter().find(|p| p.iface == iface && p.vid == vid) else { return };
        if let Some((addr, mac)) = host::learned(frame, &p.addrs) {
            let key = p.key;
            self.learn(engine, key, addr, mac);
        }
    }

    /// Asks for `addr` on the VLAN port with key `key` (a miss of the program's), unless it was
    /// asked for lately: the frame to send, and the engine interface to send it from.
    pub fn ask(&mut self, key: u32, addr: IpAddr) -> Option<(usize, Vec<u8>)> {
        self.ask_at(key, addr, Instant::now())
    }

    fn ask_at(&mut self, key: u32, addr: IpAddr, now: Instant) -> Option<(usize, Vec<u8>)> {
        let p = self.ports.iter().find(|p| p.key == key)?;
        if self.asked.get(&(key, addr)).is_some_and(|t| now.duration_since(*t) < ASK_HOLDOFF) {
            return None;
        }
        let frame = host::solicit(p.vid, p.mac, &p.addrs, addr)?;
        self.asked.insert((key, addr), now);
        Some((p.iface, frame))
    }

    /// The same for a miss of the slow path's engine (its interface and VLAN).
    pub fn ask_engine(&mut self, iface: usize, vid: u16, addr: IpAddr) -> Option<(usize, Vec<u8>)> {
        let key = self.ports.iter().find(|p| p.iface == iface && p.vid == vid)?.key;
        self.ask(key, addr)
    }

    /// Requests for the configured next hops not learned yet, and for learned neighbors gone
    /// quiet; those quiet too long are forgotten (taken from the program's tables, which the
    /// slow path's engine follows).
    pub fn tick(&mut self) -> Vec<(usize, Vec<u8>)> {
        self.tick_at(Instant::now())
    }

    fn tick_at(&mut self, now: Instant) -> Vec<(usize, Vec<u8>)> {
        let quiet = |t: &Instant| now.saturating_duration_since(*t);
        let gone: Vec<NextHop> =
            self.learned.iter().filter(|(_, (_, t))| quiet(t) >= REFRESH + FORGET).map(|(k, _)| *k).collect();
        for key in gone {
            self.learned.remove(&key);
            self.unlearn(key);
        }
        let mut wanted: Vec<NextHop> =
            self.nexthops.iter().filter(|n| !self.learned.contains_key(n)).copied().collect();
        wanted.extend(self.learned.iter().filter(|(_, (_, t))| quiet(t) >= REFRESH).map(|(k, _)| *k));
        self.asked.retain(|_, t| now.saturating_duration_since(*t) < ASK_HOLDOFF * 4);
        wanted.into_iter().filter_map(|(k, a)| self.ask_at(k, a, now)).collect()
    }

    /// Whether `addr` is a known neighbor on the VLAN port with key `key`.
    pub fn knows(&self, key: u32, addr: IpAddr) -> bool {
        self.learned.contains_key(&(key, addr))
    }

    fn learn(&mut self, engine: &mut Engine, key: u32, addr: IpAddr, mac: [u8; 6]) {
        let Some(p) = self.ports.iter().find(|p| p.key == key) else { return };
        engine.set_neighbor(p.iface, Some(p.vid), addr, mac);
        if self.learned.insert((key, addr), (mac, Instant::now())).is_some_and(|(m, _)| m == mac) {
            return;
        }
        log::info!("neighbor {addr} is {mac:02x?} (VLAN {} of interface {})", p.vid, p.iface);
        let value = Neigh { mac, _pad: [0; 2] };
        let written = match addr {
            IpAddr::V4(a) => open(&self.pins[0]).and_then(|mut m: BpfHashMap<MapData, NeighKey, Neigh>| {
                m.insert(NeighKey { ifindex: key, addr: a.octets() }, value, 0).ok()
            }),
            IpAddr::V6(a) => open(&self.pins[1]).and_then(|mut m: BpfHashMap<MapData, Neigh6Key, Neigh>| {
                m.insert(Neigh6Key { ifindex: key, addr: a.octets() }, value, 0).ok()
            }),
        };
        if written.is_none() {
            log::warn!("could not give the program neighbor {addr} of VLAN port {key:#x}");
        }
    }
}

impl VlanHosts {
    /// Takes a forgotten neighbor out of the program's tables.
    fn unlearn(&mut self, (key, addr): NextHop) {
        log::info!("neighbor {addr} (VLAN port {key:#x}) went quiet: forgotten");
        match addr {
            IpAddr::V4(a) => {
                if let Some(mut m) = open::<NeighKey, Neigh>(&self.pins[0]) {
                    let _ = m.remove(&NeighKey { ifindex: key, addr: a.octets() });
                }
            }
            IpAddr::V6(a) => {
                if let Some(mut m) = open::<Neigh6Key, Neigh>(&self.pins[1]) {
                    let _ = m.remove(&Neigh6Key { ifindex: key, addr: a.octets() });
                }
            }
        }
    }
}

/// A hash map of the program's, through its pin; `None` if it cannot be opened.
pub(crate) fn open<K: aya::Pod, V: aya::Pod>(pin: &PathBuf) -> Option<BpfHashMap<MapData, K, V>> {
    BpfHashMap::try_from(Map::HashMap(MapData::from_pin(pin).ok()?)).ok()
}

#[cfg(test)]
mod tests {
    use dataplane::engine::Iface;

    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const HOST: [u8; 6] = [2, 0, 0, 0, 0, 9];

    #[test]
    fn quiet_neighbors_are_asked_for_again_and_then_forgotten() {
        let lp = control::load_str(crate::demo::DEMO_PLAN, std::path::Path::new("plan.yaml")).unwrap();
        let mut config = control::compile(&lp, crate::demo::DEMO_GATEWAY).unwrap();
        config.ports[0].vlan = Some(30);
        let ifaces =
            vec![Iface { name: "legacy0".into(), mac: MAC }, Iface { name: "uplink0".into(), mac: [2; 6] }];
        let mut engine = Engine::new(config.clone(), ifaces).unwrap();
        let key = hutong_common::vlan_port_key(0, 30);
        let names = [("legacy0".to_string(), MAC), ("uplink0".to_string(), [2; 6])];
        // No pins here: the program's tables are not written (a warning says so).
        let none = PathBuf::from("/nonexistent");
        let mut hosts = VlanHosts::new(&config, &names, &[], [none.clone(), none]);
        let host: IpAddr = "10.20.0.9".parse().unwrap();
        let ask = host::solicit(30, HOST, &["10.20.0.9/24".parse().unwrap()], "10.20.0.1".parse().unwrap())
            .unwrap();
        hosts.heard(&mut engine, 0, &ask);
        assert!(hosts.knows(key, host));
        let t0 = Instant::now();
        assert!(hosts.tick_at(t0 + Duration::from_secs(30)).is_empty(), "recently heard");
        let asks = hosts.tick_at(t0 + REFRESH + Duration::from_secs(1));
        assert_eq!(asks.len(), 1, "asked for again");
        assert_eq!(&asks[0].1[18 + 24..18 + 28], &[10, 20, 0, 9]);
        assert!(hosts.knows(key, host));
        hosts.tick_at(t0 + REFRESH + FORGET + Duration::from_secs(1));
        assert!(!hosts.knows(key, host), "forgotten after no answer");
    }
}
