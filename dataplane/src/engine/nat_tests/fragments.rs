//! Fragments through NAT: later fragments follow their first fragment's translation, and
//! wait for it when they come first (RFC 4787 REQ-14).

use super::*;

#[test]
fn later_fragments_follow_their_first_fragments_translation() {
    let mut e = engine(config(pool(Filtering::AddressAndPortDependent)));
    // First fragment: a UDP header (port 5000 -> 53) and data.
    let mut first_payload = vec![0x13, 0x88, 0x00, 0x35, 0x00, 0x30, 0x00, 0x00];
    first_payload.extend_from_slice(&[7; 16]);
    let f1 = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 0x77, true, &first_payload), 0);
    assert_eq!(f1.verdict, Verdict::Forward { iface: 1 });
    let mapped = src_of(f1.frame());
    let f2 = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 0x77, false, &[9; 24]), 0);
    assert_eq!(f2.verdict, Verdict::Forward { iface: 1 });
    assert_eq!(&f2.frame()[26..30], &mapped.0, "same outside address");
    assert_eq!(&f2.frame()[34..], &[9; 24], "payload untouched");
    // A later fragment of a datagram never seen is dropped and counted.
    let orphan = run_at(&mut e, 0, &fragment([10, 20, 0, 5], SERVER, 0x78, false, &[9; 24]), 0);
    assert_eq!(orphan.verdict, Verdict::Drop(Drop::FragmentUnknown));
}

/// RFC 4787 REQ-14: a NAT must handle fragments out of order. A later fragment that arrives
/// before its first waits (counted as `fragments_held`) and leaves, translated like the first,
/// once the first has been; outbound and inbound alike. One whose first never comes is
/// dropped as `fragment_unknown` when its wait is over; and one source cannot hold more than
/// its share.
#[test]
fn rfc4787_req14_fragments_out_of_order_wait_for_their_first() {
    use crate::engine::reorder::{PER_SOURCE, WAIT_NS};
    let mut e = engine(config(pool(Filtering::EndpointIndependent)));
    e.hold_unresolved();
    let mut first_payload = vec![0x13, 0x88, 0x00, 0x35, 0x00, 0x30, 0x00, 0x00];
    first_payload.extend_from_slice(&[7; 16]);
    let host = [10, 20, 0, 5];
    // Outbound: the later fragment first.
    let later = run_at(&mut e, 0, &fragment(host, SERVER, 0x77, false, &[9; 24]), 0);
    assert_eq!(later.verdict, Verdict::Pending);
    assert_eq!(e.counters.stat(Stat::FragmentsHeld), 1);
    assert!(e.take_released(0).is_empty(), "nothing to release before the first fragment");
    let first = run_at(&mut e, 0, &fragment(host, SERVER, 0x77, true, &first_payload), 0);
    assert_eq!(first.verdict, Verdict::Forward { iface: 1 });
    let mapped = src_of(first.frame());
    let released = e.take_released(0);
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].verdict, Verdict::Forward { iface: 1 });
    assert_eq!(&released[0].frame()[26..30], &mapped.0, "the first fragment's outside address");
    assert_eq!(&released[0].frame()[34..], &[9; 24], "payload untouched");
    // Inbound: the server answers in two fragments, the later one first.
    let (out_addr, out_port) = mapped;
    let mut reply_first = vec![0x00, 0x35];
    reply_first.extend_from_slice(&out_port.to_be_bytes());
    reply_first.extend_from_slice(&[0x00, 0x30, 0x00, 0x00]);
    reply_first.extend_from_slice(&[5; 16]);
    let back_later =
        run_at(&mut e, 1, &fragment_on((SERVER_MAC, U_MAC), SERVER, out_addr, 0x99, false, &[8; 24]), 1);
    assert_eq!(back_later.verdict, Verdict::Pending);
    let back_first =
        run_at(&mut e, 1, &fragment_on((SERVER_MAC, U_MAC), SERVER, out_addr, 0x99, true, &reply_first), 1);
    assert_eq!(back_first.verdict, Verdict::Forward { iface: 0 });
    let released = e.take_released(SEC);
    assert_eq!(released.len(), 1);
    assert_eq!(
        (released[0].verdict, &released[0].frame()[30..34]),
        (Verdict::Forward { iface: 0 }, &host[..])
    );
    // Waiting in vain: dropped and counted once the wait is over.
    let unknown = e.counters.drop(Drop::FragmentUnknown);
    assert_eq!(
        run_at(&mut e, 0, &fragment(host, SERVER, 0x78, false, &[9; 24]), 2).verdict,
        Verdict::Pending
    );
    e.expire(2 * SEC + WAIT_NS);
    assert_eq!(e.counters.drop(Drop::FragmentUnknown), unknown + 1);
    // Bounded per source: the one beyond its share is dropped at once.
    for id in 0..PER_SOURCE as u16 {
        run_at(&mut e, 0, &fragment(host, SERVER, 0x1000 + id, false, &[9; 24]), 10);
    }
    let over = run_at(&mut e, 0, &fragment(host, SERVER, 0x2000, false, &[9; 24]), 10);
    assert_eq!(over.verdict, Verdict::Drop(Drop::FragmentUnknown));
    // Another host still has room.
    let other = run_at(&mut e, 0, &fragment([10, 20, 0, 6], SERVER, 0x2000, false, &[9; 24]), 10);
    assert_eq!(other.verdict, Verdict::Pending);
}
