//! No legacy address reaches the extranet untranslated. For every gateway of the province
//! example, frames from every legacy network (its whole prefix sampled: netmapped, NAPT, isolated
//! and gateway addresses alike, TCP, UDP and ICMP, to plan and non-plan destinations) run through
//! the compiled config in the userspace engine; whatever leaves by the extranet uplink must carry
//! a source inside the county's public allocation. It must also be that traffic does cross, or
//! the property would hold vacuously.

use dataplane::{
    buffer::{Packet, Verdict},
    engine::{Engine, Iface},
};
use etherparse::{InternetSlice, PacketBuilder, SlicedPacket};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

const LEGACY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn frame(vlan: u16, src: Ipv4Addr, dst: Ipv4Addr, kind: usize, sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0x10, 1], LEGACY_MAC)
        .single_vlan(etherparse::VlanId::try_new(vlan).unwrap())
        .ipv4(src.octets(), dst.octets(), 64);
    let mut v = Vec::new();
    match kind {
        0 => b.tcp(sport, 443, 1, 1024).syn().write(&mut v, &[]),
        1 => b.udp(sport, 53).write(&mut v, &[0; 8]),
        _ => b.icmpv4_echo_request(sport, 1).write(&mut v, &[0; 8]),
    }
    .unwrap();
    v
}

fn source(frame: &[u8]) -> Option<Ipv4Addr> {
    match SlicedPacket::from_ethernet(frame).ok()?.net? {
        InternetSlice::Ipv4(ip) => Some(ip.header().source_addr()),
        _ => None,
    }
}

#[test]
fn no_legacy_address_leaves_by_the_uplink_untranslated() {
    let lp = control::check_file(std::path::Path::new("configs/examples/province.yaml")).unwrap();
    let configs = control::compile::compile_all(&lp).unwrap();
    assert_eq!(configs.len(), 126);
    let (mut crossed, mut sent) = (0u64, 0u64);
    for (_, node) in lp.plan.nodes() {
        for gw in &node.gateways {
            let config = configs[&gw.id].clone();
            let plan: &[Ipv4Net] = &node.allocations.public;
            let ifaces = vec![
                Iface { name: "legacy0".into(), mac: LEGACY_MAC },
                Iface { name: "uplink0".into(), mac: UPLINK_MAC },
            ];
            let mut engine = Engine::new(config, ifaces).unwrap();
            let uplink = gw.interfaces.iter().find(|i| i.name == "uplink0").unwrap();
            let via = gw.routes[0].via;
            assert!(uplink.address.contains(&via));
            engine.set_neighbor(1, None, via.into(), [2, 0, 0, 0, 0x20, 2]);
            let destinations: [Ipv4Addr; 3] =
                ["32.200.0.9".parse().unwrap(), "203.0.113.7".parse().unwrap(), via];
            for itf in gw.interfaces.iter().filter(|i| i.vlan.is_some()) {
                let net = node.legacy_networks.iter().find(|n| Some(&n.id) == itf.network.as_ref()).unwrap();
                for prefix in &net.prefixes {
                    // Every 61st address: spans netmapped, isolated and NAPT parts of each prefix.
                    let (first, last) = (u32::from(prefix.network()), u32::from(prefix.broadcast()));
                    let mut batch = Vec::new();
                    for (k, a) in (first..=last).step_by(61).chain([first + 256 + 5, first + 1]).enumerate() {
                        let dst = destinations[k % 3];
                        batch.push(Packet::new(
                            0,
                            &frame(itf.vlan.unwrap(), a.into(), dst, k % 3, 1024 + k as u16),
                        ));
                    }
                    sent += batch.len() as u64;
                    engine.process(&mut batch, 1_000_000);
                    for p in &batch {
                        if let Verdict::Forward { iface: 1 } = p.verdict {
                            let src = source(p.frame()).expect("an IPv4 frame leaves");
                            assert!(
                                plan.iter().any(|b| b.contains(&src)),
                                "gateway {}: a frame from {} left the uplink with source {src}, outside {plan:?}",
                                gw.id,
                                net.id
                            );
                            assert!(
                                !net.isolated.iter().any(|i| i.contains(&src)),
                                "an isolated subnet's address crossed"
                            );
                            crossed += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("{crossed} of {sent} frames crossed, every one translated onto plan addresses");
    assert!(crossed > sent / 2, "most legacy traffic should cross (translated): {crossed} of {sent}");
}
