//! Applying a config while traffic flows: a packet sees the old tables or the new ones, never a
//! mix. One thread runs the XDP program on a packet in a tight loop while another applies two
//! configs in turn through a second program instance over the same (pinned) maps. The configs
//! differ in both the netmap target and the default route's next hop, so a packet translated by one and routed by
//! the other would show; none may.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use dataplane::{
    Config,
    xdp::{XdpEngine, tables},
};
use etherparse::PacketBuilder;
use hutong::lab::netns::lab_tag;
use hutong_common::{Neigh, NeighKey};

const M1: [u8; 6] = [2, 0, 0, 0, 0x19, 2];
const M2: [u8; 6] = [2, 0, 0, 0, 0x19, 3];

fn config_b(mut c: Config) -> Config {
    c.netmaps[0].outside = "198.18.22.0/24".parse().unwrap();
    c.policies[1].dst = Some("198.18.22.0/24".parse().unwrap());
    c.routes[0].via = Some("198.19.0.3".parse().unwrap());
    c
}

#[test]
fn a_config_applied_under_traffic_is_never_seen_half_applied() {
    common::require_root("xdp_apply");
    let (ns, legacy, uplink) = common::veth_pair("apply");
    let resolve = |n: &str| match n {
        "legacy0" => Some(legacy),
        "uplink0" => Some(uplink),
        _ => None,
    };
    let a = tables::build(&common::demo_config(), resolve).unwrap();
    let b = tables::build(&config_b(common::demo_config()), resolve).unwrap();
    assert_ne!(a.nat_src, b.nat_src);

    let pins = std::path::PathBuf::from(format!("/sys/fs/bpf/hutong/{}-apply", lab_tag()));
    let (mut runner, _) = XdpEngine::load_pinned(&pins).unwrap();
    let (mut applier, adopted) = XdpEngine::load_pinned(&pins).unwrap();
    assert!(adopted, "the second instance shares the first one's maps");
    applier.install(&a).unwrap();
    {
        let mut n = applier.neighbor_table().unwrap();
        for (addr, mac) in [([198, 19, 0, 2], M1), ([198, 19, 0, 3], M2)] {
            n.insert(NeighKey { ifindex: uplink.ifindex, addr }, Neigh { mac, _pad: [0; 2] }, 0).unwrap();
        }
    }

    let b_ = PacketBuilder::ethernet2([2, 0, 0, 0, 0x20, 10], legacy.mac)
        .ipv4([10, 20, 0, 10], [203, 0, 113, 5], 64)
        .udp(1, 2);
    let mut frame = Vec::new();
    b_.write(&mut frame, &[0; 18]).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let applying = std::thread::spawn(move || {
        let mut applied = 0u32;
        while !stop.load(Ordering::Relaxed) {
            applier.install(if applied.is_multiple_of(2) { &b } else { &a }).unwrap();
            applied += 1;
        }
        (applier, applied)
    });
    let (seen_a, seen_b, mixed) = ns
        .run(|| {
            let (mut sa, mut sb, mut mixed) = (0u32, 0u32, Vec::new());
            // Bounded: at least 20k packets, and until both configs were seen (at most 400k).
            for i in 0..400_000 {
                if i >= 20_000 && sa > 0 && sb > 0 {
                    break;
                }
                let out = runner.test_run(&frame, legacy.ifindex).unwrap();
                let (src, mac) = (&out.frame[26..30], &out.frame[0..6]);
                match (src, mac) {
                    ([198, 18, 20, 10], m) if m == M1 => sa += 1,
                    ([198, 18, 22, 10], m) if m == M2 => sb += 1,
                    _ => mixed.push((out.action, src.to_vec(), mac.to_vec())),
                }
            }
            (sa, sb, mixed)
        })
        .unwrap();
    done.store(true, Ordering::Relaxed);
    let (applier, applied) = applying.join().unwrap();
    eprintln!(
        "xdp_apply: {applied} applies under {} packets: {seen_a} as A, {seen_b} as B, {} mixed",
        seen_a + seen_b + mixed.len() as u32,
        mixed.len()
    );
    assert!(
        mixed.is_empty(),
        "packets under a mixed state (action, src, MAC): {:?}",
        &mixed[..mixed.len().min(5)]
    );
    assert!(seen_a > 0 && seen_b > 0, "both configs must have been live during the run");
    drop(runner);
    applier.shutdown().unwrap();
    assert!(!pins.exists());
}
