//! The generator: a plan's shape as small numbers (proptest strategies); `render` writes it.

use super::*;

pub(crate) const LEVELS: [&str; 4] = ["central", "province", "prefecture", "county"];
/// Roots' blocks, by rank (shifted by a root's `slot_shift`): the first three are apart.
pub(crate) const ROOT_PUBLIC: [&str; 5] =
    ["198.18.0.0/15", "40.0.0.0/12", "44.0.0.0/12", "198.18.0.0/16", "40.0.0.0/16"];
pub(crate) const ROOT_PUBLIC_V6: [&str; 4] =
    ["2400:8000::/32", "2400:8001::/32", "2400:8002::/32", "2400:8000:4300::/40"];
pub(crate) const ROOT_INTERNET: [&str; 4] =
    ["32.128.0.0/16", "32.144.0.0/16", "32.160.0.0/16", "32.128.0.0/20"];
/// Internet-access blocks given out carelessly: inside public roots, or the uplinks' links.
pub(crate) const STRAY_INTERNET: [&str; 3] = ["40.0.0.0/24", "32.0.0.0/24", "198.19.255.0/24"];
pub(crate) const DEPARTMENTS: [&str; 3] = ["tax", "health", "police"];
/// Departments plan their own VPNs: tax and health overlap, which is allowed.
pub(crate) const ROOT_DEDICATED: [&str; 3] = ["10.200.0.0/14", "10.200.0.0/14", "10.204.0.0/14"];
pub(crate) const LEGACY: [&str; 7] = [
    "10.0.0.0/16",
    "10.0.0.0/20",
    "10.0.1.0/24",
    "10.20.0.0/24",
    "172.16.0.0/22",
    "192.168.1.0/24",
    "192.168.0.0/16",
];
pub(crate) const NETWORK_BASES: [&str; 3] = ["lan", "office", "clinic"];
/// Ids given out carelessly: the same id at two nodes.
pub(crate) const NETWORK_POOL: [&str; 3] = ["lan", "lan-web", "clinic"];
pub(crate) const SERVICE_NAMES: [&str; 4] = ["web", "dns", "web-dns", "portal"];
pub(crate) const INSIDE_PORTS: [u16; 4] = [80, 8080, 53, 443];
pub(crate) const OUTSIDE_PORTS: [u16; 6] = [80, 443, 8080, 53, 1, 65535];
pub(crate) const BLOCK_SIZES: [u16; 4] = [64, 256, 512, 1024];
pub(crate) const ROUTES: [&str; 4] = ["0.0.0.0/0", "10.50.0.0/16", "172.20.0.0/16", "32.0.0.0/8"];
pub(crate) const REMOTES: [&str; 3] = ["32.0.250.1", "198.19.9.1", "40.3.0.1"];
/// An uplink address written without looking: inside 198.18.0.0/15, the first root's block.
pub(crate) const FIXED_UPLINK: &str = "198.19.0.1/24";
pub(crate) const POLICY_NAMES: [&str; 4] = ["p0", "p1", "no-telnet", "count-web"];
pub(crate) const PROTOCOLS: [Option<&str>; 5] =
    [None, Some("tcp"), Some("udp"), Some("icmp"), Some("\"47\"")];
pub(crate) const PORT_SPECS: [&str; 3] = ["80", "\"80-443\"", "23"];
pub(crate) const ACTIONS: [&str; 3] = ["permit", "deny", "count"];
pub(crate) const ROLES: [&str; 3] = ["admin", "operator", "viewer"];

/// Where a node puts a block of its own (netmap target, pool, service address, uplink): in its
/// own area, split in quarters (netmaps, pools, services, uplinks), which its children's blocks
/// leave free; or, as a hazard, over its last block of that kind, in another quarter, or inside
/// a child's block.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place {
    Own,
    Collide,
    Quarter(u8),
    Child(u8),
}

pub(crate) fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        970 => Just(Place::Own),
        5 => Just(Place::Collide),
        5 => (0u8..4).prop_map(Place::Quarter),
        20 => (0u8..6).prop_map(Place::Child),
    ]
}

#[derive(Clone, Debug)]
pub(crate) struct PlanSpec {
    /// The roots' level (index into [`LEVELS`]); deeper levels are dropped to fit.
    pub(crate) root_level: u8,
    /// Level by level, the roots first.
    pub(crate) levels: Vec<Vec<NodeSpec>>,
    pub(crate) operators: Vec<OperatorSpec>,
}

#[derive(Clone, Debug)]
pub(crate) enum Internet {
    None,
    Slot,
    Stray(u8),
}

#[derive(Clone, Debug)]
pub(crate) struct NodeSpec {
    /// Index into the level above (wrapping).
    pub(crate) parent: u8,
    /// Hazard: the slot in the parent's blocks (or the root pools) moves by this much.
    pub(crate) slot_shift: u8,
    /// Hazard: at its parent's level.
    pub(crate) same_level: bool,
    /// Hazard: the previous node's code.
    pub(crate) reuse_code: bool,
    /// Extra bits between this node's block and its children's.
    pub(crate) child_extra: u8,
    pub(crate) public: bool,
    pub(crate) public_v6: bool,
    pub(crate) internet: Internet,
    pub(crate) departments: Vec<&'static str>,
    /// Dedicated VPNs: each an index into the departments declared here or above.
    pub(crate) dedicated: Vec<u8>,
    pub(crate) networks: Vec<NetSpec>,
    pub(crate) gateways: Vec<GwSpec>,
    pub(crate) policies: Vec<PolicySpec>,
}

#[derive(Clone, Debug)]
pub(crate) enum NetId {
    Fresh(u8),
    /// The previous network's id with `-web` appended (its services' names may then collide).
    Derived,
    /// Hazard: from a small pool shared by all nodes.
    Pool(u8),
}

#[derive(Clone, Debug)]
pub(crate) struct NetSpec {
    pub(crate) id: NetId,
    pub(crate) prefixes: Vec<u8>,
    pub(crate) netmaps: Vec<NetmapSpec>,
    pub(crate) napt: Option<NaptSpec>,
    pub(crate) services: Vec<ServiceSpec>,
    pub(crate) isolated: Vec<IsolatedSpec>,
}

#[derive(Clone, Debug)]
pub(crate) struct NetmapSpec {
    pub(crate) prefix: u8,
    /// Extra bits below a quarter of the prefix.
    pub(crate) extra: u8,
    /// Hazard: the source overlaps the network's previous netmap source.
    pub(crate) overlap: bool,
    pub(crate) to: Place,
}

#[derive(Clone, Debug)]
pub(crate) struct NaptSpec {
    pub(crate) pools: Vec<(u8, Place)>,
    pub(crate) block_size: Option<u8>,
    pub(crate) deterministic: bool,
    /// Hazard: a deterministic pool one bit too small.
    pub(crate) short: bool,
    pub(crate) filtering: Option<bool>,
}

#[derive(Clone, Debug)]
pub(crate) struct ServiceSpec {
    pub(crate) name: u8,
    pub(crate) udp: bool,
    pub(crate) prefix: u8,
    pub(crate) host: u8,
    pub(crate) inside_port: u8,
    pub(crate) outside_port: u8,
    /// The address of the node's previous service.
    pub(crate) share: bool,
    pub(crate) place: Place,
}

/// An isolated subnet: the last block of a prefix (netmap sources are taken from its start).
#[derive(Clone, Debug)]
pub(crate) struct IsolatedSpec {
    pub(crate) prefix: u8,
    /// Extra bits below a quarter of the prefix.
    pub(crate) extra: u8,
    /// Hazard: 1, the whole prefix (netmap sources and services inside it); 2, outside it.
    pub(crate) hazard: u8,
}

#[derive(Clone, Debug)]
pub(crate) enum UplinkKind {
    /// A link subnet of the gateway's own.
    Link,
    /// The previous gateway's link subnet.
    Shared,
    /// A /30 from the node's public block.
    InPublic(Place),
    Fixed,
}

#[derive(Clone, Debug)]
pub(crate) struct UplinkSpec {
    pub(crate) kind: UplinkKind,
    /// .2 on its subnet rather than .1.
    pub(crate) second: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct TunnelSpec {
    pub(crate) network: Option<u8>,
    pub(crate) remote: u8,
    pub(crate) key: Option<u32>,
    /// Hazard: the local end is not the uplink's address.
    pub(crate) wrong_local: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct RouteSpec {
    pub(crate) interface: u8,
    pub(crate) prefix: u8,
    pub(crate) via: u8,
}

#[derive(Clone, Debug)]
pub(crate) struct GwSpec {
    /// Hazard: the previous gateway's id.
    pub(crate) reuse_id: bool,
    /// Hazard: also serves this network (by index), which another gateway of the node may serve.
    pub(crate) also: Option<u8>,
    /// Legacy interfaces as VLANs of one interface.
    pub(crate) vlans: bool,
    pub(crate) uplinks: Vec<UplinkSpec>,
    /// An internet-access interface; `true`: on the previous gateway's subnet.
    pub(crate) internet: Option<bool>,
    pub(crate) tunnel: Option<TunnelSpec>,
    pub(crate) routes: Vec<RouteSpec>,
}

#[derive(Clone, Debug)]
pub(crate) struct PolicySpec {
    pub(crate) name: u8,
    pub(crate) network: Option<u8>,
    pub(crate) from: Option<u8>,
    pub(crate) to: Option<u8>,
    pub(crate) protocol: u8,
    pub(crate) ports: Option<u8>,
    pub(crate) action: u8,
}

#[derive(Clone, Debug)]
pub(crate) struct OperatorSpec {
    pub(crate) scope: u8,
    pub(crate) role: u8,
}

pub(crate) fn small(max: u8) -> impl Strategy<Value = u8> {
    0..=max
}

/// 0 but once in `per` draws, 1..=max.
pub(crate) fn rarely(per: u32, max: u8) -> impl Strategy<Value = u8> {
    prop_oneof![per - 1 => Just(0u8), 1 => 1..=max]
}

prop_compose! {
    pub(crate) fn netmap_spec()(prefix in small(3), extra in small(4), overlap in prop::bool::weighted(0.005), to in place())
        -> NetmapSpec {
        NetmapSpec { prefix, extra, overlap, to }
    }
}

prop_compose! {
    pub(crate) fn napt_spec()(
        pools in prop::collection::vec((26u8..=30, place()), 1..=2),
        block_size in prop::option::weighted(0.6, small(3)),
        deterministic in prop::bool::weighted(0.3),
        short in prop::bool::weighted(0.03),
        filtering in prop::option::weighted(0.3, any::<bool>()),
    ) -> NaptSpec {
        NaptSpec { pools, block_size, deterministic, short, filtering }
    }
}

prop_compose! {
    pub(crate) fn service_spec()(
        name in small(3),
        udp in prop::bool::weighted(0.3),
        prefix in small(3),
        host in 1u8..=8,
        inside_port in small(3),
        outside_port in small(5),
        share in prop::bool::weighted(0.3),
        place in place(),
    ) -> ServiceSpec {
        ServiceSpec { name, udp, prefix, host, inside_port, outside_port, share, place }
    }
}

prop_compose! {
    pub(crate) fn isolated_spec()(prefix in small(3), extra in small(6), hazard in prop_oneof![99 => Just(0u8), 1 => 1u8..=2])
        -> IsolatedSpec {
        IsolatedSpec { prefix, extra, hazard }
    }
}

pub(crate) fn net_id() -> impl Strategy<Value = NetId> {
    prop_oneof![
        975 => small(2).prop_map(NetId::Fresh),
        20 => Just(NetId::Derived),
        5 => small(2).prop_map(NetId::Pool),
    ]
}

prop_compose! {
    pub(crate) fn net_spec()(
        id in net_id(),
        prefixes in prop_oneof![8 => prop::collection::vec(small(6), 1..=1), 2 => prop::collection::vec(small(6), 2..=2)],
        netmaps in prop::collection::vec(netmap_spec(), 0..=2),
        napt in prop::option::weighted(0.4, napt_spec()),
        services in prop::collection::vec(service_spec(), 0..=2),
        isolated in prop::collection::vec(isolated_spec(), 0..=1),
    ) -> NetSpec {
        NetSpec { id, prefixes, netmaps, napt, services, isolated }
    }
}

pub(crate) fn uplink_spec() -> impl Strategy<Value = UplinkSpec> {
    let kind = prop_oneof![
        950 => Just(UplinkKind::Link),
        20 => Just(UplinkKind::Shared),
        25 => place().prop_map(UplinkKind::InPublic),
        5 => Just(UplinkKind::Fixed),
    ];
    (kind, prop::bool::weighted(0.5)).prop_map(|(kind, second)| UplinkSpec { kind, second })
}

prop_compose! {
    pub(crate) fn tunnel_spec()(
        network in prop::option::weighted(0.7, small(3)),
        remote in small(2),
        key in prop::option::weighted(0.5, 1u32..10),
        wrong_local in prop::bool::weighted(0.01),
    ) -> TunnelSpec {
        TunnelSpec { network, remote, key, wrong_local }
    }
}

prop_compose! {
    pub(crate) fn route_spec()(interface in small(5), prefix in small(3), via in prop_oneof![98 => Just(0u8), 2 => small(2)])
        -> RouteSpec {
        RouteSpec { interface, prefix, via }
    }
}

prop_compose! {
    pub(crate) fn gw_spec()(
        reuse_id in prop::bool::weighted(0.005),
        also in prop::option::weighted(0.1, small(3)),
        vlans in prop::bool::weighted(0.3),
        uplinks in prop_oneof![
            950 => prop::collection::vec(uplink_spec(), 1..=1),
            45 => prop::collection::vec(uplink_spec(), 2..=2),
            5 => Just(Vec::new()),
        ],
        internet in prop::option::weighted(0.25, prop::bool::weighted(0.03)),
        tunnel in prop::option::weighted(0.2, tunnel_spec()),
        routes in prop::collection::vec(route_spec(), 0..=3),
    ) -> GwSpec {
        GwSpec { reuse_id, also, vlans, uplinks, internet, tunnel, routes }
    }
}

prop_compose! {
    pub(crate) fn policy_spec()(
        name in rarely(100, 3),
        network in prop::option::weighted(0.6, small(5)),
        from in prop::option::weighted(0.3, small(6)),
        to in prop::option::weighted(0.3, small(6)),
        protocol in small(4),
        ports in prop::option::weighted(0.5, small(2)),
        action in small(2),
    ) -> PolicySpec {
        PolicySpec { name, network, from, to, protocol, ports, action }
    }
}

pub(crate) fn internet() -> impl Strategy<Value = Internet> {
    prop_oneof![
        650 => Just(Internet::None),
        345 => Just(Internet::Slot),
        5 => small(2).prop_map(Internet::Stray),
    ]
}

pub(crate) fn node_spec() -> impl Strategy<Value = NodeSpec> {
    let head = (
        any::<u8>(),
        rarely(100, 3),
        prop::bool::weighted(0.003),
        prop::bool::weighted(0.003),
        small(1),
        prop::bool::weighted(0.98),
        prop::bool::weighted(0.3),
        internet(),
        prop_oneof![7 => Just(Vec::new()), 3 => prop::sample::subsequence(DEPARTMENTS.to_vec(), 1..=2)],
        prop_oneof![7 => Just(Vec::new()), 3 => prop::collection::vec(small(2), 1..=1)],
    );
    let body = (
        prop_oneof![3 => Just(Vec::new()), 5 => prop::collection::vec(net_spec(), 1..=1), 2 => prop::collection::vec(net_spec(), 2..=3)],
        prop_oneof![3 => Just(Vec::new()), 6 => prop::collection::vec(gw_spec(), 1..=1), 1 => prop::collection::vec(gw_spec(), 2..=2)],
        prop::collection::vec(policy_spec(), 0..=2),
    );
    (head, body).prop_map(
        |(
            (
                parent,
                slot_shift,
                same_level,
                reuse_code,
                child_extra,
                public,
                public_v6,
                internet,
                departments,
                dedicated,
            ),
            (networks, gateways, policies),
        )| NodeSpec {
            parent,
            slot_shift,
            same_level,
            reuse_code,
            child_extra,
            public,
            public_v6,
            internet,
            departments,
            dedicated,
            networks,
            gateways,
            policies,
        },
    )
}

pub(crate) fn plan_spec() -> impl Strategy<Value = PlanSpec> {
    let roots = prop_oneof![8 => prop::collection::vec(node_spec(), 1..=1), 2 => prop::collection::vec(node_spec(), 2..=3)];
    let below = prop::collection::vec(prop::collection::vec(node_spec(), 1..=6), 0..=3);
    let operators = prop::collection::vec(
        (any::<u8>(), small(2)).prop_map(|(scope, role)| OperatorSpec { scope, role }),
        0..=2,
    );
    (small(3), roots, below, operators).prop_map(|(root_level, roots, below, operators)| {
        let mut levels = vec![roots];
        levels.extend(below);
        PlanSpec { root_level, levels, operators }
    })
}
