//! The scenarios: what each device under test is asked to do with the offered frames, with
//! the rules each device gets for it (hutong's gateway config, Linux's nftables).

/// Deny rules in front of the permit in the deny-heavy scenario (the program scans up to 64
/// rules per VRF).
const DENY_RULES: u8 = 63;

/// What the devices under test are asked to do with the offered frames (10.20.0.0/24 → the
/// server), each device with its own rules for it, printed with the results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Netmap 10.20.0.0/24 → 198.18.20.0/24, one rule.
    Netmap,
    /// The same netmap behind 63 deny rules the frames do not match: every frame is checked
    /// against all of them first.
    DenyHeavy,
    /// NAPT onto a pool of four addresses, the 1,000 flows' sessions established beforehand.
    #[value(name = "napt-1k")]
    Napt,
    /// The same with 100,000 established flows: the session table's size, not its speed.
    #[value(name = "napt-100k")]
    Napt100k,
    /// The same NAPT, every frame a flow never seen before: the rate of sessions set up, their
    /// first frame delivered (RFC 9693's connection establishment rate).
    #[value(name = "napt-new")]
    NaptNew,
    /// NAPT onto 64 addresses (room for 4 million sessions): the most sessions a device holds
    /// at once, every one answered (RFC 9693's connection tracking table capacity).
    #[value(name = "napt-capacity")]
    NaptCapacity,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Netmap,
        Scenario::DenyHeavy,
        Scenario::Napt,
        Scenario::Napt100k,
        Scenario::NaptNew,
        Scenario::NaptCapacity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Netmap => "netmap",
            Scenario::DenyHeavy => "deny-heavy policy",
            Scenario::Napt => "NAPT, 1k established flows",
            Scenario::Napt100k => "NAPT, 100k established flows",
            Scenario::NaptNew => "NAPT, new-session rate",
            Scenario::NaptCapacity => "NAPT, session capacity",
        }
    }

    /// The source addresses (address, mask) a correctly translated frame has.
    pub(super) fn expect_src(self) -> ([u8; 4], [u8; 4]) {
        match self {
            Scenario::Netmap | Scenario::DenyHeavy => ([198, 18, 20, 0], [255, 255, 255, 0]),
            Scenario::Napt | Scenario::Napt100k | Scenario::NaptNew => {
                ([198, 18, 30, 0], [255, 255, 255, 252])
            }
            Scenario::NaptCapacity => ([198, 18, 30, 0], [255, 255, 255, 192]),
        }
    }

    /// The gateway config, as a plan would compile it.
    pub fn gateway_config(self) -> dataplane::Config {
        let mut c = dataplane::Config::from_json(GATEWAY_BASE).expect("the bench config is valid");
        let rule = |name: String, src: &str, action| dataplane::Rule {
            name,
            vrf: 1,
            src: Some(src.parse().expect("a prefix")),
            dst: None,
            proto: None,
            src_ports: None,
            dst_ports: None,
            action,
        };
        match self {
            Scenario::Netmap => {}
            Scenario::DenyHeavy => {
                let mut rules: Vec<dataplane::Rule> = (0..DENY_RULES)
                    .map(|i| rule(format!("deny-{i}"), &format!("172.16.{i}.0/24"), dataplane::Action::Deny))
                    .collect();
                rules.append(&mut c.policies);
                c.policies = rules;
            }
            Scenario::Napt | Scenario::Napt100k | Scenario::NaptNew | Scenario::NaptCapacity => {
                c.netmaps.clear();
                let mut pool = dataplane::config::NatPool::defaults(
                    "bench".into(),
                    1,
                    0,
                    vec!["198.18.30.0/30".parse().expect("a prefix")],
                );
                if self == Scenario::NaptCapacity {
                    // Ports are not the limit: 64 addresses, 16,384 ports for each of the 250
                    // hosts (64 blocks of 256), 4 million sessions in all.
                    pool.addresses = vec!["198.18.30.0/26".parse().expect("a prefix")];
                    pool.max_blocks_per_host = 64;
                }
                c.nat_pools = vec![pool];
                c.policies = vec![rule(
                    "out".into(),
                    "10.20.0.0/24",
                    dataplane::Action::Napt { pool: "bench".into() },
                )];
            }
        }
        c.validate().expect("the bench config is valid");
        c
    }

    /// The nftables rules that do the same on Linux.
    pub fn nft(self) -> String {
        let netmap =
            "    ip saddr 10.20.0.0/24 snat ip prefix to ip saddr map { 10.20.0.0/24 : 198.18.20.0/24 }\n";
        let post = |rule: &str| {
            format!(
                "  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n{rule}  }}\n"
            )
        };
        match self {
            Scenario::Netmap => format!("table ip hutong_bench {{\n{}}}\n", post(netmap)),
            Scenario::DenyHeavy => {
                let denies: String =
                    (0..DENY_RULES).map(|i| format!("    ip saddr 172.16.{i}.0/24 drop\n")).collect();
                format!(
                    "table ip hutong_bench {{\n  chain filter_forward {{\n    type filter hook forward priority filter; policy accept;\n{denies}  }}\n{}}}\n",
                    post(netmap)
                )
            }
            Scenario::Napt | Scenario::Napt100k | Scenario::NaptNew => format!(
                "table ip hutong_bench {{\n{}}}\n",
                post("    ip saddr 10.20.0.0/24 snat to 198.18.30.0-198.18.30.3\n")
            ),
            Scenario::NaptCapacity => format!(
                "table ip hutong_bench {{\n{}}}\n",
                post("    ip saddr 10.20.0.0/24 snat to 198.18.30.0-198.18.30.63\n")
            ),
        }
    }
}

/// The bench's gateway: legacy in0 (VRF 1), extranet out0 (VRF 0), the server through the sink,
/// and the netmap the scenarios start from.
const GATEWAY_BASE: &str = r#"{
  "gateway": "gw-bench",
  "vrfs": [{"id": 0, "name": "extranet"}, {"id": 1, "name": "legacy"}],
  "ports": [
    {"name": "in0", "role": "legacy", "vrf": 1, "addresses": ["10.20.0.1/24"]},
    {"name": "out0", "role": "extranet", "vrf": 0, "addresses": ["198.19.0.1/24"]}
  ],
  "netmaps": [{"inside_vrf": 1, "inside": "10.20.0.0/24", "outside_vrf": 0, "outside": "198.18.20.0/24"}],
  "routes": [{"vrf": 0, "prefix": "0.0.0.0/0", "port": "out0", "via": "198.19.0.2"}],
  "policies": [{"name": "out", "vrf": 1, "src": "10.20.0.0/24", "action": "netmap"}]
}"#;
