//! Rendering: a plan spec (the generator's small numbers) placed into address blocks and
//! written out as the plan's YAML.

use super::*;

/// A node's quarters and its children's blocks, to place its own blocks in.
pub(crate) struct OwnArea {
    pub(crate) quarters: [Area; 4],
    pub(crate) children: Vec<Block>,
}

impl OwnArea {
    pub(crate) fn place(&mut self, quarter: usize, len: u8, p: Place) -> Block {
        let area = &mut self.quarters[quarter];
        let len = len.max(area.block.len);
        match p {
            Place::Own => area.alloc(len),
            Place::Collide => match area.last {
                Some(b) => Block::at(false, b.addr, len),
                None => area.alloc(len),
            },
            Place::Quarter(q) => self.quarters[q as usize % 4].alloc(len),
            Place::Child(c) if !self.children.is_empty() => {
                Block::at(false, self.children[c as usize % self.children.len()].addr, len)
            }
            Place::Child(_) => area.alloc(len),
        }
    }
}

/// A node of the tree being rendered, with its place and its (possibly undeclared) blocks.
pub(crate) struct RNode<'a> {
    pub(crate) spec: &'a NodeSpec,
    pub(crate) children: Vec<usize>,
    pub(crate) code: String,
    pub(crate) level: usize,
    pub(crate) public: Block,
    pub(crate) public_v6: Block,
    pub(crate) internet: Block,
    pub(crate) dedicated: [Block; 3],
    /// Bits between this node's blocks and its children's (and its own area).
    pub(crate) child_bits: u8,
    pub(crate) network_ids: Vec<String>,
    pub(crate) gateway_ids: Vec<String>,
    /// Departments declared here or above.
    pub(crate) departments: Vec<&'static str>,
}

/// Renders a plan spec as YAML text.
pub(crate) fn render(spec: &PlanSpec) -> String {
    let depth = spec.levels.len().min(4 - spec.root_level as usize);
    // The tree, level by level.
    let mut nodes: Vec<RNode> = Vec::new();
    let mut level_start = Vec::new();
    for d in 0..depth {
        level_start.push(nodes.len());
        for ns in &spec.levels[d] {
            let parent = (d > 0).then(|| level_start[d - 1] + ns.parent as usize % spec.levels[d - 1].len());
            let i = nodes.len();
            let code =
                if ns.reuse_code && i > 0 { nodes[i - 1].code.clone() } else { format!("{}", 430100 + i) };
            let level = match parent {
                None => spec.root_level as usize,
                Some(p) => nodes[p].level + usize::from(!ns.same_level),
            };
            if let Some(p) = parent {
                nodes[p].children.push(i);
            }
            let zero = Block { v6: false, addr: 0, len: 0 };
            nodes.push(RNode {
                spec: ns,
                children: Vec::new(),
                code,
                level,
                public: zero,
                public_v6: zero,
                internet: zero,
                dedicated: [zero; 3],
                child_bits: 0,
                network_ids: Vec::new(),
                gateway_ids: Vec::new(),
                departments: Vec::new(),
            });
        }
    }
    // Blocks, top down: roots from the pools by rank, children by slot in their parent's.
    for (rank, i) in (0..spec.levels[0].len()).enumerate() {
        let n = &mut nodes[i];
        let slot = rank + n.spec.slot_shift as usize;
        n.public = Block::parse(ROOT_PUBLIC[slot % ROOT_PUBLIC.len()]);
        n.public_v6 = Block::parse(ROOT_PUBLIC_V6[slot % ROOT_PUBLIC_V6.len()]);
        n.internet = Block::parse(ROOT_INTERNET[slot % ROOT_INTERNET.len()]);
        for (d, text) in ROOT_DEDICATED.iter().enumerate() {
            n.dedicated[d] = Block::parse(text).sub(Block::parse(text).len + 2, slot as u128);
        }
        n.departments = n.spec.departments.clone();
    }
    let mut network_count = 0usize;
    let mut gateway_count = 0usize;
    let mut last_network: Option<String> = None;
    for i in 0..nodes.len() {
        let n = &nodes[i];
        let kids = n.children.clone();
        let bits = ceil_log2(kids.len() + 1) + n.spec.child_extra;
        let (public, v6, internet, dedicated, departments) =
            (n.public, n.public_v6, n.internet, n.dedicated, n.departments.clone());
        nodes[i].child_bits = if kids.is_empty() { 0 } else { bits };
        for (rank, &c) in kids.iter().enumerate() {
            let child = &mut nodes[c];
            let slot = (rank + child.spec.slot_shift as usize) as u128;
            child.public = public.sub(public.len + bits, slot);
            child.public_v6 = v6.sub(v6.len + 8, slot);
            child.internet = internet.sub(internet.len + bits, slot);
            child.dedicated = dedicated.map(|d| d.sub(d.len + bits, slot));
            let mut visible = departments.clone();
            visible.extend(child.spec.departments.iter().copied());
            child.departments = visible;
        }
        // Ids, in document order (parents first, which is this order too).
        let n = &mut nodes[i];
        for net in &n.spec.networks {
            let id = match (&net.id, &last_network) {
                (NetId::Derived, Some(prev)) => format!("{prev}-web"),
                (NetId::Pool(p), _) => NETWORK_POOL[*p as usize % NETWORK_POOL.len()].to_string(),
                (NetId::Fresh(b), _) => {
                    format!("{}{network_count}", NETWORK_BASES[*b as usize % NETWORK_BASES.len()])
                }
                (NetId::Derived, None) => format!("lan{network_count}"),
            };
            network_count += 1;
            last_network = Some(id.clone());
            n.network_ids.push(id);
        }
        for g in &n.spec.gateways {
            let id = match (g.reuse_id, gateway_count) {
                (true, c) if c > 0 => format!("gw{}", c - 1),
                _ => format!("gw{gateway_count}"),
            };
            gateway_count += 1;
            n.gateway_ids.push(id);
        }
    }
    let mut r =
        Renderer { nodes: &nodes, bodies: Vec::new(), gateway: 0, last_link: None, last_internet: None };
    for i in 0..nodes.len() {
        let body = r.node_body(i);
        r.bodies.push(body);
    }
    let mut out = String::from("plan: generated\n");
    if !spec.operators.is_empty() && !nodes.is_empty() {
        out.push_str("operators:\n");
        for (k, o) in spec.operators.iter().enumerate() {
            let scope = &nodes[o.scope as usize % nodes.len()].code;
            let role = ROLES[o.role as usize % ROLES.len()];
            let _ = writeln!(out, "  - {{ id: op{k}, scope: \"{scope}\", role: {role} }}");
        }
    }
    out.push_str("nodes:\n");
    for i in 0..spec.levels[0].len() {
        r.emit(i, 2, &mut out);
    }
    out
}

pub(crate) fn ceil_log2(n: usize) -> u8 {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as u8
}

pub(crate) struct Renderer<'a> {
    pub(crate) nodes: &'a [RNode<'a>],
    pub(crate) bodies: Vec<String>,
    /// Gateways rendered so far (their link subnets are numbered by it).
    pub(crate) gateway: usize,
    /// The previous gateway's first uplink subnet.
    pub(crate) last_link: Option<Block>,
    pub(crate) last_internet: Option<Block>,
}

/// An interface as routes need it.
pub(crate) struct Itf {
    pub(crate) zone: Option<String>,
    pub(crate) subnet: Block,
    /// The gateway's own host number on the subnet.
    pub(crate) host: u128,
}

impl Renderer<'_> {
    pub(crate) fn emit(&self, i: usize, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        for (k, line) in self.bodies[i].lines().enumerate() {
            let lead = if k == 0 { "- " } else { "  " };
            let _ = writeln!(out, "{pad}{lead}{line}");
        }
        if !self.nodes[i].children.is_empty() {
            let _ = writeln!(out, "{pad}  children:");
            for &c in &self.nodes[i].children {
                self.emit(c, indent + 4, out);
            }
        }
    }

    /// The node's keys, at column 0.
    pub(crate) fn node_body(&mut self, i: usize) -> String {
        let n = &self.nodes[i];
        let s = n.spec;
        let mut o = String::new();
        let _ = writeln!(o, "code: \"{}\"\nname: n{}\nlevel: {}", n.code, n.code, LEVELS[n.level.min(3)]);
        if !s.departments.is_empty() {
            o.push_str("departments:\n");
            for d in &s.departments {
                let _ = writeln!(o, "  - {{ id: {d}, name: {d} department }}");
            }
        }
        // The node's own area: after its children's slots, in quarters.
        let own = if n.children.is_empty() {
            n.public
        } else {
            n.public.sub(n.public.len + n.child_bits, n.children.len() as u128)
        };
        let children: Vec<Block> = n.children.iter().map(|&c| self.nodes[c].public).collect();
        let q = |k| Area::new(own.sub(own.len + 2, k));
        let mut area = OwnArea { quarters: [q(0), q(1), q(2), q(3)], children };
        let internet_own = if n.children.is_empty() {
            n.internet
        } else {
            n.internet.sub(n.internet.len + n.child_bits, n.children.len() as u128)
        };
        let mut internet_area = Area::new(internet_own);
        let internet_block = match s.internet {
            Internet::None => None,
            Internet::Slot => Some(n.internet),
            Internet::Stray(k) => Some(Block::parse(STRAY_INTERNET[k as usize % STRAY_INTERNET.len()])),
        };
        let mut alloc = Vec::new();
        if s.public {
            alloc.push(format!("  public: [{}]", n.public));
        }
        if s.public_v6 {
            alloc.push(format!("  public_v6: [\"{}\"]", n.public_v6));
        }
        if let Some(b) = internet_block {
            alloc.push(format!("  internet: [{b}]"));
        }
        // A dedicated VPN for a department declared here or above (none, if none is).
        if !s.dedicated.is_empty() && !n.departments.is_empty() {
            alloc.push("  dedicated:".into());
            for &d in &s.dedicated {
                let dept = n.departments[d as usize % n.departments.len()];
                let k = DEPARTMENTS.iter().position(|x| *x == dept).unwrap_or(0);
                alloc.push(format!("    - {{ department: {dept}, ipv4: [{}] }}", n.dedicated[k]));
            }
        }
        if !alloc.is_empty() {
            let _ = writeln!(o, "allocations:\n{}", alloc.join("\n"));
        }
        // Legacy networks and their conversions.
        let mut networks: Vec<Vec<Block>> = Vec::new();
        let mut last_service: Option<(Block, usize)> = None;
        if !s.networks.is_empty() {
            o.push_str("legacy_networks:\n");
        }
        for (k, net) in s.networks.iter().enumerate() {
            // A second prefix apart from the first (overlap within a network is never legal).
            let mut prefixes = vec![Block::parse(LEGACY[net.prefixes[0] as usize % LEGACY.len()])];
            for &p in &net.prefixes[1..] {
                let apart: Vec<Block> = LEGACY
                    .iter()
                    .map(|t| Block::parse(t))
                    .filter(|b| prefixes.iter().all(|q| !overlap(*b, *q)))
                    .collect();
                if !apart.is_empty() {
                    prefixes.push(apart[p as usize % apart.len()]);
                }
            }
            let pick = |p: u8| prefixes[p as usize % prefixes.len()];
            let _ = writeln!(o, "  - id: {}\n    prefixes: [{}]", n.network_ids[k], list(&prefixes));
            if !net.netmaps.is_empty() {
                o.push_str("    netmap:\n");
            }
            // Sources from the start of each prefix, one after another; targets in quarter 0.
            let mut sources: Vec<Area> = prefixes.iter().map(|p| Area::new(*p)).collect();
            let mut last_source: Option<Block> = None;
            for m in &net.netmaps {
                let k = m.prefix as usize % prefixes.len();
                let len = (prefixes[k].len + 2 + m.extra).max(area.quarters[0].block.len + 2).min(32);
                let from = match (m.overlap, last_source) {
                    (true, Some(b)) => Block::at(false, b.addr, len),
                    _ => sources[k].alloc(len),
                };
                last_source = Some(from);
                let to = area.place(0, len, m.to);
                let _ = writeln!(o, "      - {{ from: {from}, to: {to} }}");
            }
            if let Some(napt) = &net.napt {
                let block = napt.block_size.map(|b| BLOCK_SIZES[b as usize % BLOCK_SIZES.len()]);
                // Deterministic NAPT maps one prefix (with two, only as a hazard).
                let deterministic = napt.deterministic && (prefixes.len() == 1 || napt.short);
                let pools: Vec<Block> = if deterministic {
                    // One prefix, just big enough for every host to own a block.
                    let hosts = 1u64 << (32 - prefixes[0].len);
                    let per_address = 64512 / u64::from(block.unwrap_or(256));
                    let needed = hosts.div_ceil(per_address) as usize;
                    let len = 32 - ceil_log2(needed) + u8::from(napt.short);
                    vec![area.place(1, len.min(32), napt.pools[0].1)]
                } else {
                    napt.pools.iter().map(|(len, p)| area.place(1, *len, *p)).collect()
                };
                let mut line = format!("    napt: {{ pool: [{}]", list(&pools));
                if let Some(b) = block {
                    let _ = write!(line, ", block_size: {b}");
                }
                if deterministic {
                    line.push_str(", deterministic: true");
                }
                match napt.filtering {
                    Some(true) => line.push_str(", filtering: endpoint-independent"),
                    Some(false) => line.push_str(", filtering: address-and-port-dependent"),
                    None => {}
                }
                let _ = writeln!(o, "{line} }}");
            }
            if !net.services.is_empty() {
                o.push_str("    services:\n");
            }
            for (j, sv) in net.services.iter().enumerate() {
                let name = SERVICE_NAMES[(j + net.services[0].name as usize) % SERVICE_NAMES.len()];
                let protocol = if sv.udp { "udp" } else { "tcp" };
                let inside = pick(sv.prefix).host(u128::from(sv.host));
                let inside_port = INSIDE_PORTS[sv.inside_port as usize % INSIDE_PORTS.len()];
                // Sharing the previous service's address, on another port.
                let (outside, port) = match (sv.share, last_service) {
                    (true, Some((b, prev))) => {
                        (b, prev + 1 + sv.outside_port as usize % (OUTSIDE_PORTS.len() - 1))
                    }
                    _ => (area.place(2, 32, sv.place), sv.outside_port as usize),
                };
                last_service = Some((outside, port));
                let outside_port = OUTSIDE_PORTS[port % OUTSIDE_PORTS.len()];
                let _ = writeln!(
                    o,
                    "      - {{ name: {name}, protocol: {protocol}, inside: \"{inside}:{inside_port}\", outside: \"{}:{outside_port}\" }}",
                    outside.host(0)
                );
            }
            let isolated: Vec<String> = net
                .isolated
                .iter()
                .map(|iso| {
                    let p = pick(iso.prefix);
                    match iso.hazard {
                        0 => p.sub(p.len + 2 + iso.extra, u128::MAX).to_string(),
                        1 => p.to_string(),
                        _ => "10.99.0.0/24".to_string(),
                    }
                })
                .collect();
            if !isolated.is_empty() {
                let _ = writeln!(o, "    isolated: [{}]", isolated.join(", "));
            }
            networks.push(prefixes);
        }
        // Gateways: network k is served by gateway k mod their number (and by hazard another).
        if !s.gateways.is_empty() {
            o.push_str("gateways:\n");
        }
        let count = s.gateways.len();
        for (g, gw) in s.gateways.iter().enumerate() {
            let _ = writeln!(o, "  - id: {}\n    interfaces:", n.gateway_ids[g]);
            let mut itfs: Vec<Itf> = Vec::new();
            let mut served: Vec<usize> = (0..networks.len()).filter(|k| k % count == g).collect();
            if let (Some(a), false) = (gw.also, networks.is_empty()) {
                let a = a as usize % networks.len();
                if !served.contains(&a) {
                    served.push(a);
                }
            }
            for (j, &k) in served.iter().enumerate() {
                let subnet = networks[k][0];
                let (name, vlan) = if gw.vlans {
                    ("lan0".to_string(), format!(", vlan: {}", 100 + j))
                } else {
                    (format!("lan{j}"), String::new())
                };
                let id = &n.network_ids[k];
                let _ = writeln!(
                    o,
                    "      - {{ name: {name}{vlan}, role: legacy, network: {id}, address: {} }}",
                    subnet.iface(1)
                );
                itfs.push(Itf { zone: Some(id.clone()), subnet, host: 1 });
            }
            let mut local = None;
            let mut first_link = None;
            for (j, up) in gw.uplinks.iter().enumerate() {
                let link = Block::parse(&format!("32.{}.{}.0/24", 2 * j, self.gateway % 250));
                let subnet = match up.kind {
                    UplinkKind::Link => link,
                    UplinkKind::Shared => self.last_link.unwrap_or(link),
                    UplinkKind::InPublic(p) => area.place(3, 30, p),
                    UplinkKind::Fixed => Block::parse(FIXED_UPLINK),
                };
                first_link.get_or_insert(subnet);
                let address = subnet.iface(1 + u128::from(up.second));
                local.get_or_insert_with(|| subnet.host(1 + u128::from(up.second)));
                let _ = writeln!(o, "      - {{ name: up{j}, role: extranet, address: {address} }}");
                itfs.push(Itf { zone: None, subnet, host: 1 + u128::from(up.second) });
            }
            if let (Some(collide), Some(block)) = (gw.internet, internet_block) {
                let subnet = match (collide, self.last_internet) {
                    (true, Some(b)) => b,
                    _ if block != n.internet => block.sub(29, 0),
                    _ => internet_area.alloc(29),
                };
                self.last_internet = Some(subnet);
                let _ = writeln!(
                    o,
                    "      - {{ name: inet0, role: internet-access, address: {} }}",
                    subnet.iface(1)
                );
                itfs.push(Itf { zone: Some(control::model::INTERNET_ACCESS.into()), subnet, host: 1 });
            }
            if let Some(t) = &gw.tunnel {
                let network = match t.network {
                    Some(k) if !networks.is_empty() => {
                        Some(n.network_ids[k as usize % networks.len()].clone())
                    }
                    _ => None,
                };
                let subnet = match network {
                    Some(_) => Block::parse(&format!("10.99.{}.0/30", self.gateway % 250)),
                    None => Block::parse(&format!("32.1.{}.0/30", self.gateway % 250)),
                };
                let remote = REMOTES[t.remote as usize % REMOTES.len()];
                let local = match (&local, t.wrong_local) {
                    (Some(l), false) => l.clone(),
                    _ => remote.to_string(),
                };
                let key = t.key.map(|k| format!(", key: {k}")).unwrap_or_default();
                let net = network.as_ref().map(|id| format!(" network: {id},")).unwrap_or_default();
                let _ = writeln!(
                    o,
                    "      - {{ name: gre0, role: tunnel,{net} address: {}, tunnel: {{ local: {local}, remote: {remote}{key} }} }}",
                    subnet.iface(1)
                );
                itfs.push(Itf { zone: network, subnet, host: 1 });
            }
            if !gw.routes.is_empty() && !itfs.is_empty() {
                o.push_str("    routes:\n");
                for rt in &gw.routes {
                    let itf = &itfs[rt.interface as usize % itfs.len()];
                    let peer = if itf.host == 1 { 2 } else { 1 };
                    let via = itf.subnet.host(peer + u128::from(rt.via));
                    let prefix = ROUTES[rt.prefix as usize % ROUTES.len()];
                    let net = itf.zone.as_ref().map(|z| format!(", network: {z}")).unwrap_or_default();
                    let _ = writeln!(o, "      - {{ prefix: {prefix}, via: {via}{net} }}");
                }
            }
            self.last_link = first_link;
            self.gateway += 1;
        }
        // Operators' rules, on this node's networks or its subtree's.
        if !s.policies.is_empty() {
            o.push_str("policies:\n");
        }
        let mut subtree = Vec::new();
        let mut stack = vec![i];
        while let Some(k) = stack.pop() {
            subtree.extend(self.nodes[k].network_ids.iter().cloned());
            stack.extend(self.nodes[k].children.iter().copied());
        }
        for (k, p) in s.policies.iter().enumerate() {
            let mut line =
                format!("  - {{ name: {}", POLICY_NAMES[(k + p.name as usize) % POLICY_NAMES.len()]);
            if let (Some(x), false) = (p.network, subtree.is_empty()) {
                let _ = write!(line, ", network: {}", subtree[x as usize % subtree.len()]);
            }
            if let Some(f) = p.from {
                let _ = write!(line, ", from: {}", LEGACY[f as usize % LEGACY.len()]);
            }
            if let Some(t) = p.to {
                let _ = write!(line, ", to: {}", LEGACY[t as usize % LEGACY.len()]);
            }
            let protocol = PROTOCOLS[p.protocol as usize % PROTOCOLS.len()];
            if let Some(proto) = protocol {
                let _ = write!(line, ", protocol: {proto}");
            }
            if let (Some(ports), Some("tcp" | "udp")) = (p.ports, protocol) {
                let _ = write!(line, ", ports: {}", PORT_SPECS[ports as usize % PORT_SPECS.len()]);
            }
            let _ = writeln!(o, "{line}, action: {} }}", ACTIONS[p.action as usize % ACTIONS.len()]);
        }
        o
    }
}

pub(crate) fn overlap(a: Block, b: Block) -> bool {
    let (a_last, b_last) = (a.addr + (a.size() - 1), b.addr + (b.size() - 1));
    a.v6 == b.v6 && a.addr <= b_last && b.addr <= a_last
}

pub(crate) fn list(blocks: &[Block]) -> String {
    blocks.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")
}
