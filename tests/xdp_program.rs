//! The XDP program on hand-built frames through BPF_PROG_TEST_RUN, with the demo plan's compiled
//! tables. Expected frames are built independently with etherparse (full checksum computation),
//! so the program's incremental checksum arithmetic is checked against a separate oracle.

mod common;

use dataplane::{
    Counters, Drop, Stat,
    xdp::{
        TestOutcome, XdpEngine, action,
        tables::{self, PortHandle},
    },
};
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, PacketBuilder};
use hutong::lab::Netns;
use hutong_common::{Neigh, NeighKey};

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x0a];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x19, 0x02];
const HOST: [u8; 4] = [10, 20, 0, 10];
const HOST_PLAN: [u8; 4] = [198, 18, 20, 10];
const SERVER: [u8; 4] = [198, 19, 0, 2];

struct Rig {
    ns: Netns,
    engine: XdpEngine,
    legacy: PortHandle,
    uplink: PortHandle,
}

impl Rig {
    /// A namespace with the gateway's two ports (a veth pair), the demo tables loaded, and the
    /// legacy host and the server as known neighbors.
    fn new() -> Rig {
        Rig::with(common::demo_config())
    }

    /// The same with another config of the demo's two ports.
    fn with(config: dataplane::Config) -> Rig {
        common::require_root("xdp_program");
        let (ns, legacy, uplink) = common::veth_pair("xdp");
        let t = tables::build(&config, |n| match n {
            "legacy0" => Some(legacy),
            "uplink0" => Some(uplink),
            _ => None,
        })
        .unwrap();
        let mut engine = XdpEngine::load().expect("the verifier accepts the program");
        engine.install(&t).unwrap();
        {
            let mut neigh = engine.neighbor_table().unwrap();
            let known = [(uplink.ifindex, SERVER, SERVER_MAC), (legacy.ifindex, HOST, HOST_MAC)];
            for (ifindex, addr, mac) in known {
                neigh.insert(NeighKey { ifindex, addr }, Neigh { mac, _pad: [0; 2] }, 0).unwrap();
            }
        }
        Rig { ns, engine, legacy, uplink }
    }

    fn run(&mut self, frame: &[u8], ingress: u32) -> TestOutcome {
        let engine = &mut self.engine;
        self.ns.run(|| engine.test_run(frame, ingress)).unwrap().unwrap()
    }

    fn counters(&self) -> Counters {
        self.engine.counters().unwrap()
    }

    /// Runs a frame that must go to the slow path (the userspace engine, through AF_XDP), which
    /// with no socket attached falls back to the host stack: PASS, unmodified, counted.
    fn expect_slow_path(&mut self, frame: &[u8], ingress: u32) {
        let before = self.counters().stat(Stat::SlowPath);
        let out = self.run(frame, ingress);
        assert_eq!(out.action, action::PASS, "the slow path falls back to PASS without a socket");
        assert_eq!(self.counters().stat(Stat::SlowPath), before + 1, "slow_path did not move");
        assert_eq!(out.frame, frame, "the slow path gets the frame unmodified");
    }

    /// Runs a frame that must be dropped for `reason`, checking the counter moved by one.
    fn expect_drop(&mut self, frame: &[u8], ingress: u32, reason: Drop) {
        let before = self.counters().drop(reason);
        let out = self.run(frame, ingress);
        assert_eq!(out.action, action::DROP, "expected a drop for {}", reason.name());
        assert_eq!(self.counters().drop(reason), before + 1, "drop_{} did not move", reason.name());
        assert_eq!(out.frame, frame, "a dropped frame must be left unmodified");
    }
}

/// Asserts byte equality, naming the first differing offset.
fn assert_frame_eq(got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "frames differ at byte {at} (got {} bytes, want {}):\n got  {:02x?}\n want {:02x?}",
            got.len(),
            want.len(),
            &got[at.saturating_sub(4)..got.len().min(at + 12)],
            &want[at.saturating_sub(4)..want.len().min(at + 12)]
        );
    }
}

fn udp(eth: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, dst, ttl).udp(40000, 53);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn udp_from_legacy_is_netmapped_routed_and_rewritten() {
    let mut r = Rig::new();
    let input = udp((HOST_MAC, r.legacy.mac), HOST, SERVER, 64, b"query");
    let want = udp((r.uplink.mac, SERVER_MAC), HOST_PLAN, SERVER, 63, b"query");
    let before = r.counters().stat(Stat::Forwarded);
    let out = r.run(&input, r.legacy.ifindex);
    assert_eq!(out.action, action::REDIRECT);
    assert_frame_eq(&out.frame, &want);
    assert_eq!(r.counters().stat(Stat::Forwarded), before + 1);
}

#[test]
fn tcp_from_extranet_is_translated_back_to_the_legacy_host() {
    let mut r = Rig::new();
    let build = |eth: ([u8; 6], [u8; 6]), dst: [u8; 4], ttl: u8| {
        let b = PacketBuilder::ethernet2(eth.0, eth.1)
            .ipv4(SERVER, dst, ttl)
            .tcp(443, 40000, 7, 64240)
            .syn()
            .ack(99);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v
    };
    let input = build((SERVER_MAC, r.uplink.mac), HOST_PLAN, 20);
    let want = build((r.legacy.mac, HOST_MAC), HOST, 19);
    let out = r.run(&input, r.uplink.ifindex);
    assert_eq!(out.action, action::REDIRECT);
    assert_frame_eq(&out.frame, &want);
}

#[test]
fn icmp_echo_gets_only_the_ip_header_rewritten() {
    let mut r = Rig::new();
    let build = |eth: ([u8; 6], [u8; 6]), src: [u8; 4], ttl: u8| {
        let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, SERVER, ttl).icmpv4_echo_request(0x1234, 1);
        let mut v = Vec::new();
        b.write(&mut v, &[0xab; 56]).unwrap();
        v
    };
    let out = r.run(&build((HOST_MAC, r.legacy.mac), HOST, 64), r.legacy.ifindex);
    assert_eq!(out.action, action::REDIRECT);
    assert_frame_eq(&out.frame, &build((r.uplink.mac, SERVER_MAC), HOST_PLAN, 63));
}

#[test]
fn udp_without_checksum_keeps_it_zero() {
    let mut r = Rig::new();
    let mut input = udp((HOST_MAC, r.legacy.mac), HOST, SERVER, 64, b"x");
    let mut want = udp((r.uplink.mac, SERVER_MAC), HOST_PLAN, SERVER, 63, b"x");
    for f in [&mut input, &mut want] {
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
    }
    let out = r.run(&input, r.legacy.ifindex);
    assert_frame_eq(&out.frame, &want);
}

/// A frame from a raw IPv4 header (checksum computed by etherparse) and raw payload.
fn raw_ipv4(eth: ([u8; 6], [u8; 6]), ip: &Ipv4Header, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    Ethernet2Header { source: eth.0, destination: eth.1, ether_type: EtherType::IPV4 }.write(&mut v).unwrap();
    ip.write(&mut v).unwrap();
    v.extend_from_slice(payload);
    v
}

#[test]
fn non_first_fragment_follows_the_netmap_without_touching_its_payload() {
    let mut r = Rig::new();
    // Bytes that would be a UDP checksum in a first fragment must stay as they are.
    let payload = [0x11u8; 48];
    let header = |src: [u8; 4], ttl: u8| {
        let mut h = Ipv4Header::new(payload.len() as u16, ttl, IpNumber::UDP, src, SERVER).unwrap();
        h.identification = 0x4242;
        h.more_fragments = true;
        h.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
        h
    };
    let input = raw_ipv4((HOST_MAC, r.legacy.mac), &header(HOST, 64), &payload);
    let want = raw_ipv4((r.uplink.mac, SERVER_MAC), &header(HOST_PLAN, 63), &payload);
    let out = r.run(&input, r.legacy.ifindex);
    assert_eq!(out.action, action::REDIRECT);
    assert_frame_eq(&out.frame, &want);
}

#[test]
fn ipv4_options_move_the_l4_checksum_and_it_is_still_updated() {
    let mut r = Rig::new();
    let build = |eth: ([u8; 6], [u8; 6]), src: [u8; 4], ttl: u8| {
        let mut h = Ipv4Header::new(0, ttl, IpNumber::UDP, src, SERVER).unwrap();
        h.options = [1u8, 1, 1, 0].into(); // NOP, NOP, NOP, end of options
        let b = PacketBuilder::ethernet2(eth.0, eth.1)
            .ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
            .udp(40000, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"with options").unwrap();
        v
    };
    let out = r.run(&build((HOST_MAC, r.legacy.mac), HOST, 64), r.legacy.ifindex);
    assert_eq!(out.action, action::REDIRECT);
    assert_frame_eq(&out.frame, &build((r.uplink.mac, SERVER_MAC), HOST_PLAN, 63));
}

/// Record Route passes the XDP engine unrecorded too, as the userspace engine's
/// `record_route_passes_unrecorded_and_translated` (docs/operations.md, "IP options").
#[test]
fn record_route_passes_unrecorded() {
    let mut r = Rig::new();
    let build = |eth: ([u8; 6], [u8; 6]), src: [u8; 4], ttl: u8| {
        let mut h = Ipv4Header::new(0, ttl, IpNumber::UDP, src, SERVER).unwrap();
        h.options = etherparse::Ipv4Options::try_from(&[7u8, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]).unwrap();
        let b = PacketBuilder::ethernet2(eth.0, eth.1)
            .ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
            .udp(40000, 53);
        let mut v = Vec::new();
        b.write(&mut v, b"record route").unwrap();
        v
    };
    let out = r.run(&build((HOST_MAC, r.legacy.mac), HOST, 64), r.legacy.ifindex);
    assert_eq!(out.action, action::REDIRECT);
    assert_frame_eq(&out.frame, &build((r.uplink.mac, SERVER_MAC), HOST_PLAN, 63));
}

#[test]
fn unmapped_source_is_dropped_and_counted() {
    let mut r = Rig::new();
    let f = udp((HOST_MAC, r.legacy.mac), [10, 20, 1, 10], SERVER, 64, b"no");
    r.expect_drop(&f, r.legacy.ifindex, Drop::NoTranslation);
    // From the extranet, an address outside the published block is refused too.
    let f = udp((SERVER_MAC, r.uplink.mac), SERVER, [198, 18, 21, 10], 64, b"no");
    r.expect_drop(&f, r.uplink.ifindex, Drop::NoTranslation);
}

#[test]
fn expiring_ttl_and_ipv6_extension_headers_go_to_the_slow_path() {
    let mut r = Rig::new();
    // Time exceeded is generated (and rate-limited) by the userspace engine.
    let f = udp((HOST_MAC, r.legacy.mac), HOST, SERVER, 1, b"ttl");
    r.expect_slow_path(&f, r.legacy.ifindex);
    let mac = r.legacy.mac;
    let v6 = |hop_limit: u8| {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(HOST_MAC, mac)
            .ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
                [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                hop_limit,
            )
            .udp(1, 2)
            .write(&mut v, b"v6")
            .unwrap();
        v
    };
    r.expect_slow_path(&v6(1), r.legacy.ifindex);
    // A hop-by-hop header (PadN) in front of UDP: the slow path walks extension headers.
    let mut ext = v6(64);
    ext[20] = 0; // next header: hop-by-hop
    let len = u16::from_be_bytes([ext[18], ext[19]]) + 8;
    ext[18..20].copy_from_slice(&len.to_be_bytes());
    ext.splice(54..54, [17, 0, 1, 4, 0, 0, 0, 0]);
    r.expect_slow_path(&ext, r.legacy.ifindex);
}

#[test]
fn malformed_and_foreign_frames_are_dropped_and_counted() {
    let mut r = Rig::new();
    let good = udp((HOST_MAC, r.legacy.mac), HOST, SERVER, 64, b"abc");
    // Truncated inside the IPv4 header.
    r.expect_drop(&good[..30], r.legacy.ifindex, Drop::Malformed);
    // Total length claims more than the frame holds.
    let mut long = good.clone();
    long[16] = 0x05;
    r.expect_drop(&long, r.legacy.ifindex, Drop::Malformed);
    // IHL below 5.
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    r.expect_drop(&ihl, r.legacy.ifindex, Drop::Malformed);
    // An EtherType the gateway does not know.
    let mut lldp = good.clone();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    r.expect_drop(&lldp, r.legacy.ifindex, Drop::UnsupportedProtocol);
    // A TCP header claiming fewer than 20 bytes.
    let mut tcp = PacketBuilder::ethernet2(HOST_MAC, r.legacy.mac).ipv4(HOST, SERVER, 64).tcp(1, 2, 3, 4);
    let mut t = Vec::new();
    tcp = tcp.syn();
    tcp.write(&mut t, b"").unwrap();
    t[14 + 20 + 12] = 0x40;
    r.expect_drop(&t, r.legacy.ifindex, Drop::Malformed);
    // An Ethernet header announcing IPv4 and nothing after it. (BPF_PROG_TEST_RUN itself refuses
    // frames shorter than an Ethernet header, as no NIC delivers them.)
    r.expect_drop(&good[..14], r.legacy.ifindex, Drop::Malformed);
}

#[test]
fn a_port_outside_the_config_drops_everything() {
    let mut r = Rig::new();
    let f = udp((HOST_MAC, r.legacy.mac), HOST, SERVER, 64, b"lo");
    r.expect_drop(&f, 1, Drop::UnknownPort); // ifindex 1 is the namespace's loopback
}

/// A packet towards a next hop nobody has resolved yet goes to the slow path, which holds it
/// until the neighbor answers (the kernel's ARP queue does the same), so the first packets
/// towards a new neighbor are not lost. A flood of them is limited per CPU (64 per 10 ms); the
/// rest is dropped and counted as `no_neighbor`.
#[test]
fn unresolved_next_hop_goes_to_the_slow_path_within_a_rate() {
    let mut r = Rig::new();
    // 198.18.20.99 maps to 10.20.0.99, which nobody has resolved.
    let f = udp((SERVER_MAC, r.uplink.mac), SERVER, [198, 18, 20, 99], 64, b"who");
    r.expect_slow_path(&f, r.uplink.ifindex);
    let (slow, dropped) = (r.counters().stat(Stat::SlowPath), r.counters().drop(Drop::NoNeighbor));
    let (ns, ifindex) = (&r.ns, r.uplink.ifindex);
    let engine = &mut r.engine;
    let runs = 5000u64;
    let started = std::time::Instant::now();
    ns.run(|| engine.test_run_repeat(&f, ifindex, runs as u32)).unwrap().unwrap();
    let windows = started.elapsed().as_nanos() as u64 / 10_000_000 + 2;
    let c = r.counters();
    let (to_slow, to_drop) = (c.stat(Stat::SlowPath) - slow, c.drop(Drop::NoNeighbor) - dropped);
    assert_eq!(to_slow + to_drop, runs, "every run went one way or the other");
    assert!(to_slow <= 64 * windows, "{to_slow} to the slow path in at most {windows} windows of 10 ms");
}

#[test]
fn traffic_for_the_gateway_itself_and_arp_go_to_the_host_stack() {
    let mut r = Rig::new();
    let to_gw = udp((HOST_MAC, r.legacy.mac), HOST, [10, 20, 0, 1], 64, b"me");
    let before = r.counters().stat(Stat::ToHost);
    let out = r.run(&to_gw, r.legacy.ifindex);
    assert_eq!(out.action, action::PASS);
    assert_frame_eq(&out.frame, &to_gw);
    assert_eq!(r.counters().stat(Stat::ToHost), before + 1);
}

/// An ARP request from `mac`/`spa` for `tpa`.
fn arp_request(mac: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut arp = Vec::new();
    Ethernet2Header { source: mac, destination: [0xff; 6], ether_type: EtherType::ARP }
        .write(&mut arp)
        .unwrap();
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&spa);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&tpa);
    arp
}

#[test]
fn arp_for_a_nat_address_goes_to_the_slow_paths_host_stack() {
    // A pool address on the uplink's subnet: the kernel does not hold it.
    let mut r = Rig::with(common::napt_config("198.19.0.100/32"));
    r.expect_slow_path(&arp_request(SERVER_MAC, SERVER, [198, 19, 0, 100]), r.uplink.ifindex);
    // The gateway's own address stays the kernel's, and so does the pool address asked for
    // on the legacy side, where it is no address of the gateway's.
    for (ingress, mac, spa, tpa) in [
        (r.uplink.ifindex, SERVER_MAC, SERVER, [198, 19, 0, 1]),
        (r.legacy.ifindex, HOST_MAC, HOST, [198, 19, 0, 100]),
    ] {
        let before = r.counters().stat(Stat::ToHost);
        let out = r.run(&arp_request(mac, spa, tpa), ingress);
        assert_eq!(out.action, action::PASS, "{tpa:?}");
        assert_eq!(r.counters().stat(Stat::ToHost), before + 1);
    }
}

#[test]
fn arp_for_the_gateway_teaches_the_program_the_senders_mac() {
    let mut r = Rig::new();
    let new_host = [10, 20, 0, 77];
    let new_mac = [0x02, 0, 0, 0, 0x20, 0x4d];
    let arp = arp_request(new_mac, new_host, [10, 20, 0, 1]);
    let out = r.run(&arp, r.legacy.ifindex);
    assert_eq!(out.action, action::PASS, "ARP goes to the host stack, which answers it");
    // The reply towards the new host now finds its MAC.
    let reply = udp((SERVER_MAC, r.uplink.mac), SERVER, [198, 18, 20, 77], 64, b"hi");
    let want = udp((r.legacy.mac, new_mac), SERVER, new_host, 63, b"hi");
    let out = r.run(&reply, r.uplink.ifindex);
    assert_eq!(out.action, action::REDIRECT);
    assert_frame_eq(&out.frame, &want);
}
