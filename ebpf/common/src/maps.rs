//! Keys and values of the XDP program's maps. The loader fills them from `dataplane::Config`.

use core::mem::{offset_of, size_of};

/// Map names, shared so the loader cannot ask for a map the program does not define.
///
/// The config-derived tables exist twice (generation 0 and 1). `ACTIVE[0]` says which generation
/// the program uses; the program reads it once per packet, so every lookup of one packet sees
/// one generation. A config is applied by filling the inactive generation and then flipping
/// `ACTIVE` with a single map write: no packet ever sees half of one config and half of another.
pub const MAP_PORTS: [&str; 2] = ["PORTS_0", "PORTS_1"];
pub const MAP_LOCAL_V4: [&str; 2] = ["LOCAL_V4_0", "LOCAL_V4_1"];
pub const MAP_NAT_SRC_V4: [&str; 2] = ["NAT_SRC_V4_0", "NAT_SRC_V4_1"];
pub const MAP_NAT_DST_V4: [&str; 2] = ["NAT_DST_V4_0", "NAT_DST_V4_1"];
pub const MAP_FIB_V4: [&str; 2] = ["FIB_V4_0", "FIB_V4_1"];
pub const MAP_RULES: [&str; 2] = ["RULES_0", "RULES_1"];
pub const MAP_LOCAL_V6: [&str; 2] = ["LOCAL_V6_0", "LOCAL_V6_1"];
pub const MAP_NPT_SRC_V6: [&str; 2] = ["NPT_SRC_V6_0", "NPT_SRC_V6_1"];
pub const MAP_NPT_DST_V6: [&str; 2] = ["NPT_DST_V6_0", "NPT_DST_V6_1"];
pub const MAP_FIB_V6: [&str; 2] = ["FIB_V6_0", "FIB_V6_1"];
pub const MAP_RULES_V6: [&str; 2] = ["RULES_V6_0", "RULES_V6_1"];
/// NAT addresses on the outside (pools, published services), by VRF: a packet to one may
/// belong to a session, which is the slow path's to find.
pub const MAP_NAT_OUT_V4: [&str; 2] = ["NAT_OUT_V4_0", "NAT_OUT_V4_1"];
pub const MAP_RULE_HITS: &str = "RULE_HITS";
pub const MAP_PORT_COUNTERS: &str = "PORT_COUNTERS";
/// `TX_PORTS[slot]`: the devmap the program redirects through, port slot → ifindex.
pub const MAP_TX_PORTS: &str = "TX_PORTS";
/// `ACTIVE[0]` is the config epoch: it grows by one with every applied config, and its lowest
/// bit is the table generation in use. Flows carry the epoch they were decided under.
/// `ACTIVE[1..3]` hold the digest of the config installed (userspace's, across restarts).
pub const MAP_ACTIVE: &str = "ACTIVE";
pub const MAP_NEIGH_V4: &str = "NEIGH_V4";
pub const MAP_NEIGH_V6: &str = "NEIGH_V6";
pub const MAP_NEIGH_MISS: &str = "NEIGH_MISS";
pub const MAP_DROPS: &str = "DROPS";
pub const MAP_STATS: &str = "STATS";
pub const MAP_SLOW_PATH: &str = "SLOW_PATH";
pub const MAP_FLOWS: &str = "FLOWS";
/// Per CPU: the 802.1Q tag of the frame in hand, from its arrival to its departure. The
/// program's scratch; userspace never reads it.
pub const MAP_TAG: &str = "TAG";
/// Per CPU: the window of packets towards unresolved next hops handed to the slow path. The
/// program's own; userspace never reads it.
pub const MAP_UNRESOLVED: &str = "UNRESOLVED";

/// Every map of the program, both generations of the tables: exactly the maps its object
/// defines (`dataplane`'s tests parse the object and compare), so a list of maps kept anywhere
/// else can be derived from this one.
pub const ALL_MAPS: &[&str] = &[
    MAP_PORTS[0],
    MAP_PORTS[1],
    MAP_LOCAL_V4[0],
    MAP_LOCAL_V4[1],
    MAP_NAT_SRC_V4[0],
    MAP_NAT_SRC_V4[1],
    MAP_NAT_DST_V4[0],
    MAP_NAT_DST_V4[1],
    MAP_FIB_V4[0],
    MAP_FIB_V4[1],
    MAP_NAT_OUT_V4[0],
    MAP_NAT_OUT_V4[1],
    MAP_RULES[0],
    MAP_RULES[1],
    MAP_LOCAL_V6[0],
    MAP_LOCAL_V6[1],
    MAP_NPT_SRC_V6[0],
    MAP_NPT_SRC_V6[1],
    MAP_NPT_DST_V6[0],
    MAP_NPT_DST_V6[1],
    MAP_FIB_V6[0],
    MAP_FIB_V6[1],
    MAP_RULES_V6[0],
    MAP_RULES_V6[1],
    MAP_ACTIVE,
    MAP_TX_PORTS,
    MAP_PORT_COUNTERS,
    MAP_RULE_HITS,
    MAP_FLOWS,
    MAP_NEIGH_V4,
    MAP_NEIGH_V6,
    MAP_NEIGH_MISS,
    MAP_DROPS,
    MAP_STATS,
    MAP_SLOW_PATH,
    MAP_TAG,
    MAP_UNRESOLVED,
];
/// The program's name in the object file.
pub const PROGRAM: &str = "hutong";

/// Capacities. Sized for a city gateway; issue-level work on 1M-prefix FIBs changes these.
/// Interfaces (each has a slot: its devmap entry, its slow-path sockets, its counters).
pub const MAX_PORTS: u32 = 64;
/// VLAN ports, over all interfaces (`PORTS` holds these and the interfaces).
pub const MAX_VLAN_PORTS: u32 = 1024;
pub const MAX_LOCAL: u32 = 1024;
pub const MAX_NAT_PREFIXES: u32 = 16384;
pub const MAX_ROUTES: u32 = 65536;
pub const MAX_NEIGHBORS: u32 = 16384;
/// Flows the slow path may hand to the program: two per NAT session (one per direction) for
/// 131,072 sessions (the bench's 100k established flows fit, about 30 MB of kernel memory).
/// A plain hash, never an LRU: the kernel must not evict an entry behind the slow path's back.
/// When it is full, further flows simply stay on the slow path.
pub const MAX_FLOWS: u32 = 262_144;
/// Policy rules the program classifies by, in all VRFs, and per VRF (a VRF with more goes to the
/// slow path): the scan is bounded so the verifier can prove it ends.
pub const MAX_RULES: u32 = 4096;
pub const MAX_RULES_PER_VRF: u32 = 64;
/// IPv6 policy rules the program holds, in all VRFs (the same bounds as IPv4).
pub const MAX_RULES_V6: u32 = MAX_RULES;
/// NPTv6 prefixes, per direction.
pub const MAX_NPT_PREFIXES: u32 = 1024;
/// Bytes of the ring buffer that carries neighbor misses to userspace (a power of two pages).
pub const NEIGH_MISS_BYTES: u32 = 64 * 1024;
/// Receive queues per port with a slow-path socket.
pub const QUEUES_PER_PORT: u32 = 16;
/// AF_XDP sockets of the slow path: slot `port.slot * QUEUES_PER_PORT + queue`.
pub const MAX_QUEUES: u32 = MAX_PORTS * QUEUES_PER_PORT;

/// Role of a port. Only legacy and extranet ports exist in the skeleton.
pub const ROLE_LEGACY: u8 = 1;
pub const ROLE_EXTRANET: u8 = 2;

/// Port flag: after ARP and the gateway's own addresses, everything arriving here goes to the
/// slow path (the config uses, for this port's VRF or interface, something the program does
/// not implement).
pub const PORT_SLOW: u8 = 1;
/// Port flag: its VRF is the outside of NAT pools or services: a packet to one of their
/// addresses (`NAT_OUT_V4`) goes to the slow path.
pub const PORT_NAT_OUT: u8 = 8;
/// Port flag: an interface carrying only VLAN ports: it has a devmap slot and slow-path
/// sockets, but untagged frames on it belong to no port.
pub const PORT_BARE: u8 = 4;
/// Port flag: its VRF has NAT sessions (a pool's or a service's inside or outside), so the slow
/// path may have handed the program flows for its packets. Other ports skip the flow lookup.
pub const PORT_FLOWS: u8 = 2;
/// Port flag: its VRF is a NAPT pool's inside. Sessions decide before rules there, so an IPv4
/// packet goes to the slow path, unless its source is a netmap's that no session can have
/// ([`NETMAP_SESSION_FREE`]): then the program's rules decide it, as they would anywhere.
/// Netmapped hosts of a network that also uses NAPT stay in the program, across a restart too.
pub const PORT_NAPT_INSIDE: u8 = 16;

/// `PORTS[key]`: what the program needs to know about each port. An untagged port (and an
/// interface carrying only VLANs) is keyed by its interface's ifindex, a VLAN port by
/// [`vlan_port_key`]. Routes, next hops and neighbors name ports by the same keys.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// VRF of packets arriving on this port.
    pub vrf: u32,
    /// The port's own MAC: the source MAC of frames sent out of it.
    pub mac: [u8; 6],
    pub role: u8,
    /// `PORT_*` flags.
    pub flags: u8,
    /// Largest IP packet sent out of it; larger ones go to the slow path (ICMP or drop).
    pub mtu: u16,
    /// Its number among the ports: its slow-path sockets sit at `slot * QUEUES_PER_PORT + queue`.
    pub slot: u16,
    /// The rules of its VRF: `RULES[rules_first..rules_first + rules_count]`, in order. None:
    /// the VRF denies everything. Kept here so classifying costs no lookup of its own.
    pub rules_first: u16,
    pub rules_count: u16,
    /// The same for IPv6 packets: `RULES_V6[rules6_first..rules6_first + rules6_count]`.
    pub rules6_first: u16,
    pub rules6_count: u16,
    /// The VLAN id it sends and receives tagged with; 0: untagged.
    pub vlan: u16,
    pub _pad: u16,
    /// The interface it sends on (itself for an untagged port, the VLAN's parent otherwise).
    pub parent: u32,
}

/// The `PORTS` key of VLAN `vid` on the interface in slot `slot`. Its top bit is set, and no
/// ifindex has it (they are positive `int`s), so it never names an interface. (This kernel has
/// no 802.1Q devices, so a VLAN port has no ifindex of its own to borrow.)
#[inline(always)]
pub const fn vlan_port_key(slot: u16, vid: u16) -> u32 {
    0x8000_0000 | ((slot as u32) << 12) | (vid as u32 & 0x0fff)
}

/// The slot and VLAN id a [`vlan_port_key`] names; `None` for an interface's key.
pub const fn vlan_port_of(key: u32) -> Option<(u16, u16)> {
    if key & 0x8000_0000 == 0 { None } else { Some((((key >> 12) & 0x7ffff) as u16, (key & 0x0fff) as u16)) }
}

/// Key of the per-VRF IPv4 tables (`LOCAL_V4` exactly, `NAT_*_V4` and `FIB_V4` as LPM data).
/// In an LPM trie the prefix length counts the 32 VRF bits too: `32 + prefix_len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V4Key {
    /// VRF id, big-endian so the trie compares it first, bit by bit.
    pub vrf_be: u32,
    /// The address, network order.
    pub addr: [u8; 4],
}

impl V4Key {
    /// Bits of the key ahead of the address: the whole VRF always matches exactly.
    pub const VRF_BITS: u32 = 32;

    pub const fn new(vrf: u32, addr: [u8; 4]) -> Self {
        Self { vrf_be: vrf.to_be(), addr }
    }
}

/// Key of the per-VRF IPv6 tables (`LOCAL_V6` exactly, `NPT_*_V6` and `FIB_V6` as LPM data),
/// laid out as [`V4Key`]: in an LPM trie the prefix length is `32 + prefix_len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V6Key {
    pub vrf_be: u32,
    pub addr: [u8; 16],
}

impl V6Key {
    pub const VRF_BITS: u32 = 32;

    pub const fn new(vrf: u32, addr: [u8; 16]) -> Self {
        Self { vrf_be: vrf.to_be(), addr }
    }
}

/// Value of `NPT_SRC_V6` / `NPT_DST_V6`: a checksum-neutral IPv6 prefix translation (RFC 6296)
/// of a prefix of at most /48, so only the first 64 bits change. The translated address is
/// `(hi & !mask) | to` for its first 64 bits (read as native from network order), with the
/// 16-bit word at bits 48-63 then adjusted by [`crate::checksum::nptv6_word`] with `adjust`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Npt6 {
    pub to: u64,
    pub mask: u64,
    /// One's-complement sum of the source prefix plus the complement of the target's.
    pub adjust: u32,
    pub vrf_out: u32,
}

/// Value of `FIB_V6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route6 {
    pub ifindex: u32,
    /// All zero: on-link.
    pub nexthop: [u8; 16],
}

/// Key of `NEIGH_V6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Neigh6Key {
    pub ifindex: u32,
    pub addr: [u8; 16],
}

/// Value of `NAT_SRC_V4` / `NAT_DST_V4`: a stateless 1:1 prefix translation (netmap).
/// The translated address is `(addr & !mask) | to`, then the packet continues in `vrf_out`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Netmap {
    /// Target prefix, network order, host bits zero.
    pub to: u32,
    /// Prefix mask, network order.
    pub mask: u32,
    /// VRF the translated packet is routed in.
    pub vrf_out: u32,
    /// `NETMAP_SESSION_FREE`, or 0.
    pub flags: u32,
}

/// Netmap flag (`NAT_SRC_V4`): no NAT session can have a source in this prefix, since in its VRF
/// an unconditional netmap rule for it comes before every NAPT rule that could match it (and
/// an apply drops sessions the new rules would not make). See [`PORT_NAPT_INSIDE`].
pub const NETMAP_SESSION_FREE: u32 = 1;

impl Netmap {
    /// The translated address (all values network order).
    #[inline(always)]
    pub const fn apply(&self, addr: u32) -> u32 {
        (addr & !self.mask) | self.to
    }
}

/// Value of `FIB_V4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Egress interface.
    pub ifindex: u32,
    /// Next-hop address, network order; all zero means on-link (the destination itself).
    pub nexthop: [u8; 4],
}

/// Key of `NEIGH_V4`: a next hop on one interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighKey {
    pub ifindex: u32,
    pub addr: [u8; 4],
}

/// Value of `NEIGH_V4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Key of `FLOWS`: one direction of a connection, as it arrives (before translation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// VRF of the port it arrives on.
    pub vrf: u32,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// TCP/UDP: the ports as on the wire. ICMP echo: the identifier, and `[type, 0]`.
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// Value of `FLOWS`: what the userspace engine did to the flow's last packet, for the program
/// to repeat on the next ones. The userspace engine stays the owner of the NAT session behind
/// it; the program only caches the decision (see `dataplane::xdp::flows`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    /// New ports (ICMP echo: the new identifier, and the type unchanged).
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// Egress interface and the next hop on it.
    pub ifindex: u32,
    pub nexthop: [u8; 4],
    /// The config epoch it was decided under; under any other the program ignores it.
    pub epoch: u32,
    /// The policy rule (position + 1; 0: none) each packet counts a hit for: a published
    /// service's `dnat` rule, which the userspace engine would have matched.
    pub rule: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` when the program last forwarded a packet by it, coarsened to about
    /// 16 ms (0: never). The slow path reads it to keep the NAT session alive.
    pub last_seen: u64,
}

/// `PORT_COUNTERS[port slot]` (per CPU): what the program received on a port and sent out of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// `PolicyRule::action`: what a matching rule does.
pub const RULE_PERMIT: u8 = 1;
pub const RULE_DENY: u8 = 2;
/// Count the hit and go on to the next rule.
pub const RULE_COUNT: u8 = 3;
/// Translate by the netmap tables (`NAT_SRC_V4`, else `NAT_DST_V4`, in the packet's VRF).
pub const RULE_NETMAP: u8 = 4;
/// Forward untranslated to `via_ifindex` / `via_nexthop`.
pub const RULE_ROUTE_VIA: u8 = 5;
/// Decides "no translation": an NPTv6 rule for IPv4, a netmap rule for IPv6.
pub const RULE_NO_TRANSLATION: u8 = 6;
/// Translate by the NPTv6 tables (`NPT_SRC_V6`, else `NPT_DST_V6`, in the packet's VRF).
pub const RULE_NPT6: u8 = 7;
/// A NAPT or DNAT rule: a new session, the slow path's to create (it counts the hit).
pub const RULE_SLOW: u8 = 8;

/// `PolicyRule::flags`.
pub const RULE_PROTO: u8 = 1;
pub const RULE_SPORTS: u8 = 2;
pub const RULE_DPORTS: u8 = 4;
/// `PolicyRule6::flags`: the route-via next hop is the IPv4 address in `via_nexthop[..4]`.
pub const RULE_VIA_V4: u8 = 8;

/// `RULES[i]`: one policy rule, in order within its VRF (see `Port::rules_first`). Prefixes as
/// value/mask in network order (mask 0: any); port ranges inclusive, host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub src: u32,
    pub src_mask: u32,
    pub dst: u32,
    pub dst_mask: u32,
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub via_ifindex: u32,
    /// All zero: on-link (the destination itself).
    pub via_nexthop: [u8; 4],
    /// The rule's position in the config's policy list: its `RULE_HITS` counter.
    pub index: u32,
    pub proto: u8,
    /// `RULE_PROTO | RULE_SPORTS | RULE_DPORTS`: which of the fields above must match.
    pub flags: u8,
    pub action: u8,
    pub _pad: u8,
}

/// `RULES_V6[i]`: one policy rule as IPv6 packets are scanned by it (rules on IPv4 prefixes
/// are left out). Prefixes as value/mask, each the address's two halves read as native `u64`s
/// from network order; mask 0: any.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyRule6 {
    pub src: [u64; 2],
    pub src_mask: [u64; 2],
    pub dst: [u64; 2],
    pub dst_mask: [u64; 2],
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub via_ifindex: u32,
    pub index: u32,
    /// All zero: on-link. IPv4 (`RULE_VIA_V4`): the first four bytes.
    pub via_nexthop: [u8; 16],
    pub proto: u8,
    pub flags: u8,
    pub action: u8,
    pub _pad: [u8; 5],
}

// The layouts both compilers must agree on.
const _: () = {
    assert!(size_of::<Port>() == 32);
    assert!(offset_of!(Port, vlan) == 24);
    assert!(offset_of!(Port, parent) == 28);
    assert!(offset_of!(Port, rules6_first) == 20);
    assert!(size_of::<V6Key>() == 20);
    assert!(size_of::<Npt6>() == 24);
    assert!(size_of::<Route6>() == 20);
    assert!(size_of::<Neigh6Key>() == 20);
    assert!(size_of::<PolicyRule6>() == 104);
    assert!(offset_of!(PolicyRule6, via_ifindex) == 72);
    assert!(offset_of!(PolicyRule6, via_nexthop) == 80);
    assert!(offset_of!(PolicyRule6, proto) == 96);
    assert!(offset_of!(Port, rules_first) == 16);
    assert!(offset_of!(Port, mac) == 4);
    assert!(offset_of!(Port, role) == 10);
    assert!(offset_of!(Port, mtu) == 12);
    assert!(offset_of!(Port, slot) == 14);
    assert!(size_of::<V4Key>() == 8);
    assert!(offset_of!(V4Key, addr) == 4);
    assert!(size_of::<Netmap>() == 16);
    assert!(offset_of!(Netmap, vrf_out) == 8);
    assert!(size_of::<Route>() == 8);
    assert!(offset_of!(Route, nexthop) == 4);
    assert!(size_of::<NeighKey>() == 8);
    assert!(size_of::<Neigh>() == 8);
    assert!(size_of::<PolicyRule>() == 40);
    assert!(offset_of!(PolicyRule, via_ifindex) == 24);
    assert!(offset_of!(PolicyRule, index) == 32);
    assert!(offset_of!(PolicyRule, proto) == 36);
    assert!(size_of::<PortCounters>() == 32);
    assert!(size_of::<FlowKey>() == 20);
    assert!(offset_of!(FlowKey, sport) == 12);
    assert!(offset_of!(FlowKey, proto) == 16);
    assert!(size_of::<Flow>() == 40);
    assert!(offset_of!(Flow, ifindex) == 12);
    assert!(offset_of!(Flow, epoch) == 20);
    assert!(offset_of!(Flow, rule) == 24);
    assert!(offset_of!(Flow, last_seen) == 32);
};

#[cfg(feature = "user")]
mod pod {
    /// `aya::Pod` for each type: it lets the loader copy them to and from the maps as bytes.
    macro_rules! pod {
        ($($t:ty),* $(,)?) => {$(
            // SAFETY: every one of these is `repr(C)`, holds only integers and byte arrays, and
            // has explicit padding fields (sizes and offsets asserted above), so every bit
            // pattern is valid and no byte is uninitialised.
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(
        super::Port,
        super::V4Key,
        super::Netmap,
        super::Route,
        super::NeighKey,
        super::Neigh,
        super::FlowKey,
        super::Flow,
        super::PolicyRule,
        super::PortCounters,
        super::V6Key,
        super::Npt6,
        super::Route6,
        super::Neigh6Key,
        super::PolicyRule6,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmap_keeps_host_bits_and_replaces_prefix() {
        let nm = Netmap {
            to: u32::from_ne_bytes([198, 18, 20, 0]),
            mask: u32::from_ne_bytes([255, 255, 255, 0]),
            vrf_out: 0,
            flags: 0,
        };
        let out = nm.apply(u32::from_ne_bytes([10, 20, 0, 77]));
        assert_eq!(out.to_ne_bytes(), [198, 18, 20, 77]);
    }

    #[test]
    fn vlan_port_keys_round_trip_and_never_look_like_an_ifindex() {
        let k = vlan_port_key(5, 4094);
        assert!(k > i32::MAX as u32);
        assert_eq!(vlan_port_of(k), Some((5, 4094)));
        assert_eq!(vlan_port_of(7), None);
        assert_ne!(vlan_port_key(1, 100), vlan_port_key(0, 100));
    }

    #[test]
    fn all_maps_names_each_map_once() {
        for (i, a) in ALL_MAPS.iter().enumerate() {
            assert!(!ALL_MAPS[i + 1..].contains(a), "{a} twice");
        }
        for pair in [MAP_PORTS, MAP_RULES, MAP_FIB_V4, MAP_FIB_V6, MAP_NAT_OUT_V4, MAP_RULES_V6] {
            assert!(pair.iter().all(|m| ALL_MAPS.contains(m)), "{pair:?}");
        }
    }

    #[test]
    fn v4key_vrf_is_big_endian() {
        let k = V4Key::new(1, [10, 0, 0, 1]);
        assert_eq!(k.vrf_be.to_ne_bytes(), [0, 0, 0, 1]);
    }
}
