//! What of the program's maps a pin directory holds, and under which layout: the maps pinned
//! (all but per-packet scratch), and a digest of every map's key, value and size, so that pins
//! of another layout are never adopted by a restarted gateway.

use hutong_common::*;

/// The program's per-CPU scratch (a frame's VLAN tag, the unresolved-next-hop window): nothing in
/// them outlives a packet or a few milliseconds, so they are never pinned (a restarted program
/// starts them afresh).
pub(super) const UNPINNED: [&str; 2] = [MAP_TAG, MAP_UNRESOLVED];

/// The maps pinned when a pin directory is used: every map of the program ([`ALL_MAPS`]) but
/// [`UNPINNED`]'s.
pub(super) fn pinned_maps() -> impl Iterator<Item = &'static str> {
    ALL_MAPS.iter().copied().filter(|m| !UNPINNED.contains(m))
}

/// The pin directory records the map layout its pins were made with as an empty subdirectory
/// `layout-<hash>` (bpffs holds only BPF objects and directories, no plain files).
pub(super) const LAYOUT_PREFIX: &str = "layout-";

pub(super) fn layout_dir_name() -> String {
    format!("{LAYOUT_PREFIX}{:016x}", fnv1a(layout().as_bytes()))
}

/// FNV-1a: stable across builds, versions and platforms, unlike std's hasher.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Changes whenever a map's key, value or size changes: pinned maps of another layout must not
/// be adopted (the program would read them wrongly).
pub fn layout() -> String {
    use std::mem::size_of;
    format!(
        "hutong-xdp maps v9 (two generations, epochs and digest, flows, rules, devmap, IPv6, VLANs, NAT outsides): drops={} stats={} port={} vlans={} v4key={} netmap={} route={} neigh={}/{} flow={}/{} rule={} portcount={} v6key={} npt6={} route6={} neigh6={} rule6={} caps={},{},{},{},{},{},{},{},{},{},{},{}",
        Drop::COUNT,
        Stat::COUNT,
        size_of::<Port>(),
        MAX_VLAN_PORTS,
        size_of::<V4Key>(),
        size_of::<Netmap>(),
        size_of::<Route>(),
        size_of::<NeighKey>(),
        size_of::<Neigh>(),
        size_of::<FlowKey>(),
        size_of::<Flow>(),
        size_of::<PolicyRule>(),
        size_of::<PortCounters>(),
        size_of::<V6Key>(),
        size_of::<Npt6>(),
        size_of::<Route6>(),
        size_of::<Neigh6Key>(),
        size_of::<PolicyRule6>(),
        MAX_PORTS,
        MAX_LOCAL,
        MAX_NAT_PREFIXES,
        MAX_ROUTES,
        MAX_NEIGHBORS,
        NEIGH_MISS_BYTES,
        MAX_QUEUES,
        MAX_FLOWS,
        MAX_RULES,
        MAX_RULES_PER_VRF,
        MAX_RULES_V6,
        MAX_NPT_PREFIXES
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_map_but_the_scratch_is_pinned() {
        let pinned: Vec<&str> = pinned_maps().collect();
        assert_eq!(pinned.len(), ALL_MAPS.len() - UNPINNED.len());
        assert!(UNPINNED.iter().all(|m| ALL_MAPS.contains(m) && !pinned.contains(m)));
        for m in
            [MAP_FLOWS, MAP_NEIGH_V4, MAP_NEIGH_V6, MAP_ACTIVE, MAP_PORTS[0], MAP_PORTS[1], MAP_RULE_HITS]
        {
            assert!(pinned.contains(&m), "{m}");
        }
    }
}
