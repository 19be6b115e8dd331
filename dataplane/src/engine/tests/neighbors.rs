//! Next hops: held packets until they resolve, misses reported, ARP gleaned, entries forgotten.

use super::*;

#[test]
fn held_packets_leave_once_their_next_hop_is_known_or_are_dropped_after_a_second() {
    let mut c = demo();
    c.ports[0].mtu = 9000; // room for packets big enough to meet the byte bound
    let mut e = engine(c);
    e.hold_unresolved();
    let host2 = [10, 20, 0, 11];
    let mac2 = [2, 0, 0, 0, 0x20, 0x0b];
    let from_server = |n: u8| udp((SERVER_MAC, U_MAC), SERVER, [198, 18, 20, 11], 64, n as usize);
    // Packets towards an unresolved host: as many as the kernel's queue would hold wait, the
    // next is dropped.
    let n = held::PER_NEXT_HOP;
    let verdicts: Vec<Verdict> = (0..=n).map(|i| run(&mut e, 1, &from_server(i as u8)).verdict).collect();
    assert!(verdicts[..n].iter().all(|v| *v == Verdict::Pending), "{verdicts:?}");
    assert_eq!(verdicts[n], Verdict::Drop(Drop::NoNeighbor));
    assert_eq!(e.take_misses(), vec![(0, None, ip(host2))], "the resolver is asked once");
    assert!(e.take_released(1).is_empty(), "still unresolved");
    e.set_neighbor(0, None, ip(host2), mac2);
    let out = e.take_released(2);
    assert_eq!(out.len(), n);
    for (i, p) in out.iter().enumerate() {
        assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
        // Exactly what it would have been with the neighbor known from the start.
        assert_eq!(p.frame(), udp((L_MAC, mac2), SERVER, host2, 63, i));
    }
    assert_eq!((e.counters.stat(Stat::Forwarded), e.counters.drop(Drop::NoNeighbor)), (n as u64, 1));
    assert_eq!(e.counters.port_tx_packets.get("legacy0"), n as u64);
    // Big packets run into the byte bound first.
    let host4 = [198, 18, 20, 14];
    let big = udp((SERVER_MAC, U_MAC), SERVER, host4, 64, 4000);
    let waiting = (0..n).take_while(|_| run(&mut e, 1, &big).verdict == Verdict::Pending).count();
    assert_eq!(waiting, held::PER_NEXT_HOP_BYTES / big.len(), "{} bytes each", big.len());
    e.set_neighbor(0, None, ip([10, 20, 0, 14]), mac2);
    assert_eq!(e.take_released(3).len(), waiting);
    let drops = e.counters.drop(Drop::NoNeighbor);
    // Unresolved for a second: given up, and counted.
    let host3 = [198, 18, 20, 12];
    assert_eq!(run(&mut e, 1, &udp((SERVER_MAC, U_MAC), SERVER, host3, 64, 5)).verdict, Verdict::Pending);
    assert!(e.take_released(held::WAIT_NS - 1).is_empty());
    assert!(e.take_released(held::WAIT_NS).is_empty());
    assert_eq!(e.counters.drop(Drop::NoNeighbor), drops + 1);
}

#[test]
fn neighbors_are_listed_and_forgotten() {
    let mut e = engine(demo());
    e.set_neighbor(0, Some(4094), "10.20.0.77".parse().unwrap(), HOST_MAC);
    e.set_neighbor(1, None, "2001:db8::2".parse().unwrap(), SERVER_MAC);
    let mut keys = e.neighbor_keys();
    keys.sort();
    assert_eq!(
        keys,
        [
            (0, None, ip(HOST)),
            (0, Some(4094), "10.20.0.77".parse().unwrap()),
            (1, None, ip(SERVER)),
            (1, None, "2001:db8::2".parse().unwrap()),
        ]
    );
    let f = udp((HOST_MAC, L_MAC), HOST, SERVER, 64, 10);
    assert_eq!(run(&mut e, 0, &f).verdict, Verdict::Forward { iface: 1 }, "and now in the cache");
    e.forget_neighbor(1, None, ip(SERVER));
    assert_eq!(run(&mut e, 0, &f).verdict, Verdict::Drop(Drop::NoNeighbor), "gone from the cache too");
    assert_eq!(e.neighbor_keys().len(), 3);
}

#[test]
fn unresolved_next_hops_are_reported_to_the_resolver() {
    let mut e = engine(demo());
    let f = udp((SERVER_MAC, U_MAC), SERVER, [198, 18, 20, 99], 64, 4);
    assert_eq!(run(&mut e, 1, &f).verdict, Verdict::Drop(Drop::NoNeighbor));
    run(&mut e, 1, &f);
    assert_eq!(e.take_misses(), vec![(0, None, ip([10, 20, 0, 99]))]);
    assert!(e.take_misses().is_empty());
}

#[test]
fn arp_for_the_gateway_teaches_the_engine_the_senders_mac() {
    let mut e = engine(demo());
    let mac = [2, 0, 0, 0, 0x20, 0x4d];
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[10, 20, 0, 77, 0, 0, 0, 0, 0, 0, 10, 20, 0, 1]);
    assert_eq!(run(&mut e, 0, &arp).verdict, Verdict::ToHost);
    let back = run(&mut e, 1, &udp((SERVER_MAC, U_MAC), SERVER, [198, 18, 20, 77], 64, 4));
    assert_eq!(back.frame(), udp((L_MAC, mac), SERVER, [10, 20, 0, 77], 63, 4));
}
