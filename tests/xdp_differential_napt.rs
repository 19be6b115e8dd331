//! Established NAT sessions in the XDP program against the userspace engine, packet by packet.
//!
//! The program forwards a session's packets by the flows the slow path wrote after the
//! userspace engine decided the session's first packets (`dataplane::xdp::flows`). Here the two run
//! side by side exactly as in the gateway: each frame goes through the program first
//! (BPF_PROG_TEST_RUN), then through the userspace engine, whose offloads and session events
//! then update the program's `FLOWS` map. Connections of a dynamic and a deterministic (RFC
//! 7422) pool, TCP, UDP and ICMP echo, both directions, with TTL 1, fragments, FIN/RST, IP
//! options, oversized frames, unknown remotes and a fourth remote that makes
//! address-and-port-dependent filtering forget the first. Whatever the program forwards must
//! be byte for byte what the userspace engine forwards; whatever it hands to the slow path must
//! arrive there unmodified.

mod common;

use std::net::Ipv4Addr;

use dataplane::{
    Action, Drop, Rule, Stat,
    buffer::{Packet, Verdict},
    config::{
        NatPool, Service,
        nat::{Filtering, PoolMode},
    },
    engine::{Engine, Iface},
    xdp::{XdpEngine, action, flows::FlowCache, tables},
};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use hutong_common::{Neigh, NeighKey};
use rand::{Rng, SeedableRng, rngs::SmallRng};

const REMOTES: [[u8; 4]; 5] =
    [[198, 19, 0, 2], [198, 19, 0, 3], [198, 19, 0, 4], [198, 19, 0, 5], [198, 19, 0, 6]];

/// The published service: its plan address, and the legacy host behind it.
const PORTAL: [u8; 4] = [198, 18, 32, 80];
const PORTAL_HOST: u8 = 200;

fn remote_mac(r: [u8; 4]) -> [u8; 6] {
    [2, 0, 0, 0, 0x19, r[3]]
}

fn host_mac(h: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0x20, h]
}

/// The demo site with NAPT instead of netmaps: hosts .2-.127 through a dynamic pool with
/// address-and-port-dependent filtering, .128-.255 through a deterministic one.
fn config() -> dataplane::Config {
    let mut c = common::demo_config();
    c.netmaps.clear();
    let dynamic = NatPool {
        filtering: Filtering::AddressAndPortDependent,
        ..NatPool::defaults("dyn".into(), 1, 0, vec!["198.18.30.0/31".parse().unwrap()])
    };
    let det = NatPool {
        mode: PoolMode::Deterministic { inside: "10.20.0.128/25".parse().unwrap() },
        ..NatPool::defaults("det".into(), 1, 0, vec!["198.18.31.0/30".parse().unwrap()])
    };
    c.nat_pools = vec![dynamic, det];
    let rule = |name: &str, src: &str, pool: &str| Rule {
        name: name.into(),
        vrf: 1,
        src: Some(src.parse().unwrap()),
        dst: None,
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Napt { pool: pool.into() },
    };
    c.policies = vec![rule("dyn", "10.20.0.0/25", "dyn"), rule("det", "10.20.0.128/25", "det")];
    // A legacy service published on the extranet, TCP and UDP.
    for (proto, outside_port, inside_port) in [(6, 80, 8080), (17, 53, 5353)] {
        c.services.push(Service {
            name: format!("portal-{proto}"),
            proto,
            outside_vrf: 0,
            outside: PORTAL.into(),
            outside_port,
            inside_vrf: 1,
            inside: [10, 20, 0, PORTAL_HOST].into(),
            inside_port,
        });
    }
    c.policies.push(Rule {
        name: "portal-in".into(),
        vrf: 0,
        src: None,
        dst: Some("198.18.32.80/32".parse().unwrap()),
        proto: None,
        src_ports: None,
        dst_ports: None,
        action: Action::Dnat,
    });
    // The outside VRF scans its rules in the program (only NAT addresses and DNAT hits go slow).
    c.policies.push(Rule {
        name: "no-telnet-in".into(),
        vrf: 0,
        src: None,
        dst: None,
        proto: Some(6),
        src_ports: None,
        dst_ports: Some(dataplane::PortRange { first: 23, last: 23 }),
        action: Action::Deny,
    });
    c.validate().unwrap();
    c
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
}

/// One connection: inside host and port (ICMP: identifier) to a remote; `mapped` is the
/// outside address and port once the userspace engine created the session.
#[derive(Clone)]
struct Conn {
    host: u8,
    sport: u16,
    remote: [u8; 4],
    dport: u16,
    proto: Proto,
    mapped: Option<([u8; 4], u16)>,
}

#[derive(Clone, Copy)]
enum Tweak {
    None,
    Ttl1,
    FirstFragment,
    Options,
    Oversized,
    NoUdpChecksum,
}

struct Frame {
    what: String,
    iface: usize,
    bytes: Vec<u8>,
}

fn frame(
    c: &Conn,
    outbound: bool,
    tcp_flags: u8,
    tweak: Tweak,
    rng: &mut SmallRng,
    gw: [[u8; 6]; 2],
) -> Frame {
    let host = [10, 20, 0, c.host];
    let (mapped, mport) = c.mapped.unwrap_or(([0; 4], 0));
    let (eth, src, dst, sp, dp, iface) = if outbound {
        ((host_mac(c.host), gw[0]), host, c.remote, c.sport, c.dport, 0)
    } else {
        ((remote_mac(c.remote), gw[1]), c.remote, mapped, c.dport, mport, 1)
    };
    let ttl = if matches!(tweak, Tweak::Ttl1) { 1 } else { rng.random_range(2..=255) };
    let len = if matches!(tweak, Tweak::Oversized) { 1600 } else { rng.random_range(0..200) };
    let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(src, dst, ttl);
    let mut v = Vec::new();
    match c.proto {
        Proto::Tcp => {
            let mut t = b.tcp(sp, dp, rng.random(), 1000).ack(rng.random());
            if tcp_flags & 0x02 != 0 {
                t = t.syn();
            }
            if tcp_flags & 0x01 != 0 {
                t = t.fin();
            }
            if tcp_flags & 0x04 != 0 {
                t = t.rst();
            }
            if tcp_flags & 0x08 != 0 {
                t = t.psh();
            }
            t.write(&mut v, &payload).unwrap();
        }
        Proto::Udp => b.udp(sp, dp).write(&mut v, &payload).unwrap(),
        // An echo request goes out with the inside identifier; the reply comes back to the mapped one.
        Proto::Icmp if outbound => b.icmpv4_echo_request(sp, rng.random()).write(&mut v, &payload).unwrap(),
        Proto::Icmp => b.icmpv4_echo_reply(mport, rng.random()).write(&mut v, &payload).unwrap(),
    }
    match tweak {
        Tweak::NoUdpChecksum if c.proto == Proto::Udp => {
            v[40] = 0;
            v[41] = 0;
        }
        Tweak::FirstFragment => set_ip_word(&mut v, 20, 0x2000), // more fragments, offset 0
        Tweak::Options => v = with_options(&v),
        _ => {}
    }
    Frame {
        what: format!(
            "{:?} {} flags {tcp_flags:#x} {}",
            c.proto,
            if outbound { "out" } else { "in" },
            tweak_name(tweak)
        ),
        iface,
        bytes: v,
    }
}

fn tweak_name(t: Tweak) -> &'static str {
    match t {
        Tweak::None => "",
        Tweak::Ttl1 => "TTL 1",
        Tweak::FirstFragment => "first fragment",
        Tweak::Options => "IP options",
        Tweak::Oversized => "oversized",
        Tweak::NoUdpChecksum => "no UDP checksum",
    }
}

/// Sets the IPv4 flags/fragment word, fixing the header checksum.
fn set_ip_word(f: &mut [u8], at: usize, value: u16) {
    f[at..at + 2].copy_from_slice(&value.to_be_bytes());
    fix_ip_checksum(f);
}

fn fix_ip_checksum(f: &mut [u8]) {
    let ihl = ((f[14] & 0x0f) as usize) * 4;
    f[24] = 0;
    f[25] = 0;
    let mut sum: u32 = 0;
    for w in f[14..14 + ihl].chunks(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// The same packet with four bytes of IP options (NOPs and an end), lengths and checksum fixed.
fn with_options(f: &[u8]) -> Vec<u8> {
    let mut v = [&f[..34], &[1u8, 1, 1, 0][..], &f[34..]].concat();
    v[14] = 0x46;
    let total = u16::from_be_bytes([v[16], v[17]]) + 4;
    v[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut v);
    v
}

/// The outside address and port (ICMP: identifier) the userspace engine gave an outbound frame.
fn mapping_of(out: &[u8]) -> ([u8; 4], u16) {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4") };
    let port = match p.transport {
        Some(TransportSlice::Tcp(t)) => t.source_port(),
        Some(TransportSlice::Udp(u)) => u.source_port(),
        Some(TransportSlice::Icmpv4(i)) => u16::from_be_bytes([i.slice()[4], i.slice()[5]]),
        _ => panic!("no transport"),
    };
    (ip.header().source(), port)
}

#[test]
fn established_sessions_in_the_program_match_the_userspace_engine() {
    common::require_root("xdp_differential_napt");
    let (ns, legacy, uplink) = common::veth_pair("dnat");
    let config = config();
    let t = tables::build(&config, |n| match n {
        "legacy0" => Some(legacy),
        "uplink0" => Some(uplink),
        _ => None,
    })
    .unwrap();
    // The pool's inside is the slow path's; its outside scans its rules, and sends packets to
    // NAT addresses and the service's DNAT rule to the slow path.
    assert!(t.slow.vrfs.contains_key(&1) && !t.slow.vrfs.contains_key(&0), "{:?}", t.slow);
    assert!(!t.nat_out.is_empty());
    let mut xdp = XdpEngine::load().unwrap();
    let epoch = xdp.install(&t).unwrap();
    let mut flows_map = xdp.take_flows().unwrap();
    let ifaces = vec![
        Iface { name: "legacy0".into(), mac: legacy.mac },
        Iface { name: "uplink0".into(), mac: uplink.mac },
    ];
    let mut user = Engine::new(config, ifaces).unwrap();
    user.track_offloads();
    let mut cache = FlowCache::new(&mut flows_map, epoch, user.generation());
    {
        let mut n = xdp.neighbor_table().unwrap();
        for r in REMOTES {
            n.insert(
                NeighKey { ifindex: uplink.ifindex, addr: r },
                Neigh { mac: remote_mac(r), _pad: [0; 2] },
                0,
            )
            .unwrap();
            user.set_neighbor(1, None, Ipv4Addr::from(r).into(), remote_mac(r));
        }
        for h in 2..=254u8 {
            let a = [10, 20, 0, h];
            n.insert(
                NeighKey { ifindex: legacy.ifindex, addr: a },
                Neigh { mac: host_mac(h), _pad: [0; 2] },
                0,
            )
            .unwrap();
            user.set_neighbor(0, None, Ipv4Addr::from(a).into(), host_mac(h));
        }
    }
    let ifindex = [legacy.ifindex, uplink.ifindex];
    let gw = [legacy.mac, uplink.mac];
    let mut rng = SmallRng::seed_from_u64(20_261_128);
    let mut clock_ns: u64 = 1_000_000_000;
    let mut tally = Tally::default();
    let mut expected_hits = vec![0u64; 4];

    // Runs one frame through both engines and compares; returns the userspace engine's output.
    let mut run = |f: &Frame, tally: &mut Tally| -> Packet {
        let before = xdp.counters().unwrap();
        let out = ns.run(|| xdp.test_run(&f.bytes, ifindex[f.iface])).unwrap().unwrap();
        let after = xdp.counters().unwrap();
        let moved_drop = Drop::ALL.iter().find(|d| after.drop(**d) > before.drop(**d)).copied();
        let moved = |s: Stat| after.stat(s) > before.stat(s);
        clock_ns += 1_000_000;
        let mut batch = [Packet::new(f.iface, &f.bytes)];
        let hits_before = user.counters.rule_hits.values.clone();
        user.process(&mut batch, clock_ns);
        let hits_after = user.counters.rule_hits.values.clone();
        let events = user.nat_mut().take_events();
        let offloads = user.take_offloads();
        cache.follow(&mut flows_map, user.generation(), epoch, &events, &offloads, |i| {
            ifindex.get(i).copied()
        });
        let [want] = batch;
        let n = tally.total;
        tally.total += 1;
        let fail = |why: &str| -> ! {
            let (a, b) = (&out.frame, want.frame());
            let first = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            panic!(
                "frame {n} ({}): {why}\n  xdp: action {} drop {moved_drop:?} ({} bytes)\n  userspace: {:?} ({} bytes)\n  \
                 first differing byte: {first}\n  input: {:02x?}\n  xdp out: {:02x?}\n  user out: {:02x?}",
                f.what,
                out.action,
                a.len(),
                want.verdict,
                b.len(),
                f.bytes,
                a,
                b
            )
        };
        if moved(Stat::SlowPath) {
            if out.action != action::PASS || out.frame != f.bytes {
                fail("a slow-path frame must reach the slow path unmodified");
            }
            tally.slow += 1;
            return want;
        }
        // The program decided this frame: the rule hits the userspace engine counted for it are
        // the ones the program must have counted too.
        for (e, (a, b)) in expected_hits.iter_mut().zip(hits_after.iter().zip(&hits_before)) {
            *e += a - b;
        }
        match (out.action, want.verdict) {
            (action::REDIRECT, Verdict::Forward { .. }) if out.frame == want.frame() => {
                if !moved(Stat::FlowHit) {
                    fail("a NAPT VRF's packet was forwarded without a flow");
                }
                tally.flow_hits += 1;
            }
            (action::REDIRECT, Verdict::Forward { .. }) => fail("forwarded frames differ"),
            (action::DROP, Verdict::Drop(reason)) if moved_drop == Some(reason) => tally.dropped += 1,
            _ => fail("different verdicts"),
        }
        want
    };

    // 60 connections, a third each TCP, UDP and ICMP echo, half in each pool.
    let mut services = Vec::new();
    let mut conns: Vec<Conn> = (0..60)
        .map(|i| Conn {
            host: if i % 2 == 0 { 2 + i as u8 } else { 130 + i as u8 },
            sport: rng.random_range(1024..60000),
            remote: REMOTES[i % 4],
            dport: [80, 53, 443, 8080][i % 4],
            proto: [Proto::Tcp, Proto::Udp, Proto::Icmp][i % 3],
            mapped: None,
        })
        .collect();
    // Connections to the published service, opened from the extranet.
    for i in 0..8 {
        let tcp = i % 2 == 0;
        let c = Conn {
            host: PORTAL_HOST,
            sport: if tcp { 8080 } else { 5353 },
            remote: REMOTES[i % 4],
            dport: rng.random_range(1024..60000),
            proto: if tcp { Proto::Tcp } else { Proto::Udp },
            mapped: Some((PORTAL, if tcp { 80 } else { 53 })),
        };
        let syn = if tcp { 0x02 } else { 0 };
        let answer = run(&frame(&c, false, syn, Tweak::None, &mut rng, gw), &mut tally);
        assert!(
            matches!(answer.verdict, Verdict::Forward { iface: 0 }),
            "{:?} into the service",
            answer.verdict
        );
        run(&frame(&c, true, syn, Tweak::None, &mut rng, gw), &mut tally);
        services.push(c);
    }
    // Open: the first packet out creates the session (SYN for TCP), the first answer comes back.
    for c in &mut conns {
        let syn = if c.proto == Proto::Tcp { 0x02 } else { 0 };
        let out = run(&frame(c, true, syn, Tweak::None, &mut rng, gw), &mut tally);
        assert!(matches!(out.verdict, Verdict::Forward { .. }), "{:?} opening {:?}", out.verdict, c.proto);
        c.mapped = Some(mapping_of(out.frame()));
        let synack = if c.proto == Proto::Tcp { 0x02 } else { 0 };
        run(&frame(c, false, synack, Tweak::None, &mut rng, gw), &mut tally);
    }
    conns.append(&mut services);
    // Established traffic, both ways, with the odd special frame.
    let tweaks = [
        Tweak::None,
        Tweak::None,
        Tweak::None,
        Tweak::None,
        Tweak::Ttl1,
        Tweak::FirstFragment,
        Tweak::Options,
        Tweak::Oversized,
        Tweak::NoUdpChecksum,
    ];
    for _ in 0..900 {
        let c = &conns[rng.random_range(0..conns.len())];
        let tweak = tweaks[rng.random_range(0..tweaks.len())];
        let flags = if c.proto == Proto::Tcp { [0x00, 0x08, 0x08, 0x08][rng.random_range(0..4)] } else { 0 };
        run(&frame(c, rng.random_bool(0.5), flags, tweak, &mut rng, gw), &mut tally);
    }
    // A remote nobody talked to: no flow, and the engine filters it.
    let stranger = Conn { remote: REMOTES[4], ..conns[1].clone() };
    let before = tally.slow;
    run(&frame(&stranger, false, 0, Tweak::None, &mut rng, gw), &mut tally);
    assert_eq!(tally.slow, before + 1, "an unknown remote must go to the slow path");
    // Three more remotes from one dynamic-pool mapping: filtering forgets the first remote, and
    // its flows must go, both ways; its next answer is the slow path's (and filtered there).
    let first = conns[4].clone(); // UDP, dynamic pool
    assert_eq!(first.proto, Proto::Udp);
    for r in [[198, 19, 0, 3], [198, 19, 0, 5], [198, 19, 0, 6]] {
        let other = Conn { remote: r, ..first.clone() };
        run(&frame(&other, true, 0, Tweak::None, &mut rng, gw), &mut tally);
    }
    let before = tally.slow;
    let answer = run(&frame(&first, false, 0, Tweak::None, &mut rng, gw), &mut tally);
    assert_eq!(tally.slow, before + 1, "a forgotten remote's flow must be gone");
    assert_eq!(answer.verdict, Verdict::Drop(Drop::Filtered));
    // Closing: FIN and RST are the slow path's; the engine keeps the TCP state.
    for c in conns.iter().filter(|c| c.proto == Proto::Tcp) {
        let before = tally.slow;
        run(&frame(c, true, 0x01, Tweak::None, &mut rng, gw), &mut tally);
        run(&frame(c, false, 0x04, Tweak::None, &mut rng, gw), &mut tally);
        assert_eq!(tally.slow, before + 2, "FIN and RST go to the slow path");
    }

    // The outside VRF's other traffic is the program's: to addresses no pool or service owns it
    // scans the rules (a deny, then the default deny); to a pool address without a flow, the
    // slow path.
    let (dropped, slow) = (tally.dropped, tally.slow);
    for i in 0..40u8 {
        let to = if i % 4 == 3 { [198, 18, 30, 1] } else { [198, 18, 99, i] };
        let dport = if i % 2 == 0 { 23 } else { 9 };
        let mut bytes = Vec::new();
        PacketBuilder::ethernet2(remote_mac(REMOTES[0]), gw[1])
            .ipv4(REMOTES[0], to, 64)
            .tcp(40000 + i as u16, dport, 1, 1000)
            .ack(1)
            .write(&mut bytes, b"x")
            .unwrap();
        run(&Frame { what: format!("outside to {to:?}:{dport}"), iface: 1, bytes }, &mut tally);
    }
    assert_eq!((tally.dropped - dropped, tally.slow - slow), (30, 10), "decided by the program, and not");
    eprintln!(
        "differential_napt: {} frames identical: {} forwarded by flows in the program, {} dropped, {} to the slow path; \
         {} flows in the map",
        tally.total,
        tally.flow_hits,
        tally.dropped,
        tally.slow,
        cache.stats().active
    );
    assert!(tally.total >= 1000, "{} frames", tally.total);
    assert!(tally.flow_hits > 400, "most established traffic must stay in the program: {}", tally.flow_hits);
    // Rule hits: the program counted the service's rule for the packets it forwarded by flows.
    let program_hits = xdp.rule_hits(4).unwrap();
    eprintln!(
        "differential_napt: rule hits {program_hits:?} (program), {expected_hits:?} (userspace, same frames)"
    );
    assert_eq!(program_hits, expected_hits);
    assert!(program_hits[2] > 20, "the service's traffic was counted: {program_hits:?}");
}

#[derive(Default)]
struct Tally {
    total: usize,
    flow_hits: usize,
    dropped: usize,
    slow: usize,
}
