//! GRE tunnel ports: encapsulated out, decapsulated in.

use super::*;

#[test]
fn gre_tunnel_ports_encapsulate_out_and_decapsulate_in() {
    let mut e = engine(tunnelled());
    let out = run(&mut e, 0, &udp((HOST_MAC, L_MAC), HOST, [10, 30, 1, 1], 64, 10));
    assert_eq!(out.verdict, Verdict::Forward { iface: 1 });
    let want = gre_frame(
        (U_MAC, SERVER_MAC),
        "198.19.0.1",
        "198.51.100.9",
        7,
        &ip_udp(HOST, [10, 30, 1, 1], 63, 10),
    );
    // Same payload bytes as `udp()` builds.
    let mut inner = Vec::new();
    PacketBuilder::ipv4(HOST, [10, 30, 1, 1], 63).udp(40000, 53).write(&mut inner, &[0x5a; 10]).unwrap();
    let want = [&want[..42], &inner[..]].concat();
    assert_eq!(out.frame(), want);

    let inbound = gre_frame(
        (SERVER_MAC, U_MAC),
        "198.51.100.9",
        "198.19.0.1",
        7,
        &ip_udp([10, 30, 1, 1], HOST, 64, 10),
    );
    let p = run(&mut e, 1, &inbound);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(
        p.frame(),
        [&[HOST_MAC, L_MAC].concat()[..], &[0x08, 0x00], &ip_udp([10, 30, 1, 1], HOST, 63, 10)[..]].concat()
    );
    assert_eq!(e.counters.port_rx_packets.get("gre-branch"), 1);

    let wrong_key = gre_frame(
        (SERVER_MAC, U_MAC),
        "198.51.100.9",
        "198.19.0.1",
        8,
        &ip_udp([10, 30, 1, 1], HOST, 64, 10),
    );
    assert_eq!(run(&mut e, 1, &wrong_key).verdict, Verdict::Drop(Drop::UnknownPort));
    // Tunnelled packets obey the policy of the tunnel port's VRF like any other.
    let stray = gre_frame(
        (SERVER_MAC, U_MAC),
        "198.51.100.9",
        "198.19.0.1",
        7,
        &ip_udp([10, 31, 1, 1], HOST, 64, 10),
    );
    assert_eq!(run(&mut e, 1, &stray).verdict, Verdict::Drop(Drop::NoTranslation));
}
