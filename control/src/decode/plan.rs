//! The plan's mappings, one function per model type: which fields each has, which are required,
//! and how each field's value is read. The model (model.rs) is the contract: the field names,
//! the enum spellings of its serde attributes, and its defaults (a field with `#[serde(default)]`
//! is optional, and null stands for absent).

use super::{Decoder, Field, Seg, optional, required};
use crate::{
    model::{
        Allocations, DedicatedVpn, Department, FilteringName, Gateway, Interface, InterfaceRole,
        LegacyNetwork, Level, NaptConversion, NetmapRule, Node, Operator, OperatorRole, Plan, PolicyAction,
        PolicyRule, Protocol, PublishedService, StaticRoute, TunnelEnds,
    },
    yaml::{NodeId, Shape},
};

const LEVELS: &[(&str, Level)] = &[
    ("central", Level::Central),
    ("province", Level::Province),
    ("prefecture", Level::Prefecture),
    ("county", Level::County),
];
const OPERATOR_ROLES: &[(&str, OperatorRole)] =
    &[("admin", OperatorRole::Admin), ("operator", OperatorRole::Operator), ("viewer", OperatorRole::Viewer)];
const ACTIONS: &[(&str, PolicyAction)] =
    &[("permit", PolicyAction::Permit), ("deny", PolicyAction::Deny), ("count", PolicyAction::Count)];
const FILTERINGS: &[(&str, FilteringName)] = &[
    ("address-and-port-dependent", FilteringName::AddressAndPortDependent),
    ("endpoint-independent", FilteringName::EndpointIndependent),
];
const PROTOCOLS: &[(&str, Protocol)] = &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)];
const INTERFACE_ROLES: &[(&str, InterfaceRole)] = &[
    ("legacy", InterfaceRole::Legacy),
    ("extranet", InterfaceRole::Extranet),
    ("internet-access", InterfaceRole::InternetAccess),
    ("tunnel", InterfaceRole::Tunnel),
];

const PLAN: &[Field] = &[required("plan"), required("nodes"), optional("operators")];
const NODE: &[Field] = &[
    required("code"),
    required("name"),
    required("level"),
    optional("allocations"),
    optional("departments"),
    optional("legacy_networks"),
    optional("gateways"),
    optional("policies"),
    optional("children"),
    optional("include"),
];

impl Decoder<'_> {
    /// A main plan file.
    pub(crate) fn plan(&mut self) -> Option<Plan> {
        let root = self.top("a plan", PLAN)?;
        let mark = self.mark();
        let (mut name, mut nodes, mut operators) = (None, None, None);
        self.mapping(root, "the plan", PLAN, |d, field, v| match field {
            "plan" => name = d.text(v),
            "nodes" => nodes = d.list(v, "a list of nodes", Self::node),
            "operators" => operators = d.list(v, "a list of operators", Self::operator),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(Plan { plan: name?, nodes: nodes?, operators: operators.unwrap_or_default() })
    }

    /// A file named by an `include:` entry: one node.
    pub(crate) fn included_node(&mut self) -> Option<Node> {
        let root = self.top("a node", NODE)?;
        self.node(root)
    }

    fn operator(&mut self, id: NodeId) -> Option<Operator> {
        const FIELDS: &[Field] = &[required("id"), required("scope"), required("role")];
        let mark = self.mark();
        let (mut op, mut scope, mut role) = (None, None, None);
        self.mapping(id, "an operator", FIELDS, |d, field, v| match field {
            "id" => op = d.text(v),
            "scope" => scope = d.text(v),
            "role" => role = d.choice(v, "role", OPERATOR_ROLES),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(Operator { id: op?, scope: scope?, role: role? })
    }

    fn node(&mut self, id: NodeId) -> Option<Node> {
        let mark = self.mark();
        let (mut code, mut name, mut level, mut allocations) = (None, None, None, None);
        let (mut departments, mut legacy_networks, mut gateways, mut policies) = (None, None, None, None);
        let (mut children, mut inline_children, mut include) = (None, 0, Vec::new());
        self.mapping(id, "a node", NODE, |d, field, v| match field {
            "code" => code = d.text(v),
            "name" => name = d.text(v),
            "level" => level = d.choice(v, "level", LEVELS),
            "allocations" => allocations = d.optional(v, Self::allocations),
            "departments" => departments = d.list(v, "a list of departments", Self::department),
            "legacy_networks" => {
                legacy_networks = d.list(v, "a list of legacy networks", Self::legacy_network)
            }
            "gateways" => gateways = d.list(v, "a list of gateways", Self::gateway),
            "policies" => policies = d.list(v, "a list of policy rules", Self::policy),
            "children" => {
                if let Shape::Seq(items) = d.tree.shape(v) {
                    inline_children = items.len();
                }
                children = d.list(v, "a list of nodes", Self::node);
            }
            "include" => {
                include = d
                    .list(v, "a list of file names", |d, item| d.text(item).map(|name| (name, item)))
                    .unwrap_or_default();
            }
            _ => {}
        })?;
        // Included files follow the inline children, in order, after those children's own
        // includes: the order the merged plan lists them in.
        let mut included = Vec::new();
        if !include.is_empty() {
            let here = self.path_with(None);
            self.path.push(Seg::Field("include"));
            for (k, (file, entry)) in include.iter().enumerate() {
                self.path.push(Seg::Index(k));
                let child_path = format!("{here}.children[{}]", inline_children + included.len());
                match self.includes.include(file, &child_path) {
                    Ok(Some(node)) => included.push(node),
                    // Its problems are reported in its own file; this node is not whole.
                    Ok(None) => self.problems_found += 1,
                    Err((message, hint)) => self.report(*entry, message, hint),
                }
                self.path.pop();
            }
            self.path.pop();
        }
        self.clean_since(mark)?;
        let mut children = children.unwrap_or_default();
        children.extend(included);
        Some(Node {
            code: code?,
            name: name?,
            level: level?,
            allocations: allocations.unwrap_or_default(),
            departments: departments.unwrap_or_default(),
            legacy_networks: legacy_networks.unwrap_or_default(),
            gateways: gateways.unwrap_or_default(),
            policies: policies.unwrap_or_default(),
            children,
            // Read into `children` above.
            include: Vec::new(),
        })
    }

    fn allocations(&mut self, id: NodeId) -> Option<Allocations> {
        const FIELDS: &[Field] = &[
            optional("public"),
            optional("public_v6"),
            optional("internet"),
            optional("internet_v6"),
            optional("dedicated"),
        ];
        let mark = self.mark();
        let mut a = Allocations::default();
        self.mapping(id, "allocations", FIELDS, |d, field, v| {
            let (v4, v6) = ("a list of IPv4 prefixes", "a list of IPv6 prefixes");
            match field {
                "public" => a.public = d.list(v, v4, Self::prefix4).unwrap_or_default(),
                "public_v6" => a.public_v6 = d.list(v, v6, Self::prefix6).unwrap_or_default(),
                "internet" => a.internet = d.list(v, v4, Self::prefix4).unwrap_or_default(),
                "internet_v6" => a.internet_v6 = d.list(v, v6, Self::prefix6).unwrap_or_default(),
                "dedicated" => {
                    a.dedicated = d.list(v, "a list of dedicated VPNs", Self::dedicated).unwrap_or_default();
                }
                _ => {}
            }
        })?;
        self.clean_since(mark)?;
        Some(a)
    }

    fn dedicated(&mut self, id: NodeId) -> Option<DedicatedVpn> {
        const FIELDS: &[Field] = &[required("department"), optional("ipv4"), optional("ipv6")];
        let mark = self.mark();
        let (mut department, mut ipv4, mut ipv6) = (None, None, None);
        self.mapping(id, "a dedicated VPN", FIELDS, |d, field, v| match field {
            "department" => department = d.text(v),
            "ipv4" => ipv4 = d.list(v, "a list of IPv4 prefixes", Self::prefix4),
            "ipv6" => ipv6 = d.list(v, "a list of IPv6 prefixes", Self::prefix6),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(DedicatedVpn {
            department: department?,
            ipv4: ipv4.unwrap_or_default(),
            ipv6: ipv6.unwrap_or_default(),
        })
    }

    fn department(&mut self, id: NodeId) -> Option<Department> {
        const FIELDS: &[Field] = &[required("id"), required("name")];
        let mark = self.mark();
        let (mut dep, mut name) = (None, None);
        self.mapping(id, "a department", FIELDS, |d, field, v| match field {
            "id" => dep = d.text(v),
            "name" => name = d.text(v),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(Department { id: dep?, name: name? })
    }

    fn legacy_network(&mut self, id: NodeId) -> Option<LegacyNetwork> {
        const FIELDS: &[Field] = &[
            required("id"),
            required("prefixes"),
            optional("netmap"),
            optional("napt"),
            optional("services"),
            optional("isolated"),
        ];
        let mark = self.mark();
        let (mut net, mut prefixes, mut netmap, mut napt, mut services, mut isolated) =
            (None, None, None, None, None, None);
        self.mapping(id, "a legacy network", FIELDS, |d, field, v| match field {
            "id" => net = d.text(v),
            "prefixes" => prefixes = d.list(v, "a list of IPv4 prefixes", Self::prefix4),
            "netmap" => netmap = d.list(v, "a list of netmap rules", Self::netmap),
            "napt" => napt = d.optional(v, Self::napt),
            "services" => services = d.list(v, "a list of published services", Self::service),
            "isolated" => isolated = d.list(v, "a list of IPv4 prefixes", Self::prefix4),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(LegacyNetwork {
            id: net?,
            prefixes: prefixes?,
            netmap: netmap.unwrap_or_default(),
            napt,
            services: services.unwrap_or_default(),
            isolated: isolated.unwrap_or_default(),
        })
    }

    fn netmap(&mut self, id: NodeId) -> Option<NetmapRule> {
        const FIELDS: &[Field] = &[required("from"), required("to")];
        let mark = self.mark();
        let (mut from, mut to) = (None, None);
        self.mapping(id, "a netmap rule", FIELDS, |d, field, v| match field {
            "from" => from = d.prefix4(v),
            "to" => to = d.prefix4(v),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(NetmapRule { from: from?, to: to? })
    }

    fn napt(&mut self, id: NodeId) -> Option<NaptConversion> {
        const FIELDS: &[Field] =
            &[required("pool"), optional("block_size"), optional("deterministic"), optional("filtering")];
        let mark = self.mark();
        let (mut pool, mut block_size, mut deterministic, mut filtering) = (None, None, None, None);
        self.mapping(id, "a NAPT conversion", FIELDS, |d, field, v| match field {
            "pool" => pool = d.list(v, "a list of IPv4 prefixes", Self::prefix4),
            "block_size" => {
                block_size = d.optional(v, |d, v| d.number(v, "a whole number", u16::MAX.into()));
            }
            "deterministic" => deterministic = d.optional(v, Self::boolean),
            "filtering" => filtering = d.optional(v, |d, v| d.choice(v, "filtering", FILTERINGS)),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(NaptConversion {
            pool: pool?,
            block_size: block_size.map(|n| n as u16),
            deterministic: deterministic.unwrap_or(false),
            filtering,
        })
    }

    fn service(&mut self, id: NodeId) -> Option<PublishedService> {
        const FIELDS: &[Field] =
            &[required("name"), required("protocol"), required("inside"), required("outside")];
        let mark = self.mark();
        let (mut name, mut protocol, mut inside, mut outside) = (None, None, None, None);
        self.mapping(id, "a published service", FIELDS, |d, field, v| match field {
            "name" => name = d.text(v),
            "protocol" => protocol = d.choice(v, "protocol", PROTOCOLS),
            "inside" => inside = d.socket4(v),
            "outside" => outside = d.socket4(v),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(PublishedService { name: name?, protocol: protocol?, inside: inside?, outside: outside? })
    }

    fn gateway(&mut self, id: NodeId) -> Option<Gateway> {
        const FIELDS: &[Field] = &[required("id"), required("interfaces"), optional("routes")];
        let mark = self.mark();
        let (mut gw, mut interfaces, mut routes) = (None, None, None);
        self.mapping(id, "a gateway", FIELDS, |d, field, v| match field {
            "id" => gw = d.text(v),
            "interfaces" => interfaces = d.list(v, "a list of interfaces", Self::interface),
            "routes" => routes = d.list(v, "a list of static routes", Self::route),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(Gateway { id: gw?, interfaces: interfaces?, routes: routes.unwrap_or_default() })
    }

    fn interface(&mut self, id: NodeId) -> Option<Interface> {
        const FIELDS: &[Field] = &[
            required("name"),
            required("role"),
            optional("network"),
            optional("vlan"),
            required("address"),
            optional("tunnel"),
        ];
        let mark = self.mark();
        let (mut name, mut role, mut network, mut vlan, mut address, mut tunnel) =
            (None, None, None, None, None, None);
        self.mapping(id, "an interface", FIELDS, |d, field, v| match field {
            "name" => name = d.text(v),
            "role" => role = d.choice(v, "role", INTERFACE_ROLES),
            "network" => network = d.optional(v, Self::text),
            "vlan" => vlan = d.optional(v, |d, v| d.number(v, "a whole number", u16::MAX.into())),
            "address" => address = d.prefix4(v),
            "tunnel" => tunnel = d.optional(v, Self::tunnel),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(Interface {
            name: name?,
            role: role?,
            network,
            vlan: vlan.map(|n| n as u16),
            address: address?,
            tunnel,
        })
    }

    fn tunnel(&mut self, id: NodeId) -> Option<TunnelEnds> {
        const FIELDS: &[Field] = &[required("local"), required("remote"), optional("key")];
        let mark = self.mark();
        let (mut local, mut remote, mut key) = (None, None, None);
        self.mapping(id, "tunnel ends", FIELDS, |d, field, v| match field {
            "local" => local = d.address4(v),
            "remote" => remote = d.address4(v),
            "key" => key = d.optional(v, |d, v| d.number(v, "a whole number", u32::MAX.into())),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(TunnelEnds { local: local?, remote: remote?, key: key.map(|n| n as u32) })
    }

    fn route(&mut self, id: NodeId) -> Option<StaticRoute> {
        const FIELDS: &[Field] = &[required("prefix"), required("via"), optional("network")];
        let mark = self.mark();
        let (mut prefix, mut via, mut network) = (None, None, None);
        self.mapping(id, "a static route", FIELDS, |d, field, v| match field {
            "prefix" => prefix = d.prefix4(v),
            "via" => via = d.address4(v),
            "network" => network = d.optional(v, Self::text),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(StaticRoute { prefix: prefix?, via: via?, network })
    }

    fn policy(&mut self, id: NodeId) -> Option<PolicyRule> {
        const FIELDS: &[Field] = &[
            required("name"),
            optional("network"),
            optional("from"),
            optional("to"),
            optional("protocol"),
            optional("ports"),
            optional("source_ports"),
            required("action"),
        ];
        let mark = self.mark();
        let mut rule = PolicyRule {
            name: String::new(),
            network: None,
            from: None,
            to: None,
            protocol: None,
            ports: None,
            source_ports: None,
            action: PolicyAction::Deny,
        };
        let (mut name, mut action) = (None, None);
        self.mapping(id, "a policy rule", FIELDS, |d, field, v| match field {
            "name" => name = d.text(v),
            "network" => rule.network = d.optional(v, Self::text),
            "from" => rule.from = d.optional(v, Self::prefix4),
            "to" => rule.to = d.optional(v, Self::prefix4),
            "protocol" => rule.protocol = d.optional(v, Self::text),
            "ports" => rule.ports = d.optional(v, Self::ports),
            "source_ports" => rule.source_ports = d.optional(v, Self::ports),
            "action" => action = d.choice(v, "action", ACTIONS),
            _ => {}
        })?;
        self.clean_since(mark)?;
        Some(PolicyRule { name: name?, action: action?, ..rule })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::decode_file;

    /// (line, column, path, message) of each problem.
    fn problems(text: &str) -> Vec<(usize, usize, String, String)> {
        decode_file(text)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.pos.line, p.pos.column, p.path, p.message))
            .collect()
    }

    #[test]
    fn a_small_plan_decodes() {
        let text = "plan: t\nnodes:\n  - code: \"430100\"\n    name: n\n    level: prefecture\n    legacy_networks:\n      - id: lan\n        prefixes: [10.20.0.0/24]\n        napt: { pool: [198.18.0.0/28], block_size: 64, deterministic: true }\n    gateways:\n      - id: gw\n        interfaces:\n          - { name: eth0, role: legacy, network: lan, vlan: 7, address: 10.20.0.1/24 }\n          - { name: gre0, role: tunnel, address: 10.9.0.1/30, tunnel: { local: 1.1.1.1, remote: 2.2.2.2, key: 4000000000 } }\n    policies:\n      - { name: web, to: 10.20.0.0/24, protocol: tcp, ports: 80, source_ports: \"1024-65535\", action: permit }\noperators:\n  - { id: ops, scope: \"430100\", role: admin }\n";
        let plan = decode_file(text).unwrap();
        let node = &plan.nodes[0];
        assert_eq!(node.legacy_networks[0].napt.as_ref().unwrap().block_size, Some(64));
        assert_eq!(node.gateways[0].interfaces[0].vlan, Some(7));
        assert_eq!(node.gateways[0].interfaces[1].tunnel.as_ref().unwrap().key, Some(4_000_000_000));
        assert_eq!(node.policies[0].ports, Some(crate::model::PortSpec::One(80)));
        assert_eq!(plan.operators[0].role, crate::model::OperatorRole::Admin);
    }

    #[test]
    fn null_means_absent_or_empty() {
        let text = "plan: t\nnodes:\n  - code: \"1\"\n    name: n\n    level: county\n    allocations:\n    departments: ~\n    legacy_networks:\n      - { id: a, prefixes: , napt: null }\n    gateways:\n      - { id: g, interfaces: [{ name: e, role: extranet, address: 1.0.0.1/24, vlan: , network: ~ }] }\noperators:\n";
        let plan = decode_file(text).unwrap();
        let n = &plan.nodes[0];
        assert!(n.legacy_networks[0].prefixes.is_empty() && n.legacy_networks[0].napt.is_none());
        assert_eq!(n.gateways[0].interfaces[0].vlan, None);
        // A required text may not be empty.
        let errs = problems("plan:\nnodes: []\n");
        assert_eq!(errs, [(1, 1, "plan".into(), "expected text, found nothing".into())]);
    }

    #[test]
    fn every_problem_of_a_file_is_reported_in_document_order() {
        let text = "plan: t\nnodes:\n  - code: \"430100\"\n    level: township\n    legacy_networks:\n      - id: lan\n        prefixes: [10.20.0.0/33, 10.0.0.0/8]\n        napt: { pool: 198.18.0.0/28, block_size: 70000, deterministic: yes }\n    gateways:\n      - id: gw\n        interfaces:\n          - { name: eth0, role: legacy, vlan: big, address: 10.20.0.1 }\n        routes: [{ prefix: 0.0.0.0/0, via: 10.20.0.254, metric: 5 }]\n  - code: \"430200\"\n    name: ok\n    level: county\n";
        let got = problems(text);
        let want = [
            (3, 5, "nodes[0]", "missing field \"name\" in a node"),
            (
                4,
                12,
                "nodes[0].level",
                "unknown level \"township\"; expected one of central, province, prefecture, county",
            ),
            (
                7,
                20,
                "nodes[0].legacy_networks[0].prefixes[0]",
                "expected an IPv4 prefix such as 10.20.0.0/24, found \"10.20.0.0/33\"",
            ),
            (
                8,
                23,
                "nodes[0].legacy_networks[0].napt.pool",
                "expected a list of IPv4 prefixes, found \"198.18.0.0/28\"",
            ),
            (
                8,
                50,
                "nodes[0].legacy_networks[0].napt.block_size",
                "\"70000\" is out of range; expected a whole number 0-65535",
            ),
            (
                8,
                72,
                "nodes[0].legacy_networks[0].napt.deterministic",
                "expected true or false, found \"yes\"",
            ),
            (
                12,
                47,
                "nodes[0].gateways[0].interfaces[0].vlan",
                "expected a whole number 0-65535, found \"big\"",
            ),
            (
                12,
                61,
                "nodes[0].gateways[0].interfaces[0].address",
                "expected an IPv4 prefix such as 10.20.0.0/24, found \"10.20.0.1\"",
            ),
            (
                13,
                57,
                "nodes[0].gateways[0].routes[0]",
                "unknown field \"metric\" in a static route; the fields are prefix, via, network",
            ),
        ];
        let got: Vec<(usize, usize, &str, &str)> =
            got.iter().map(|(l, c, p, m)| (*l, *c, p.as_str(), m.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn top_level_shape_is_checked_at_the_start() {
        assert_eq!(problems(""), [(1, 1, String::new(), "the file is empty; expected a plan".to_string())]);
        assert_eq!(
            problems("# only a comment\n"),
            [(1, 1, String::new(), "the file is empty; expected a plan".to_string())]
        );
        assert_eq!(
            problems("\n\n- plan: x\n"),
            [(1, 1, String::new(), "expected a plan at the top of the file, found a list".to_string())]
        );
    }
}
