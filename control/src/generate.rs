//! Synthetic plans, deterministic and valid by construction: the province example in `configs/`
//! and the national-scale plan the benchmark validates and compiles.
//!
//! The layout is arithmetic, so every block can be checked by hand. For province `i`, prefecture
//! `j` and county `c` (all from 0):
//!
//! | zone              | national        | province      | prefecture     | county          |
//! |-------------------|-----------------|---------------|----------------|-----------------|
//! | public            | 32.0.0.0/5      | + i<<21 /11   | + j<<17 /15    | + c<<12 /20     |
//! | public, IPv6      | 2400:8000::/32  | /40           | /44            | /52             |
//! | internet-access   | 40.0.0.0/10     | + i<<16 /16   | + j<<12 /20    | + c<<7 /25      |
//! | dedicated, dept d | 10.0.0.0/8      | + i<<18 /14   | + j<<14 /18    | + c<<9 /23      |
//! | dedicated, IPv6   | fd00:d::/32     | /40           | /44            | /56             |
//!
//! Departments plan their own VPNs, so every department starts from 10.0.0.0/8 (allowed: only one
//! department's blocks must nest and stay disjoint). Each county's legacy networks reuse the same
//! RFC 1918 prefixes as every other county's, as real ones do, each in its own VRF. A county's
//! public /20 is cut in /24s: the first holds the uplink /30 and the NAPT pools, the next ones the
//! netmap targets, the last the published services.
//!
//! With more than 31 counties per prefecture (the 20k- and 50k-node benchmark plans) the layout
//! is dense: a county's blocks are public /23 (`c<<9`; its first /24 holds the uplink, the pool
//! and, at .241, the service; the second the netmap target), internet-access /27 (`c<<5`) and
//! dedicated /25 (`c<<7`), with one legacy network each.

use std::fmt::Write;

/// How big a plan to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    pub provinces: usize,
    pub prefectures: usize,
    pub counties: usize,
    pub departments: usize,
    /// Dedicated VPNs per county (a rotating subset of the departments).
    pub vpns_per_county: usize,
    pub networks_per_county: usize,
}

impl Scale {
    /// One province (Hunan: 14 prefectures, 126 counties), 36 departments.
    pub const PROVINCE: Scale = Scale {
        provinces: 1,
        prefectures: 14,
        counties: 9,
        departments: 36,
        vpns_per_county: 8,
        networks_per_county: 4,
    };
    /// 34 provinces, 2,720 counties, about 100k prefixes (3,095 nodes).
    pub const NATIONAL: Scale = Scale {
        provinces: 34,
        prefectures: 10,
        counties: 8,
        departments: 24,
        vpns_per_county: 4,
        networks_per_county: 3,
    };
    /// 19,925 nodes and 19,380 gateways: the dense layout (see [`Scale::dense`]).
    pub const NODES_20K: Scale = Scale {
        provinces: 34,
        prefectures: 15,
        counties: 38,
        departments: 24,
        vpns_per_county: 2,
        networks_per_county: 1,
    };
    /// 50,525 nodes and 49,980 gateways, the size `plan check` must handle in seconds.
    pub const NODES_50K: Scale = Scale { counties: 98, ..Scale::NODES_20K };

    /// More than 31 counties per prefecture take the dense layout: a county gets a /23 of
    /// public space (not a /20), a /27 of internet access and a /25 per VPN, so it has room for
    /// one legacy network.
    pub fn dense(&self) -> bool {
        self.counties > 31
    }

    /// The layout's limits (see the module table).
    pub fn check(&self) -> Result<(), String> {
        let limits = [
            ("provinces", self.provinces, 1, PROVINCES.len()),
            ("prefectures", self.prefectures, 1, 15),
            ("counties", self.counties, 1, 99),
            ("departments", self.departments, 1, DEPARTMENTS.len()),
            ("vpns-per-county", self.vpns_per_county, 0, self.departments),
            (
                "networks-per-county",
                self.networks_per_county,
                0,
                if self.dense() { 1 } else { NETWORKS.len() },
            ),
        ];
        for (name, v, lo, hi) in limits {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{name} is {v}; this generator's layout allows {lo}-{hi}"));
            }
        }
        Ok(())
    }
}

/// A generated plan and what is in it.
pub struct Generated {
    pub yaml: String,
    pub nodes: usize,
    pub gateways: usize,
    /// Every IPv4/IPv6 prefix written (allocations, legacy prefixes, conversions, addresses).
    pub prefixes: usize,
}

/// GB/T 2260 province-level codes and names (31 provinces, Hong Kong, Macao, Taiwan).
const PROVINCES: [(&str, &str); 34] = [
    ("11", "Beijing"),
    ("12", "Tianjin"),
    ("13", "Hebei"),
    ("14", "Shanxi"),
    ("15", "Inner Mongolia"),
    ("21", "Liaoning"),
    ("22", "Jilin"),
    ("23", "Heilongjiang"),
    ("31", "Shanghai"),
    ("32", "Jiangsu"),
    ("33", "Zhejiang"),
    ("34", "Anhui"),
    ("35", "Fujian"),
    ("36", "Jiangxi"),
    ("37", "Shandong"),
    ("41", "Henan"),
    ("42", "Hubei"),
    ("43", "Hunan"),
    ("44", "Guangdong"),
    ("45", "Guangxi"),
    ("46", "Hainan"),
    ("50", "Chongqing"),
    ("51", "Sichuan"),
    ("52", "Guizhou"),
    ("53", "Yunnan"),
    ("54", "Tibet"),
    ("61", "Shaanxi"),
    ("62", "Gansu"),
    ("63", "Qinghai"),
    ("64", "Ningxia"),
    ("65", "Xinjiang"),
    ("71", "Taiwan"),
    ("81", "Hong Kong"),
    ("82", "Macao"),
];

/// Hunan's prefectures, in code order (4301..4313, 4331), for the province example.
const HUNAN: [(&str, &str); 14] = [
    ("4301", "Changsha"),
    ("4302", "Zhuzhou"),
    ("4303", "Xiangtan"),
    ("4304", "Hengyang"),
    ("4305", "Shaoyang"),
    ("4306", "Yueyang"),
    ("4307", "Changde"),
    ("4308", "Zhangjiajie"),
    ("4309", "Yiyang"),
    ("4310", "Chenzhou"),
    ("4311", "Yongzhou"),
    ("4312", "Huaihua"),
    ("4313", "Loudi"),
    ("4331", "Xiangxi"),
];

const DEPARTMENTS: [(&str, &str); 40] = [
    ("tax", "Tax Service"),
    ("health", "Health Commission"),
    ("education", "Education Department"),
    ("public-security", "Public Security"),
    ("finance", "Finance Department"),
    ("civil-affairs", "Civil Affairs"),
    ("justice", "Justice Department"),
    ("hr-social", "Human Resources and Social Security"),
    ("natural-resources", "Natural Resources"),
    ("ecology", "Ecology and Environment"),
    ("housing", "Housing and Urban-Rural Development"),
    ("transport", "Transport Department"),
    ("water", "Water Resources"),
    ("agriculture", "Agriculture and Rural Affairs"),
    ("commerce", "Commerce Department"),
    ("culture", "Culture and Tourism"),
    ("emergency", "Emergency Management"),
    ("audit", "Audit Office"),
    ("market", "Market Regulation"),
    ("statistics", "Statistics Bureau"),
    ("medical-insurance", "Medical Security"),
    ("forestry", "Forestry Bureau"),
    ("veterans", "Veterans Affairs"),
    ("grain", "Grain and Reserves"),
    ("archives", "Archives Bureau"),
    ("sports", "Sports Bureau"),
    ("radio-tv", "Radio and Television"),
    ("customs", "Customs"),
    ("meteorology", "Meteorology"),
    ("earthquake", "Earthquake Agency"),
    ("tobacco", "Tobacco Monopoly"),
    ("post", "Postal Administration"),
    ("energy", "Energy Bureau"),
    ("drug", "Drug Administration"),
    ("intellectual-property", "Intellectual Property"),
    ("ethnic", "Ethnic Affairs"),
    ("religion", "Religious Affairs"),
    ("petitions", "Letters and Visits"),
    ("data", "Data Bureau"),
    ("courts", "Courts"),
];

/// Legacy network kinds: (name, its prefixes as `(second octet base, len)` in 10/8 or 172.16/12).
/// They overlap each other on purpose, as the networks they stand for do.
const NETWORKS: [(&str, [u8; 4]); 6] = [
    ("tax-lan", [10, 0, 0, 16]),
    ("clinic", [10, 0, 0, 20]),
    ("school", [172, 16, 0, 16]),
    ("police-old", [172, 16, 0, 20]),
    ("water-scada", [10, 1, 0, 16]),
    ("archive", [172, 17, 0, 16]),
];

fn v4(a: u32, len: u8) -> String {
    format!("{}/{len}", std::net::Ipv4Addr::from(a))
}

fn v6(segments: [u16; 8], len: u8) -> String {
    format!("\"{}/{len}\"", std::net::Ipv6Addr::from(segments))
}

/// The blocks of one node (`i`, `j`, `c` are `None` above its level).
struct Place {
    i: u32,
    j: Option<u32>,
    c: Option<u32>,
    dense: bool,
}

impl Place {
    fn public(&self) -> String {
        v4(self.public_base(), [11, 15, if self.dense { 23 } else { 20 }][self.depth()])
    }
    /// The first address of the node's public block.
    fn public_base(&self) -> u32 {
        let (j, c) = (self.j.unwrap_or(0), self.c.unwrap_or(0));
        (32 << 24) | (self.i << 21) | (j << 17) | (c << if self.dense { 9 } else { 12 })
    }
    fn public_v6(&self) -> String {
        let (j, c) = (self.j.unwrap_or(0), self.c.unwrap_or(0));
        let s2 = ((self.i << 8) | (j << 4) | (c >> 4)) as u16;
        v6([0x2400, 0x8000, s2, ((c & 0xf) << 12) as u16, 0, 0, 0, 0], [40, 44, 52][self.depth()])
    }
    fn internet(&self) -> String {
        let (j, c) = (self.j.unwrap_or(0), self.c.unwrap_or(0));
        let a = (40 << 24) | (self.i << 16) | (j << 12) | (c << if self.dense { 5 } else { 7 });
        v4(a, [16, 20, if self.dense { 27 } else { 25 }][self.depth()])
    }
    fn dedicated(&self, d: u32) -> (String, String) {
        let (j, c) = (self.j.unwrap_or(0), self.c.unwrap_or(0));
        let a = (10 << 24) | (self.i << 18) | (j << 14) | (c << if self.dense { 7 } else { 9 });
        let s = [0xfd00, d as u16, ((self.i << 8) | (j << 4)) as u16, (c << 8) as u16, 0, 0, 0, 0];
        (v4(a, [14, 18, if self.dense { 25 } else { 23 }][self.depth()]), v6(s, [40, 44, 56][self.depth()]))
    }
    fn depth(&self) -> usize {
        match (self.j, self.c) {
            (None, _) => 0,
            (Some(_), None) => 1,
            (Some(_), Some(_)) => 2,
        }
    }
}

struct Writer {
    out: String,
    prefixes: usize,
    nodes: usize,
    gateways: usize,
}

impl Writer {
    fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.out, "{:indent$}{text}", "");
        // Every prefix written has a '/' followed by its length; a count good enough to size
        // the benchmark, and exact for what this generator writes.
        self.prefixes += text.matches('/').count();
    }
}

/// Generates a plan. The same scale always gives the same text.
pub fn generate(scale: &Scale) -> Result<Generated, String> {
    scale.check()?;
    let mut w = Writer { out: String::new(), prefixes: 0, nodes: 0, gateways: 0 };
    let province_only = scale.provinces == 1;
    w.line(0, "# Generated by `hutong plan generate`; the layout is in the control crate, generate.rs.");
    w.line(0, &format!("plan: synthetic-{}", if province_only { "province" } else { "national" }));
    w.line(0, "nodes:");
    if province_only {
        // Hunan, standing alone: the province is the root and declares the departments.
        province(&mut w, scale, 17, 0, 1, true);
    } else {
        w.nodes += 1;
        w.line(2, "- code: \"100000\"");
        w.line(4, "name: National e-government extranet");
        w.line(4, "level: central");
        departments(&mut w, scale, 4);
        w.line(4, "allocations:");
        w.line(6, "public: [32.0.0.0/5]");
        w.line(6, "public_v6: [\"2400:8000::/32\"]");
        w.line(6, "internet: [40.0.0.0/10]");
        w.line(6, "dedicated:");
        for (d, (id, _)) in DEPARTMENTS[..scale.departments].iter().enumerate() {
            let v6 = v6([0xfd00, d as u16, 0, 0, 0, 0, 0, 0], 32);
            w.line(8, &format!("- {{ department: {id}, ipv4: [10.0.0.0/8], ipv6: [{v6}] }}"));
        }
        w.line(4, "children:");
        for i in 0..scale.provinces {
            province(&mut w, scale, i, i as u32, 6, false);
        }
    }
    Ok(Generated { yaml: w.out, nodes: w.nodes, gateways: w.gateways, prefixes: w.prefixes })
}

fn departments(w: &mut Writer, scale: &Scale, indent: usize) {
    w.line(indent, "departments:");
    for (id, name) in &DEPARTMENTS[..scale.departments] {
        w.line(indent + 2, &format!("- {{ id: {id}, name: {name} }}"));
    }
}

fn allocations(w: &mut Writer, at: &Place, vpns: &[usize], indent: usize) {
    w.line(indent, "allocations:");
    w.line(indent + 2, &format!("public: [{}]", at.public()));
    w.line(indent + 2, &format!("public_v6: [{}]", at.public_v6()));
    w.line(indent + 2, &format!("internet: [{}]", at.internet()));
    if vpns.is_empty() {
        return;
    }
    w.line(indent + 2, "dedicated:");
    for &d in vpns {
        let (a4, a6) = at.dedicated(d as u32);
        let id = DEPARTMENTS[d].0;
        w.line(indent + 4, &format!("- {{ department: {id}, ipv4: [{a4}], ipv6: [{a6}] }}"));
    }
}

/// Province `p` of [`PROVINCES`], laid out in slot `i`.
fn province(w: &mut Writer, scale: &Scale, p: usize, i: u32, indent: usize, root: bool) {
    let (code, name) = PROVINCES[p];
    w.nodes += 1;
    w.line(indent, &format!("- code: \"{code}0000\""));
    let indent = indent + 2;
    w.line(indent, &format!("name: {name}"));
    w.line(indent, "level: province");
    if root {
        departments(w, scale, indent);
    }
    let all: Vec<usize> = (0..scale.departments).collect();
    allocations(w, &Place { i, j: None, c: None, dense: scale.dense() }, &all, indent);
    w.line(indent, "children:");
    for j in 0..scale.prefectures {
        let (pcode, pname) = if let Some((c, n)) = HUNAN.get(j).filter(|_| code == "43") {
            (c.to_string(), n.to_string())
        } else {
            (format!("{code}{:02}", j + 1), format!("{name} prefecture {}", j + 1))
        };
        w.nodes += 1;
        w.line(indent + 2, &format!("- code: \"{pcode}00\""));
        let indent = indent + 4;
        w.line(indent, &format!("name: {pname}"));
        w.line(indent, "level: prefecture");
        let at = Place { i, j: Some(j as u32), c: None, dense: scale.dense() };
        allocations(w, &at, &all, indent);
        w.line(indent, "children:");
        for c in 0..scale.counties {
            county(w, scale, &pcode, &pname, i, j as u32, c as u32, indent + 2);
        }
    }
}

#[allow(clippy::too_many_arguments)] // the place in the tree, spelled out
fn county(w: &mut Writer, scale: &Scale, pcode: &str, pname: &str, i: u32, j: u32, c: u32, indent: usize) {
    let code = format!("{pcode}{:02}", c + 1);
    w.nodes += 1;
    w.line(indent, &format!("- code: \"{code}\""));
    let indent = indent + 2;
    w.line(indent, &format!("name: {pname} county {}", c + 1));
    w.line(indent, "level: county");
    let at = Place { i, j: Some(j), c: Some(c), dense: scale.dense() };
    // A rotating subset, so every department has VPNs somewhere in each prefecture.
    let first = (c as usize * 5 + j as usize * 3) % scale.departments;
    let vpns: Vec<usize> = (0..scale.vpns_per_county).map(|t| (first + t) % scale.departments).collect();
    allocations(w, &at, &vpns, indent);
    if scale.networks_per_county == 0 {
        return;
    }
    let base = at.public_base();
    w.line(indent, "legacy_networks:");
    for (n, (kind, [a, b, _, len])) in NETWORKS[..scale.networks_per_county].iter().enumerate() {
        let inside = (u32::from(*a) << 24) | (u32::from(*b) << 16);
        let n32 = n as u32;
        w.line(indent + 2, &format!("- id: {kind}-{code}"));
        w.line(indent + 4, &format!("prefixes: [{}]", v4(inside, *len)));
        // The first /24 is netmapped 1:1; its /24 number n+1 of the county's /20.
        let to = base + ((n32 + 1) << 8);
        w.line(
            indent + 4,
            &format!("netmap: [{{ from: {}, to: {} }}]", v4(inside + (1 << 8), 24), v4(to, 24)),
        );
        w.line(indent + 4, "napt:");
        w.line(indent + 6, &format!("pool: [{}]", v4(base + ((n32 + 1) << 4), 28)));
        if *len >= 20 {
            // Small enough for deterministic NAPT: 4,096 hosts x 64 ports fit a /28.
            w.line(indent + 6, "block_size: 64");
            w.line(indent + 6, "deterministic: true");
        }
        let service = v4(inside + (5 << 8) + 8, 32);
        // The /20's last /24; in the dense layout's /23, the top of the first /24.
        let services = if scale.dense() { base + 240 } else { base + (15 << 8) };
        let outside = std::net::Ipv4Addr::from(services + n32 + 1);
        w.line(
            indent + 4,
            &format!(
                "services: [{{ name: portal, protocol: tcp, inside: \"{}:8080\", outside: \"{outside}:80\" }}]",
                service.trim_end_matches("/32")
            ),
        );
        if *len == 16 {
            w.line(indent + 4, &format!("isolated: [{}]", v4(inside + (200 << 8), 24)));
        }
    }
    w.gateways += 1;
    w.line(indent, "gateways:");
    w.line(indent + 2, &format!("- id: gw-{code}"));
    w.line(indent + 4, "interfaces:");
    for (n, (kind, [a, b, _, len])) in NETWORKS[..scale.networks_per_county].iter().enumerate() {
        let address = format!("{a}.{b}.0.1/{len}");
        w.line(
            indent + 6,
            &format!(
                "- {{ name: legacy0, vlan: {}, role: legacy, network: {kind}-{code}, address: {address} }}",
                100 + n
            ),
        );
    }
    w.line(indent + 6, &format!("- {{ name: uplink0, role: extranet, address: {} }}", v4(base + 1, 30)));
    w.line(
        indent + 4,
        &format!("routes: [{{ prefix: 0.0.0.0/0, via: {} }}]", std::net::Ipv4Addr::from(base + 2)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(g: &Generated) -> crate::load::LoadedPlan {
        let lp = crate::load::load_str(&g.yaml, std::path::Path::new("generated.yaml")).unwrap();
        if let Err(d) = crate::validate::validate(&lp) {
            panic!("{d}");
        }
        lp
    }

    #[test]
    fn the_province_scale_is_valid_and_the_size_it_says() {
        let g = generate(&Scale::PROVINCE).unwrap();
        let lp = check(&g);
        assert_eq!(g.nodes, 1 + 14 + 14 * 9);
        assert_eq!(lp.plan.nodes().len(), g.nodes);
        assert_eq!(g.gateways, 126);
        assert!(g.yaml.contains("name: Xiangxi"), "Hunan's real prefectures are used");
        assert_eq!(g.yaml, generate(&Scale::PROVINCE).unwrap().yaml, "deterministic");
        let cfg = crate::compile::compile(&lp, "gw-433109").unwrap();
        assert_eq!(cfg.nat_pools.len(), 4);
    }

    #[test]
    fn a_small_national_plan_is_valid() {
        let scale = Scale { provinces: 3, prefectures: 2, counties: 2, ..Scale::NATIONAL };
        let g = generate(&scale).unwrap();
        check(&g);
        assert_eq!(g.nodes, 1 + 3 + 3 * 2 + 3 * 2 * 2);
    }

    #[test]
    fn scales_beyond_the_layout_are_refused() {
        let e = generate(&Scale { counties: 100, ..Scale::PROVINCE }).err().unwrap();
        assert!(e.contains("counties is 100"), "{e}");
        // The dense layout has room for one legacy network per county.
        let e = generate(&Scale { counties: 40, ..Scale::PROVINCE }).err().unwrap();
        assert!(e.contains("networks-per-county is 4; this generator's layout allows 0-1"), "{e}");
        assert!(generate(&Scale { vpns_per_county: 37, ..Scale::PROVINCE }).is_err());
    }

    #[test]
    fn a_small_dense_plan_is_valid() {
        let scale = Scale { provinces: 2, prefectures: 2, ..Scale::NODES_50K };
        let g = generate(&scale).unwrap();
        check(&g);
        assert_eq!((g.nodes, g.gateways), (1 + 2 + 2 * 2 + 2 * 2 * 98, 2 * 2 * 98));
    }
}
