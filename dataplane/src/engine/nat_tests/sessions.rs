//! Sessions as the rest of the gateway sees them: published services, config swaps, workers
//! and steering, offloads and events for the XDP program's flows, the sessions API, expiry.

use super::*;

#[test]
fn a_published_service_is_reachable_at_its_plan_address_and_answers_from_it() {
    let mut e = engine(published());
    let p = run_at(&mut e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 33000, [198, 18, 40, 80], 80, "S"), 0);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    let mut want = tcp((L_MAC, HOST_MAC), SERVER, 33000, [10, 20, 0, 8], 8080, "S");
    want[22] = 63; // TTL
    let sum = u16::from_be_bytes([want[24], want[25]]);
    let fixed = hutong_common::checksum::replace2(
        sum.to_be(),
        u16::from_be_bytes([64, 6]).to_be(),
        u16::from_be_bytes([63, 6]).to_be(),
    );
    want[24..26].copy_from_slice(&fixed.to_ne_bytes());
    assert_eq!(p.frame(), want);
    let r = run_at(&mut e, 0, &tcp((HOST_MAC, L_MAC), [10, 20, 0, 8], 8080, SERVER, 33000, "SA"), 0);
    assert_eq!(src_of(r.frame()), ([198, 18, 40, 80], 80));
    // Another port of the same address is not published.
    let other = run_at(&mut e, 1, &tcp((SERVER_MAC, U_MAC), SERVER, 33000, [198, 18, 40, 80], 22, "S"), 0);
    assert_eq!(other.verdict, Verdict::Drop(Drop::NoTranslation));
}

#[test]
fn sessions_survive_a_config_swap_unless_the_new_policy_removes_them() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    let mut same = config(pool(Filtering::AddressAndPortDependent));
    same.policies.insert(
        0,
        Rule { name: "unrelated".into(), vrf: 1, src: Some("10.99.0.0/16".parse().unwrap()), ..napt_rule() },
    );
    e.swap(same).unwrap();
    assert_eq!(reply(&mut e, SERVER, 53, m, 1).verdict, Verdict::Forward { iface: 0 }, "still there");
    let mut deny = config(pool(Filtering::AddressAndPortDependent));
    deny.policies.insert(
        0,
        Rule {
            name: "no-host-5".into(),
            src: Some("10.20.0.5/32".parse().unwrap()),
            action: Action::Deny,
            ..napt_rule()
        },
    );
    e.swap(deny).unwrap();
    assert_eq!(
        reply(&mut e, SERVER, 53, m, 2).verdict,
        Verdict::Drop(Drop::NoTranslation),
        "removed by policy"
    );
}

#[test]
fn route_via_forwards_untranslated_to_a_fixed_next_hop() {
    let mut c = demo();
    c.policies.insert(
        0,
        Rule {
            name: "to-old-branch".into(),
            vrf: 1,
            src: None,
            dst: Some("10.30.0.0/16".parse().unwrap()),
            proto: None,
            src_ports: None,
            dst_ports: None,
            action: Action::RouteVia { port: "legacy0".into(), via: Some("10.20.0.254".parse().unwrap()) },
        },
    );
    let mut e = engine(c);
    let router = [2, 0, 0, 0, 0x20, 0xfe];
    e.set_neighbor(0, None, IpAddr::from([10, 20, 0, 254]), router);
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 1, [10, 30, 1, 1], 2, 64), 0);
    assert_eq!(p.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(p.frame(), udp((L_MAC, router), [10, 20, 0, 5], 1, [10, 30, 1, 1], 2, 63));
}

/// Two workers behind a steering function: every session's packets meet the worker that holds
/// it, in both directions, fragments included.
#[test]
fn sessions_are_sharded_across_workers_and_steering_finds_them() {
    let c = config(pool(Filtering::AddressAndPortDependent));
    let mk = |w| {
        let ifaces =
            vec![Iface { name: "legacy0".into(), mac: L_MAC }, Iface { name: "uplink0".into(), mac: U_MAC }];
        let mut e = Engine::new_worker(c.clone(), ifaces, w, 2).unwrap();
        e.set_neighbor(1, None, IpAddr::from(SERVER), SERVER_MAC);
        for h in 1..=60u8 {
            e.set_neighbor(0, None, IpAddr::from([10, 20, 0, h]), HOST_MAC);
        }
        e
    };
    let mut workers = [mk(0), mk(1)];
    let compiled = workers[0].config_handle().current();
    let mut steer = steer::Steering::default();
    let mut send = |iface: usize, f: &[u8]| {
        let w = steer.worker(&compiled, iface, f, 2) as usize;
        run_at(&mut workers[w], iface, f, 0)
    };
    let mut mapped = Vec::new();
    for h in 2..=60u8 {
        let p = send(0, &udp((HOST_MAC, L_MAC), [10, 20, 0, h], 4000, SERVER, 53, 64));
        assert_eq!(p.verdict, Verdict::Forward { iface: 1 });
        mapped.push((h, src_of(p.frame())));
    }
    for (h, m) in &mapped {
        let p = send(1, &udp((SERVER_MAC, U_MAC), SERVER, 53, m.0, m.1, 64));
        assert_eq!(
            p.frame(),
            udp((L_MAC, HOST_MAC), SERVER, 53, [10, 20, 0, *h], 4000, 63),
            "reply to host {h}"
        );
    }
    // Inbound fragments: the first carries the port, the later one follows it to its worker.
    let (h, m) = mapped[7];
    let mut first = vec![0x00, 0x35, (m.1 >> 8) as u8, m.1 as u8, 0x00, 0x30, 0x00, 0x00];
    first.extend_from_slice(&[1; 16]);
    let frag = |payload: &[u8], is_first: bool| {
        let mut f = fragment(SERVER, m.0, 0x99, is_first, payload);
        f[0..12].copy_from_slice(&[U_MAC, SERVER_MAC].concat());
        f
    };
    assert_eq!(send(1, &frag(&first, true)).verdict, Verdict::Forward { iface: 0 });
    let later = send(1, &frag(&[2; 24], false));
    assert_eq!(later.verdict, Verdict::Forward { iface: 0 });
    assert_eq!(&later.frame()[30..34], &[10, 20, 0, h]);
    let (a, b) = (workers[0].nat().sessions().len(), workers[1].nat().sessions().len());
    assert_eq!(a + b, mapped.len());
    assert!(a > 10 && b > 10, "sessions spread over both workers: {a} and {b}");
}

/// What the XDP program may repeat (see [`Offload`]): whole packets of a session, never SYN,
/// FIN, RST, fragments or hairpins, and nothing unless asked for.
#[test]
fn offloads_are_recorded_only_for_repeatable_session_packets() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    out(&mut e, 5, 5000, SERVER, 53, 0);
    assert!(e.take_offloads().is_empty(), "nothing is recorded unless tracked");
    e.track_offloads();
    let m = out(&mut e, 5, 5000, SERVER, 53, 1);
    let o = e.take_offloads();
    assert_eq!(o.len(), 1, "{o:?}");
    let o = o[0];
    assert_eq!(
        (o.src, o.sport, o.dst, o.dport),
        (Ipv4Addr::new(10, 20, 0, 5), 5000, Ipv4Addr::from(SERVER), 53)
    );
    assert_eq!((o.new_src.octets(), o.new_sport, o.iface, o.next_hop), (m.0, m.1, 1, Ipv4Addr::from(SERVER)));
    let key = nat::sessions::out_key(nat::sessions::UDP, u32::from_be_bytes(m.0), m.1);
    assert_eq!(o.session, Some(nat::SessionRef { session: key, remote: (u32::from_be_bytes(SERVER), 53) }));
    // The answer: the reverse direction, same session.
    assert!(matches!(reply(&mut e, SERVER, 53, m, 2).verdict, Verdict::Forward { iface: 0 }));
    let back = e.take_offloads();
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].new_dst, back[0].new_dport, back[0].session),
        (Ipv4Addr::new(10, 20, 0, 5), 5000, o.session)
    );
    // TCP: the SYN and FIN are the engine's to see; the ACK in between may be repeated.
    for (flags, repeatable) in [("S", false), ("A", true), ("FA", false), ("RA", false)] {
        let f = tcp((HOST_MAC, L_MAC), [10, 20, 0, 6], 6000, SERVER, 80, flags);
        assert!(matches!(run_at(&mut e, 0, &f, 3).verdict, Verdict::Forward { .. }), "{flags}");
        assert_eq!(e.take_offloads().len(), repeatable as usize, "TCP {flags}");
    }
    // A first fragment: its later fragments follow it in the engine alone.
    let p = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 9, true, &[0; 16]), 4);
    assert!(matches!(p.verdict, Verdict::Forward { .. }));
    assert!(e.take_offloads().is_empty(), "first fragment");
    // To another host's mapping: refused by its filtering, the packet goes on to the uplink, but
    // that changes as soon as the other host writes to this one; the engine keeps it.
    let mb = out(&mut e, 7, 7000, SERVER, 53, 5);
    e.take_offloads();
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 5000, mb.0, mb.1, 64), 6);
    assert!(matches!(p.verdict, Verdict::Forward { iface: 1 }), "{:?}", p.verdict);
    assert!(e.take_offloads().is_empty(), "to a mapping of ours, filtered");
    // A hairpin proper (endpoint-independent filtering) depends on two sessions.
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    e.track_offloads();
    let mb = out(&mut e, 7, 7000, SERVER, 53, 0);
    let p = run_at(&mut e, 0, &udp((HOST_MAC, L_MAC), [10, 20, 0, 5], 5000, mb.0, mb.1, 64), 1);
    assert!(matches!(p.verdict, Verdict::Forward { iface: 0 }), "{:?}", p.verdict);
    assert_eq!(e.take_offloads().len(), 1, "only host 7's own first packet");
}

/// The session events the flows follow: a fourth remote makes filtering forget the first, and
/// an expired session is freed.
#[test]
fn nat_events_name_forgotten_remotes_and_freed_sessions() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    e.track_offloads();
    let m = out(&mut e, 5, 5000, SERVER, 53, 0);
    for port in [54, 55, 56] {
        out(&mut e, 5, 5000, SERVER, port, 1);
    }
    let key = nat::sessions::out_key(nat::sessions::UDP, u32::from_be_bytes(m.0), m.1);
    let events = e.nat_mut().take_events();
    assert_eq!(
        events,
        vec![nat::NatEvent::Forgot(nat::SessionRef {
            session: key,
            remote: (u32::from_be_bytes(SERVER), 53)
        })]
    );
    // Refreshed from outside (the program forwarded a packet at 250 s), it outlives its timeout.
    assert!(e.nat_mut().refresh(key, 250, 250));
    out(&mut e, 6, 6000, SERVER, 53, 400);
    assert!(e.nat().is_live(key, 400) && e.nat_mut().take_events().is_empty());
    // Idle past the UDP timeout (300 s after 250 s): the sweep frees it.
    for s in 560..600 {
        out(&mut e, 6, 6000, SERVER, 53, s);
    }
    assert!(e.nat_mut().take_events().contains(&nat::NatEvent::Freed(key)));
}

/// The sessions API's view: filters and pages over live sessions, in outside order.
#[test]
fn sessions_are_found_by_address_port_vrf_and_protocol_a_page_at_a_time() {
    use crate::nat::query::SessionFilter;
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    let m5 = out(&mut e, 5, 5000, SERVER, 53, 0);
    out(&mut e, 6, 6000, SERVER, 53, 0);
    out(&mut e, 6, 6001, REMOTE, 53, 0);
    let all = e.nat().query(&SessionFilter::default(), 0, 10, 1);
    assert_eq!(all.total, 3);
    let host5 = SessionFilter { addr: Some(Ipv4Addr::new(10, 20, 0, 5)), ..SessionFilter::default() };
    let page = e.nat().query(&host5, 0, 10, 1);
    assert_eq!(page.total, 1);
    let s = &page.sessions[0];
    assert_eq!((s.proto, s.pool.as_str(), s.inside.as_str()), ("udp", "city", "10.20.0.5:5000"));
    assert_eq!(s.outside, format!("{}:{}", Ipv4Addr::from(m5.0), m5.1));
    assert_eq!((s.remotes.clone(), s.expires_in_seconds), (vec!["198.19.0.2:53".to_string()], Some(299)));
    let remote = SessionFilter { addr: Some(Ipv4Addr::from(REMOTE)), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&remote, 0, 10, 1).total, 1, "by remote address");
    let port = SessionFilter { port: Some(6001), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&port, 0, 10, 1).total, 1);
    let tcp = SessionFilter { proto: Some(6), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&tcp, 0, 10, 1).total, 0);
    let other_vrf = SessionFilter { vrf: Some(7), ..SessionFilter::default() };
    assert_eq!(e.nat().query(&other_vrf, 0, 10, 1).total, 0);
    // Pages: in outside order, without overlap.
    let first = e.nat().query(&SessionFilter::default(), 0, 2, 1);
    let second = e.nat().query(&SessionFilter::default(), 2, 2, 1);
    assert_eq!((first.sessions.len(), second.sessions.len(), second.total), (2, 1, 3));
    let mut keys: Vec<u64> = first.sessions.iter().chain(&second.sessions).map(|s| s.key).collect();
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted);
    keys.dedup();
    assert_eq!(keys.len(), 3);
    // Expired sessions are not shown.
    assert_eq!(e.nat().query(&SessionFilter::default(), 0, 10, 400).total, 0);
}

/// After a flood the pool is full (its `max_sessions`); once the sessions' timeout passes, the timed expiry
/// frees them all within a turn of the clock hand (`nat::EXPIRY_TURN`, in calls every
/// `EXPIRY_INTERVAL`) without a single packet, so a new host gets ports at once. Before, only
/// packet batches swept, 64 slots each: one datagram a second would have taken hours.
#[test]
fn idle_sessions_free_their_ports_on_time_without_traffic() {
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.max_blocks_per_host = 64;
    let mut e = engine(config(p));
    // Hosts 1-20 open sessions until the pool refuses more.
    let mut sessions = 0;
    'flood: for host in 1..=20u8 {
        for sport in 1000..1500u16 {
            let f = udp((HOST_MAC, L_MAC), [10, 20, 0, host], sport, SERVER, 53, 64);
            if run_at(&mut e, 0, &f, 0).verdict != (Verdict::Forward { iface: 1 }) {
                break 'flood;
            }
            sessions += 1;
        }
    }
    assert_eq!(sessions, 10_000, "max_sessions ends the flood");
    let usage = &e.nat().pool_usage()[0];
    assert_eq!(usage.sessions, 10_000);
    let timeout = crate::config::Timeouts::default().udp as u64;
    // Before the timeout nothing goes.
    assert_eq!(e.expire((timeout - 1) * SEC), 0);
    let calls = (crate::nat::EXPIRY_TURN.as_millis() / crate::nat::EXPIRY_INTERVAL.as_millis()) as usize;
    let mut freed = 0;
    for _ in 0..calls {
        freed += e.expire((timeout + 1) * SEC);
    }
    let usage = &e.nat().pool_usage()[0];
    assert_eq!((freed, usage.sessions, usage.blocks_used), (10_000, 0, 0), "all freed within a turn");
    let (addr, _) = out(&mut e, 21, 7000, SERVER, 53, timeout + 1);
    assert!(addr[..3] == [198, 18, 30], "a new host gets a mapping at once");
}

/// A session query walks the table a bounded step at a time (the forwarding loop runs batches
/// between steps), and its page is the one a whole sort gives: the same sessions in the same
/// order, the same total, with filters and offsets.
#[test]
fn session_queries_walk_the_table_in_bounded_steps() {
    use crate::nat::query::{MAX_DEPTH, SCAN_STEP, SessionFilter, SessionScan};
    let mut p = pool(Filtering::AddressAndPortDependent);
    p.max_blocks_per_host = 64;
    let mut e = engine(config(p));
    for host in 1..=20u8 {
        for sport in 1000..1500u16 {
            out(&mut e, host, sport, SERVER, 53, 0);
        }
    }
    let nat = e.nat();
    let by_hand = |f: &SessionFilter| {
        let mut keys: Vec<u64> = nat
            .sessions()
            .iter()
            .filter(|(_, s)| f.addr.is_none_or(|a| s.in_addr == u32::from(a)))
            .map(|(_, s)| s.out_key())
            .collect();
        keys.sort_unstable();
        keys
    };
    for (filter, offset, limit) in [
        (SessionFilter::default(), 0, 100),
        (SessionFilter::default(), 9_950, 50),
        (SessionFilter { addr: Some(Ipv4Addr::new(10, 20, 0, 7)), ..Default::default() }, 100, 1000),
    ] {
        let mut scan = SessionScan::new(filter.clone(), offset, limit, 1);
        let mut steps = 1;
        while !nat.scan(&mut scan, SCAN_STEP) {
            steps += 1;
        }
        assert_eq!(steps, nat.sessions().slots().div_ceil(SCAN_STEP), "one step per {SCAN_STEP} slots");
        let page = nat.page(scan);
        let expected = by_hand(&filter);
        assert_eq!(page.total, expected.len());
        let keys: Vec<u64> = page.sessions.iter().map(|s| s.key).collect();
        assert_eq!(keys, expected.iter().copied().skip(offset).take(limit).collect::<Vec<_>>());
        assert_eq!(page, nat.query(&filter, offset, limit, 1));
    }
    // No deeper than MAX_DEPTH.
    let page = nat.query(&SessionFilter::default(), MAX_DEPTH - 10, 1000, 1);
    assert_eq!((page.total, page.sessions.len()), (10_000, 10));
}
