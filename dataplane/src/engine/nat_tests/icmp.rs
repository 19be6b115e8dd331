//! RFC 5508: ICMP echo through NAPT, and ICMP errors translated with the packet they quote;
//! echo requests to NAT addresses answered by the host stack.

use super::*;

#[test]
fn rfc5508_req1_echo_identifiers_are_translated_and_queries_live_sixty_seconds() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    // Two hosts ping with the same identifier.
    let a = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], SERVER, 7, true, 64), 0);
    let b = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 6], SERVER, 7, true, 64), 0);
    let id = |f: &[u8]| u16::from_be_bytes([f[38], f[39]]);
    let (sa, sb) = ((a.frame()[26..30].to_vec(), id(a.frame())), (b.frame()[26..30].to_vec(), id(b.frame())));
    assert_ne!(sa, sb, "two queries, two outside identities");
    let out_a: [u8; 4] = sa.0.clone().try_into().unwrap();
    let r = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, out_a, sa.1, false, 64), 59);
    assert_eq!(r.frame(), echo((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], 7, false, 63));
    // Idle past 60 s from the last packet (the reply at 59 s refreshed it), the query is over.
    let late = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, out_a, sa.1, false, 64), 59 + 61);
    assert_eq!(late.verdict, Verdict::Drop(Drop::NoTranslation));
}

#[test]
fn rfc5508_req3_inbound_icmp_errors_are_translated_with_their_quoted_packet() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, REMOTE, 53, 0);
    let err = unreachable((SERVER_MAC, U_MAC), SERVER, m.0, (m.0, m.1, REMOTE, 53), 64);
    let p = run_at(&mut e, 1, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    let want = unreachable((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], ([10, 20, 0, 5], 5000, REMOTE, 53), 63);
    assert_eq!(p.frame(), want, "outer, quoted IP and UDP, and ICMP checksums all as if built fresh");
    // An error about a session that does not exist goes nowhere.
    let stray = unreachable((SERVER_MAC, U_MAC), SERVER, m.0, (m.0, m.1 + 1, REMOTE, 53), 64);
    assert_eq!(run_at(&mut e, 1, &stray, 1).verdict, Verdict::Drop(Drop::NoTranslation));
}

#[test]
fn rfc5508_req4_outbound_icmp_errors_are_translated_too() {
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    let m = out(&mut e, 5, 5000, REMOTE, 53, 0);
    // The remote sends to the mapping; the inside host answers with port unreachable.
    let err = unreachable((HOST_MAC, L_MAC), [10, 20, 0, 5], REMOTE, (REMOTE, 53, [10, 20, 0, 5], 5000), 64);
    let p = run_at(&mut e, 0, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 1 });
    assert_eq!(p.frame(), unreachable((U_MAC, SERVER_MAC), m.0, REMOTE, (REMOTE, 53, m.0, m.1), 63));
}

#[test]
fn rfc5508_icmp_error_quoting_tcp_fixes_the_quoted_tcp_checksum() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let syn = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 5], 40000, REMOTE, 443, "S"), 0);
    let m = src_of(syn.frame());
    let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host);
    let err =
        error_quoting((SERVER_MAC, U_MAC), SERVER, m.0, unreach.clone(), &ip_tcp(m.0, m.1, REMOTE, 443), 64);
    let p = run_at(&mut e, 1, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    let want = error_quoting(
        (L_MAC, HOST_MAC),
        SERVER,
        [10, 20, 0, 5],
        unreach,
        &ip_tcp([10, 20, 0, 5], 40000, REMOTE, 443),
        63,
    );
    assert_eq!(p.frame(), want);
}

#[test]
fn rfc5508_icmp_error_quoting_an_echo_request_restores_its_identifier() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let ping = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], REMOTE, 7, true, 64), 0);
    let (ma, mid) = (
        <[u8; 4]>::try_from(&ping.frame()[26..30]).unwrap(),
        u16::from_be_bytes([ping.frame()[38], ping.frame()[39]]),
    );
    let te = Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit);
    let err = error_quoting((SERVER_MAC, U_MAC), SERVER, ma, te.clone(), &ip_echo(ma, REMOTE, mid), 64);
    let p = run_at(&mut e, 1, &err, 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(
        p.frame(),
        error_quoting((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], te, &ip_echo([10, 20, 0, 5], REMOTE, 7), 63)
    );
}

#[test]
fn rfc5508_icmp_errors_about_netmapped_traffic_are_translated_statelessly() {
    let mut e = engine(demo());
    let te = Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit);
    let quoted = |src: [u8; 4]| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, REMOTE, 1).udp(5000, 53).write(&mut v, b"q").unwrap();
        v
    };
    let err = error_quoting(
        (SERVER_MAC, U_MAC),
        SERVER,
        [198, 18, 20, 5],
        te.clone(),
        &quoted([198, 18, 20, 5]),
        64,
    );
    let p = run_at(&mut e, 1, &err, 0);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(
        p.frame(),
        error_quoting((L_MAC, HOST_MAC), SERVER, [10, 20, 0, 5], te, &quoted([10, 20, 0, 5]), 63)
    );
}

#[test]
fn echo_requests_to_pool_and_service_addresses_go_to_the_host_stack_and_replies_do_not() {
    use crate::host::{Ask, Owns};
    let mut e = engine(published());
    // Pool 198.18.30.0/30 and service 198.18.40.80, both outside in VRF 0 (the uplink).
    for dst in [[198, 18, 30, 2], [198, 18, 40, 80]] {
        let p = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, dst, 9, true, 64), 0);
        assert_eq!(p.verdict, Verdict::ToHost, "{dst:?}");
        // An echo reply with no session is not the host's: nobody here asked.
        let p = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, dst, 9, false, 64), 0);
        assert_eq!(p.verdict, Verdict::Drop(Drop::NoTranslation), "{dst:?}");
    }
    // Off the pool, and from the inside VRF (the pool is not an address there).
    let p = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, [198, 18, 30, 9], 9, true, 64), 0);
    assert_eq!(p.verdict, Verdict::Drop(Drop::NoTranslation));
    let p = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], [198, 18, 30, 2], 9, true, 64), 0);
    assert_ne!(p.verdict, Verdict::ToHost);
    // A session's echo still goes to its inside host: a query out, its answer back.
    let (out_addr, id) = {
        let q = run_at(&mut e, 0, &echo((HOST_MAC, L_MAC), [10, 20, 0, 5], SERVER, 7, true, 64), 1);
        let f = q.frame();
        (<[u8; 4]>::try_from(&f[26..30]).unwrap(), u16::from_be_bytes([f[38], f[39]]))
    };
    let r = run_at(&mut e, 1, &echo((SERVER_MAC, U_MAC), SERVER, out_addr, id, false, 64), 1);
    assert_eq!(r.verdict, Verdict::Forward { iface: 0 });

    // What the host stack answers for, by port: echo for the NAT addresses of the port's VRF;
    // ARP for NAT addresses on its subnets only. The ports' own addresses are untagged ones
    // here, on their interfaces: the kernel's.
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(e.owns(1, None, ip("198.18.30.2"), Ask::Echo));
    assert!(!e.owns(0, None, ip("198.18.30.2"), Ask::Echo), "not in the legacy VRF");
    assert!(!e.owns(1, None, ip("198.18.30.2"), Ask::Resolve), "198.18.30.0/30 is not on 198.19.0.0/24");
    assert!(!e.owns(1, None, ip("198.19.0.1"), Ask::Echo), "the kernel's");
    assert!(!e.owns(1, None, ip("198.19.0.1"), Ask::Resolve), "the kernel's");
    assert!(!e.owns(1, Some(5), ip("198.18.30.2"), Ask::Echo), "no such port");
    let mut c = published();
    c.nat_pools[0].addresses = vec!["198.19.0.100/32".parse().unwrap()];
    c.ports[1].vlan = Some(7); // the uplink as a VLAN port: no kernel address
    for r in &mut c.routes {
        r.port = c.ports[1].key();
    }
    let mut e = engine(c);
    e.set_neighbor(1, Some(7), IpAddr::from(SERVER), SERVER_MAC);
    assert!(e.owns(1, Some(7), ip("198.19.0.100"), Ask::Resolve), "a pool address on the uplink's subnet");
    assert!(e.owns(1, Some(7), ip("198.19.0.1"), Ask::Resolve), "a VLAN port's own address");
    assert!(e.owns(1, Some(7), ip("198.19.0.1"), Ask::Echo));
    assert!(!e.owns(1, None, ip("198.19.0.1"), Ask::Echo), "no untagged port there");
}
