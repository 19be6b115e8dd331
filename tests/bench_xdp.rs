//! The acceptance bench's instruments (`hutong::bench::instruments`), for real in a namespace: the
//! live-frames generator sends frames over 1,000 flows into a counting sink, directly and through
//! the raw XDP ceiling (a redirect from one veth to another), and the sink tells frames with the
//! expected addresses from the rest; paced and stamped runs; the responder of session capacity
//! learns each tagged flow's source and replies to exactly that. The harness around them is
//! `hutong bench` (tests/bench_smoke.rs, tests/bench_capacity.rs).

mod common;

use etherparse::PacketBuilder;
use hutong::bench::instruments::{Ceiling, Generator, Pace, Responder, Sink};
use hutong_common::bench::{GEN_HEADER, GenConfig, SinkExpect};

const FRAMES: u32 = 200_000;

/// A 60-byte UDP frame's header (10.20.0.1:1024 → 198.19.0.2:9), as the generator's template.
fn template() -> [u8; GEN_HEADER] {
    header(([10, 20, 0, 1], 1024), ([198, 19, 0, 2], 9))
}

/// A 60-byte UDP frame's header from `src` to `dst` (address, port).
fn header(src: ([u8; 4], u16), dst: ([u8; 4], u16)) -> [u8; GEN_HEADER] {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, &[0; 18])
        .unwrap();
    assert_eq!(v.len(), 60);
    v[40] = 0; // no UDP checksum: the generator varies the ports without fixing it
    v[41] = 0;
    v[..GEN_HEADER].try_into().unwrap()
}

/// The generator over 1,000 flows (250 hosts × 4 ports), at full rate, unstamped.
fn flows_1000() -> GenConfig {
    GenConfig::new(template(), 1024, 1000, 250)
}

/// Veth pairs in `ns`, up; their ifindexes, pair by pair.
fn veths(rt: &tokio::runtime::Runtime, ns: &hutong::lab::Netns, pairs: &[(&str, &str)]) -> Vec<u32> {
    rt.block_on(async {
        let h = ns.netlink().unwrap();
        let mut out = Vec::new();
        for &(a, b) in pairs {
            h.link().add(rtnetlink::LinkVeth::new(a, b).build()).execute().await.unwrap();
            for name in [a, b] {
                let l = dataplane::netlink::link(&h, name).await.unwrap();
                dataplane::netlink::set_up(&h, l.ifindex).await.unwrap();
                out.push(l.ifindex);
            }
        }
        out
    })
}

fn mask(bits: u32) -> u32 {
    (u32::MAX.checked_shl(32 - bits).unwrap_or(0)).to_be()
}

#[test]
fn the_generator_reaches_the_sink_directly_and_through_the_ceiling() {
    common::require_root("bench_xdp");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = hutong::lab::Netns::create(&format!("{}-bench", hutong::lab::netns::lab_tag())).unwrap();
    let links = veths(&rt, &ns, &[("gen0", "sink0"), ("gen1", "dutin1"), ("dutout1", "sink1")]);
    let [gen0, sink0, gen1, dutin1, dutout1, sink1] = links[..] else { panic!("six links") };
    // From 10.20.0.0/24 (250 hosts) and 4 source ports: 1,000 flows, all to the server.
    let expect = SinkExpect {
        src: u32::from_ne_bytes([10, 20, 0, 0]),
        src_mask: mask(24),
        dst: u32::from_ne_bytes([198, 19, 0, 2]),
        dst_mask: mask(32),
        ..SinkExpect::default()
    };
    let config = flows_1000();
    let results = ns
        .run(|| {
            let direct = Sink::attach(sink0, expect).unwrap();
            let mut generator = Generator::load(config).unwrap();
            let took = generator.send(gen0, 60, Pace::full(FRAMES.into())).unwrap().took;
            let direct = direct.counters().unwrap();
            // Through the ceiling, into a sink that expects other addresses: all counted as wrong.
            let _ceiling = Ceiling::attach(dutin1, dutout1).unwrap();
            let wrong =
                Sink::attach(sink1, SinkExpect { src: u32::from_ne_bytes([198, 18, 20, 0]), ..expect })
                    .unwrap();
            generator.send(gen1, 60, Pace::full(FRAMES.into())).unwrap();
            (took, direct, wrong.counters().unwrap())
        })
        .unwrap();
    let (took, direct, wrong) = results;
    eprintln!(
        "bench_xdp: {FRAMES} frames generated in {took:?} ({:.2} Mpps); sink: {} good, {} wrong; \
         through the ceiling into a sink expecting other sources: {} good, {} wrong",
        FRAMES as f64 / took.as_secs_f64() / 1e6,
        direct.good,
        direct.bad,
        wrong.good,
        wrong.bad
    );
    assert_eq!(direct.bad, 0, "every frame the generator makes has the expected addresses");
    assert!(direct.good >= FRAMES as u64 * 9 / 10, "the sink saw {} of {FRAMES}", direct.good);
    assert_eq!(direct.good_bytes, direct.good * 60);
    assert_eq!(wrong.good, 0, "the sink tells wrong addresses apart");
    assert!(wrong.bad >= FRAMES as u64 * 9 / 10, "the ceiling forwarded {} of {FRAMES}", wrong.bad);
    assert!(wrong.bad <= FRAMES as u64, "only the generator's frames are IPv4 here");
}

#[test]
fn a_paced_run_never_exceeds_its_rate_and_every_stamped_frame_is_timed() {
    common::require_root("bench_xdp");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = hutong::lab::Netns::create(&format!("{}-pace", hutong::lab::netns::lab_tag())).unwrap();
    let [gen0, sink0] = veths(&rt, &ns, &[("gen0", "sink0")])[..] else { panic!("two links") };
    let any = SinkExpect { stamped: 1, ..SinkExpect::default() };
    let config = flows_1000();
    let (offered, full, counters, histogram) = ns
        .run(|| {
            let sink = Sink::attach(sink0, any).unwrap();
            let mut g = Generator::load(config).unwrap();
            let pace = Pace { rate: Some(100_000.0), batch: 16, stamp: true, ..Pace::full(20_000) };
            let offered = g.send(gen0, 60, pace).unwrap();
            // Unstamped at full rate: counted, not timed.
            let full = g.send(gen0, 60, Pace::full(10_000)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            (offered, full, sink.counters().unwrap(), sink.latency().unwrap())
        })
        .unwrap();
    let timed: u64 = histogram.iter().sum();
    eprintln!(
        "bench_xdp: paced at 100k/s: {} frames offered at {:.0}/s; full rate: {} at {:.0}/s; sink: {} good, \
         {timed} timed",
        offered.sent,
        offered.rate(),
        full.sent,
        full.rate(),
        counters.good
    );
    assert_eq!(offered.sent, 20_000);
    assert_eq!(full.sent, 10_000);
    // Frame n leaves no earlier than n intervals after the first: never faster than asked.
    assert!(offered.rate() <= 100_000.0 * 1.0001, "{offered:?}");
    assert!(offered.rate() >= 20_000.0, "pacing far slower than asked: {offered:?}");
    assert_eq!(counters.good, 30_000, "a veth straight into the sink loses nothing");
    assert_eq!(timed, 20_000, "every stamped frame, and only those, is in the histogram");
    assert!(histogram[..8].iter().all(|&n| n == 0), "a veth takes more than 8 ns: {histogram:?}");
}

#[test]
fn the_responder_replies_to_exactly_the_flows_it_learned() {
    common::require_root("bench_xdp");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = hutong::lab::Netns::create(&format!("{}-reply", hutong::lab::netns::lab_tag())).unwrap();
    let [gen0, sink0] = veths(&rt, &ns, &[("gen0", "sink0")])[..] else { panic!("two links") };
    // Flows 0..600 of 1,000 go out tagged; nothing translates them, so each flow's reply goes
    // to the source it was sent from.
    let config = GenConfig { tag: 1, ..flows_1000() };
    let there = SinkExpect {
        src: u32::from_ne_bytes([10, 20, 0, 0]),
        src_mask: mask(24),
        dst: u32::from_ne_bytes([198, 19, 0, 2]),
        dst_mask: mask(32),
        ..SinkExpect::default()
    };
    // The server's replies: from where the flows went, to wherever each was learned from.
    let reply = header(([198, 19, 0, 2], 9), ([0; 4], 0));
    let reply = GenConfig::new(reply, 9, 1000, 1);
    let back = |port| SinkExpect {
        src: u32::from_ne_bytes([198, 19, 0, 2]),
        src_mask: mask(32),
        dst: u32::from_ne_bytes([10, 20, 0, 1]),
        reply_hosts: 250,
        reply_port: port,
        ..SinkExpect::default()
    };
    let (learned, sent, right, wrong) = ns
        .run(|| {
            let mut responder = Responder::attach(sink0, there, 1000, reply).unwrap();
            Generator::load(config).unwrap().send(gen0, 60, Pace::full(600)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            let learned = responder.counters().unwrap();
            // Replies to all 1,000 flows: the 400 never learned are counted, not sent.
            let right = Sink::attach(gen0, back(1024)).unwrap();
            let sent = responder.reply(sink0, 60, Pace::full(1000)).unwrap().sent;
            std::thread::sleep(std::time::Duration::from_millis(50));
            let right = {
                let counted = right.counters().unwrap();
                drop(right); // detached: one XDP program per interface
                counted
            };
            // A sink expecting the flows one port higher finds every reply wrong.
            let wrong = Sink::attach(gen0, back(1025)).unwrap();
            responder.reply(sink0, 60, Pace::full(1000)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            (learned, sent, right, wrong.counters().unwrap())
        })
        .unwrap();
    eprintln!(
        "bench_xdp: learned {learned:?}; {sent} replies counted sent; right {right:?}; wrong {wrong:?}"
    );
    assert_eq!((learned.good, learned.learned, learned.bad), (600, 600, 0));
    assert_eq!(sent, 1000);
    assert_eq!((right.good, right.bad), (600, 0), "one reply per learned flow, each to its own source");
    assert_eq!((wrong.good, wrong.bad), (0, 600));
}

#[test]
fn a_sink_counts_frames_of_an_earlier_run_as_late() {
    common::require_root("bench_xdp");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ns = hutong::lab::Netns::create(&format!("{}-runs", hutong::lab::netns::lab_tag())).unwrap();
    let [gen0, sink0] = veths(&rt, &ns, &[("gen0", "sink0")])[..] else { panic!("two links") };
    let expect = SinkExpect {
        src: u32::from_ne_bytes([10, 20, 0, 0]),
        src_mask: mask(24),
        dst: u32::from_ne_bytes([198, 19, 0, 2]),
        dst_mask: mask(32),
        ..SinkExpect::default()
    };
    let run = |run| SinkExpect { by_run: 1, run, ..expect };
    // 1,000 distinct flows learned however often they arrive: room for them, tagged.
    let config = GenConfig { tag: 1, ..flows_1000() };
    let (late, current, learned) = ns
        .run(|| {
            let mut sink = Sink::learning(sink0, SinkExpect { learn: 1, ..run(2) }, 1000).unwrap();
            let mut g = Generator::load(config).unwrap();
            // Run 1's frames, as a device's late backlog would deliver them during run 2.
            g.send(gen0, 60, Pace { run: 1, ..Pace::full(700) }).unwrap();
            let late = sink.counters().unwrap();
            g.send(gen0, 60, Pace { run: 2, ..Pace::full(1500) }).unwrap();
            let current = sink.counters().unwrap();
            // Expecting run 3 now: run 2's frames are late in turn, and learn nothing new.
            sink.expect(SinkExpect { learn: 1, ..run(3) }).unwrap();
            g.send(gen0, 60, Pace { run: 2, ..Pace::full(1000) }).unwrap();
            (late, current, sink.counters().unwrap())
        })
        .unwrap();
    eprintln!(
        "bench_xdp: run 1 into a sink of run 2: {late:?}; then run 2: {current:?}; then run 3: {learned:?}"
    );
    assert_eq!(
        (late.late, late.good, late.bad, late.learned),
        (700, 0, 0, 0),
        "another run's frames are late"
    );
    assert_eq!((current.good, current.bad, current.late), (1500, 0, 700), "the run's own frames are good");
    assert_eq!(current.learned, 1000, "1,500 frames of 1,000 flows: each flow learned once");
    assert_eq!((learned.good, learned.late, learned.learned), (1500, 1700, 1000));
}
