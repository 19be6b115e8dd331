//! RFC 4787 (UDP) and RFC 5382 (TCP) mappings and filtering, RFC 7422's deterministic pools,
//! pool and table exhaustion, hairpinning, and overlapping inside networks.

use super::*;

#[test]
fn rfc4787_req1_mapping_is_endpoint_independent() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let a = out(&mut e, 5, 5000, SERVER, 53, 0);
    let b = out(&mut e, 5, 5000, REMOTE, 123, 0);
    assert_eq!(a, b, "one inside endpoint, one mapping, whatever the destination");
    let pool: ipnet::Ipv4Net = "198.18.30.0/30".parse().unwrap();
    assert!(pool.contains(&Ipv4Addr::from(a.0)));
}

#[test]
fn rfc4787_req3_no_port_overloading() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let mut seen = std::collections::HashSet::new();
    for host in 1..=20u8 {
        for sport in [1000, 5000, 5001] {
            assert!(
                seen.insert(out(&mut e, host, sport, SERVER, 53, 0)),
                "an outside endpoint was given twice"
            );
        }
    }
}

#[test]
fn rfc4787_req5_udp_mapping_lives_at_least_two_minutes() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    assert_eq!(reply(&mut e, SERVER, 53, m, 299).verdict, Verdict::Forward { iface: 0 });
    // Refreshed by that reply at 299 s; idle past 5 minutes later it is gone.
    assert_eq!(reply(&mut e, SERVER, 53, m, 299 + 301).verdict, Verdict::Drop(Drop::NoTranslation));
    let mut short = pool(Filtering::AddressAndPortDependent);
    short.timeouts.udp = 60;
    assert!(
        config(short).validate().unwrap_err().iter().any(|e| e.message.contains("below the RFC minimums"))
    );
}

#[test]
fn rfc4787_req6_outbound_packets_refresh_the_mapping() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    assert_eq!(out(&mut e, 5, 5000, SERVER, 53, 250), m);
    assert_eq!(reply(&mut e, SERVER, 53, m, 500).verdict, Verdict::Forward { iface: 0 });
}

#[test]
fn rfc4787_req8_filtering_is_configurable() {
    let mut apdf = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut apdf, 5, 5000, SERVER, 53, 0);
    assert_eq!(reply(&mut apdf, SERVER, 53, m, 1).verdict, Verdict::Forward { iface: 0 });
    assert_eq!(reply(&mut apdf, SERVER, 54, m, 1).verdict, Verdict::Drop(Drop::Filtered), "other port");
    assert_eq!(
        reply(&mut apdf, [198, 19, 0, 9], 53, m, 1).verdict,
        Verdict::Drop(Drop::Filtered),
        "other address"
    );
    assert_eq!(apdf.counters.drop(Drop::Filtered), 2);
    let mut eif = engine(config(pool(Filtering::EndpointIndependent)));
    let m = out(&mut eif, 5, 5000, SERVER, 53, 0);
    assert_eq!(reply(&mut eif, [198, 19, 0, 9], 999, m, 1).verdict, Verdict::Forward { iface: 0 });
}

#[test]
fn rfc4787_req9_hairpinning() {
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    let ma = out(&mut e, 5, 5000, SERVER, 53, 0);
    let mb = out(&mut e, 6, 6000, SERVER, 53, 0);
    // Host 6 sends to host 5's outside endpoint: it comes back inside, from 6's mapping.
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 6], 6000, ma.0, ma.1, 64), 1);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(p.frame(), udp((L_MAC, HOST_MAC), mb.0, mb.1, [10, 20, 0, 5], 5000, 63));
}

#[test]
fn rfc5382_tcp_established_lives_two_hours_four_minutes_and_transitory_four_minutes() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let syn = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 5], 40000, SERVER, 443, "S"), 0);
    let m = src_of(syn.frame());
    let back = |e: &mut Engine, flags, secs| {
        run_at(e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 443, m.0, m.1, flags), secs).verdict
    };
    assert_eq!(back(&mut e, "SA", 1), Verdict::Forward { iface: 0 });
    // Established: idle for 2 h 3 min, still there.
    assert_eq!(back(&mut e, "A", 1 + 7380), Verdict::Forward { iface: 0 });
    // A half-open connection is transitory: gone after 4 minutes idle.
    let syn2 = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 6], 40000, SERVER, 443, "S"), 10_000);
    let m2 = src_of(syn2.frame());
    let v = run_at(&mut e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 443, m2.0, m2.1, "SA"), 10_000 + 241).verdict;
    assert_eq!(v, Verdict::Drop(Drop::NoTranslation));
    // After a reset the session is transitory too.
    assert_eq!(back(&mut e, "R", 7400), Verdict::Forward { iface: 0 });
    assert_eq!(back(&mut e, "A", 7400 + 241), Verdict::Drop(Drop::NoTranslation));
}

#[test]
fn exhausted_ports_drop_with_admin_prohibited_and_never_panic() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.block_size = 4;
    p.max_blocks_per_host = 1;
    let mut e = engine(config(p));
    for sport in 0..4 {
        out(&mut e, 5, 6000 + sport, SERVER, 53, 0);
    }
    let v = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 7000, SERVER, 53, 64), 0);
    assert_eq!(v.verdict, Verdict::Reply { iface: 0, dropped: Drop::PortsExhausted });
    let m = packet::parse(v.frame()).unwrap();
    assert_eq!(m.l4, L4::Icmp { kind: 3, code: 13, ident: 0 });
    // Other hosts still get ports.
    out(&mut e, 6, 6000, SERVER, 53, 0);
}

#[test]
fn a_full_session_table_drops_new_flows_and_keeps_old_ones() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.max_sessions = 2;
    let mut e = engine(config(p));
    let m = out(&mut e, 5, 1, SERVER, 53, 0);
    out(&mut e, 5, 2, SERVER, 53, 0);
    let v = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 3, SERVER, 53, 64), 0).verdict;
    assert_eq!(v, Verdict::Drop(Drop::SessionsFull));
    assert_eq!(reply(&mut e, SERVER, 53, m, 1).verdict, Verdict::Forward { iface: 0 });
    // Once sessions expire, the sweep frees room.
    for s in 0..200 {
        e.process(&mut [], (400 + s) * SEC);
    }
    out(&mut e, 5, 3, SERVER, 53, 600);
}

#[test]
fn rfc7422_deterministic_pool_follows_its_formula_both_ways() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.mode = PoolMode::Deterministic { inside: "10.20.0.0/24".parse().unwrap() };
    p.block_size = 1024; // 63 blocks per address, 4 addresses: 252 hosts (validation allows /24? no)
    let mut c = config(p.clone());
    assert!(c.validate().is_err(), "a /24 needs 256 blocks; the pool has 252");
    p.mode = PoolMode::Deterministic { inside: "10.20.0.0/25".parse().unwrap() };
    c = config(p);
    let mut e = engine(c);
    let (addr, port) = out(&mut e, 5, 5000, SERVER, 53, 0);
    // Host 5: 63 blocks per address, so the first address, block 5.
    assert_eq!((addr, port), ([198, 18, 30, 0], 1024 + 5 * 1024));
    assert_eq!(e.nat().who_owned(Ipv4Addr::from(addr), port + 17), Some(Ipv4Addr::new(10, 20, 0, 5)));
}

#[test]
fn overlapping_legacy_networks_behind_napt_get_their_own_replies() {
    let mut c = config(pool(Filtering::AddressAndPortDependent));
    c.vrfs.push(crate::config::Vrf { id: 2, name: "lan2".into() });
    c.ports.push(crate::config::PortConfig {
        name: "legacy1".into(),
        vlan: None,
        role: crate::config::Role::Legacy,
        vrf: 2,
        addresses: vec!["10.20.0.1/24".parse().unwrap()],
        mtu: 1500,
        tunnel: None,
    });
    let mut p2 = pool(Filtering::AddressAndPortDependent);
    p2.name = "lan2".into();
    p2.inside_vrf = 2;
    p2.addresses = vec!["198.18.31.0/30".parse().unwrap()];
    c.nat_pools.push(p2);
    c.policies.push(Rule {
        name: "lan2-napt".into(),
        vrf: 2,
        action: Action::Napt { pool: "lan2".into() },
        ..napt_rule()
    });
    let ifaces = vec![
        Iface { name: "legacy0".into(), mac: L_MAC },
        Iface { name: "uplink0".into(), mac: U_MAC },
        Iface { name: "legacy1".into(), mac: [2, 0, 0, 0, 0, 0x33] },
    ];
    let mut e = Engine::new(c, ifaces).unwrap();
    e.set_neighbor(1, None, IpAddr::from(SERVER), SERVER_MAC);
    e.set_neighbor(0, None, IpAddr::from([10, 20, 0, 5]), [2, 0, 0, 0, 0xa, 5]);
    e.set_neighbor(2, None, IpAddr::from([10, 20, 0, 5]), [2, 0, 0, 0, 0xb, 5]);
    // The same inside address and port in both networks.
    let a = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 5000, SERVER, 53, 64), 0);
    let b =
        run_at(&mut e, 2, &udp((HOST_MAC, [2, 0, 0, 0, 0, 0x33]), [10, 20, 0, 5], 5000, SERVER, 53, 64), 0);
    let (ma, mb) = (src_of(a.frame()), src_of(b.frame()));
    assert_ne!(ma.0, mb.0, "different pools, different plan addresses");
    let ra = reply(&mut e, SERVER, 53, ma, 1);
    let rb = reply(&mut e, SERVER, 53, mb, 1);
    assert_eq!((ra.verdict, &ra.frame()[0..6]), (Verdict::Forward { iface: 0 }, &[2, 0, 0, 0, 0xa, 5][..]));
    assert_eq!((rb.verdict, &rb.frame()[0..6]), (Verdict::Forward { iface: 2 }, &[2, 0, 0, 0, 0xb, 5][..]));
}

proptest! {
    /// Out, then the reply to what went out, comes back as the reply to the original packet.
    #[test]
    fn napt_round_trip_restores_the_original(host in 1u8..=20, sport in 1u16.., dport in 1u16.., tcp_flow in any::<bool>()) {
        let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
        let build = |eth: ([u8; 6], [u8; 6]), s: [u8; 4], sp: u16, d: [u8; 4], dp: u16, ttl: u8| {
            let b = PacketBuilder::ethernet2(eth.0, eth.1).ipv4(s, d, ttl);
            let mut v = Vec::new();
            if tcp_flow { b.tcp(sp, dp, 9, 512).syn().write(&mut v, b"x").unwrap(); } else { b.udp(sp, dp).write(&mut v, b"x").unwrap(); }
            v
        };
        let inside = [10, 20, 0, host];
        let o = run_at(&mut e, 0, &build((HOST_MAC, L_MAC), inside, sport, SERVER, dport, 64), 0);
        prop_assert_eq!(o.verdict, Verdict::Forward { iface: 1 });
        let (ma, mp) = src_of(o.frame());
        prop_assert_eq!(o.frame(), &build((U_MAC, SERVER_MAC), ma, mp, SERVER, dport, 63)[..]);
        let back = run_at(&mut e, 1, &build((SERVER_MAC, U_MAC), SERVER, dport, ma, mp, 64), 1);
        prop_assert_eq!(back.frame(), &build((L_MAC, HOST_MAC), SERVER, dport, inside, sport, 63)[..]);
    }
}
