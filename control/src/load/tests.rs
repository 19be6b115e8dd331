//! Loading plans: includes, file errors, limits, positions.

use std::time::{Duration, Instant};

use super::*;

fn errors(text: &str) -> Diagnostics {
    load_str(text, Path::new("p.yaml")).unwrap_err()
}

#[test]
fn malformed_prefix_names_file_line_and_column() {
    let text = "plan: t\nnodes:\n  - code: \"430100\"\n    name: n\n    level: prefecture\n    legacy_networks:\n      - id: lan\n        prefixes: [10.20.0.0/33]\n";
    let errs = errors(text);
    let d = &errs.0[0];
    assert_eq!((d.line, d.column), (8, 20), "{d}");
    assert!(d.to_string().starts_with("p.yaml:8:20: error: "), "{d}");
    assert_eq!(d.message, "expected an IPv4 prefix such as 10.20.0.0/24, found \"10.20.0.0/33\"");
    assert_eq!(d.path, "nodes[0].legacy_networks[0].prefixes[0]");
    assert_eq!(d.hint.as_deref(), Some("the length after / is a number 0-32"));
}

/// Writes `files` (name, text) into a temporary directory.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const PROVINCE: &str = "plan: p\nnodes:\n  - code: \"430000\"\n    name: Hunan\n    level: province\n    include: [changsha.yaml]\n";
const CITY: &str = "code: \"430100\"\nname: Changsha\nlevel: prefecture\ninclude: [furong.yaml]\n";
const COUNTY: &str = "code: \"430102\"\nname: Furong\nlevel: county\nlegacy_networks:\n  - id: lan\n    prefixes: [10.0.0.0/24, 10.0.0.0/25]\n";

#[test]
fn includes_nest_and_errors_point_into_the_included_file() {
    let dir = tree(&[("hunan.yaml", PROVINCE), ("changsha.yaml", CITY), ("furong.yaml", COUNTY)]);
    let lp = load_file(&dir.path().join("hunan.yaml")).unwrap();
    let codes: Vec<&str> = lp.plan.nodes().iter().map(|(_, n)| n.code.as_str()).collect();
    assert_eq!(codes, ["430000", "430100", "430102"]);
    let files: Vec<(&str, &str)> = lp
        .sources
        .iter()
        .map(|s| (s.prefix.as_str(), s.file.file_name().unwrap().to_str().unwrap()))
        .collect();
    assert_eq!(
        files,
        [
            ("", "hunan.yaml"),
            ("nodes[0].children[0]", "changsha.yaml"),
            ("nodes[0].children[0].children[0]", "furong.yaml")
        ]
    );
    // The county's overlapping prefixes are reported in furong.yaml, at line 6.
    let errs = crate::validate(&lp).unwrap_err();
    let d = &errs.0[0];
    assert!(d.file.ends_with("furong.yaml") && d.line == 6, "{d}");
    assert_eq!(d.path, "nodes[0].children[0].children[0].legacy_networks[0].prefixes[0]");
    let d = lp.error("nodes[0].children[0].level", "m", None);
    assert!(d.file.ends_with("changsha.yaml") && (d.line, d.column) == (3, 8), "{d}");
    let d = lp.error("nodes[0].children[0]", "m", None);
    assert!(d.file.ends_with("changsha.yaml") && (d.line, d.column) == (1, 1), "{d}");
}

#[test]
fn a_missing_include_and_an_include_cycle_are_named() {
    let dir = tree(&[("hunan.yaml", PROVINCE)]);
    let errs = load_file(&dir.path().join("hunan.yaml")).unwrap_err();
    let d = &errs.0[0];
    let missing = dir.path().join("changsha.yaml");
    assert_eq!(
        d.message,
        format!("cannot read included file {}: No such file or directory (os error 2)", missing.display())
    );
    assert!(d.file.ends_with("hunan.yaml") && (d.line, d.column) == (6, 15), "{d}");
    assert_eq!(d.path, "nodes[0].include[0]");

    let looped = CITY.replace("furong.yaml", "changsha.yaml");
    let dir = tree(&[("hunan.yaml", PROVINCE), ("changsha.yaml", &looped)]);
    let errs = load_file(&dir.path().join("hunan.yaml")).unwrap_err();
    let d = &errs.0[0];
    assert!(d.message.starts_with("include cycle: ") && d.message.contains("changsha.yaml -> "), "{d}");
    assert!(d.file.ends_with("changsha.yaml") && d.line == 4, "{d}");

    let broken = COUNTY.replace("10.0.0.0/25", "10.0.0.0/99");
    let dir = tree(&[("hunan.yaml", PROVINCE), ("changsha.yaml", CITY), ("furong.yaml", &broken)]);
    let errs = load_file(&dir.path().join("hunan.yaml")).unwrap_err();
    assert!(errs.0[0].file.ends_with("furong.yaml") && errs.0[0].line == 6, "{}", errs);
    assert_eq!(errs.0[0].path, "nodes[0].children[0].children[0].legacy_networks[0].prefixes[1]");
}

#[test]
fn includes_stay_inside_the_plans_directory_and_read_only_files() {
    let outside = tree(&[("secret.yaml", "code: \"430100\"\nname: s\nlevel: prefecture\n")]);
    let secret = outside.path().join("secret.yaml");
    let first = |dir: &tempfile::TempDir| load_file(&dir.path().join("hunan.yaml")).unwrap_err().0[0].clone();
    for (name, why) in [
        (secret.display().to_string(), "is not a relative path below the including file"),
        ("../secret.yaml".to_string(), "is not a relative path below the including file"),
        ("".to_string(), "is not a relative path below the including file"),
    ] {
        let dir = tree(&[("hunan.yaml", &PROVINCE.replace("changsha.yaml", &format!("{name:?}")))]);
        let d = first(&dir);
        assert!(d.message.contains(why), "{name}: {d}");
        assert_eq!((d.line, d.path.as_str()), (6, "nodes[0].include[0]"), "{d}");
    }
    // A symlink that leads out is refused; one that stays inside is followed.
    let dir = tree(&[("hunan.yaml", PROVINCE)]);
    std::os::unix::fs::symlink(&secret, dir.path().join("changsha.yaml")).unwrap();
    let d = first(&dir);
    assert!(d.message.contains("leads outside the plan's directory"), "{d}");
    let dir =
        tree(&[("hunan.yaml", PROVINCE), ("real.yaml", "code: \"430100\"\nname: c\nlevel: prefecture\n")]);
    std::os::unix::fs::symlink(dir.path().join("real.yaml"), dir.path().join("changsha.yaml")).unwrap();
    load_file(&dir.path().join("hunan.yaml")).unwrap();
    // A main file that is a symlink reads its includes beside its target.
    let dir = tree(&[("real.yaml", "code: \"430100\"\nname: c\nlevel: prefecture\n")]);
    std::fs::create_dir(dir.path().join("v2")).unwrap();
    std::fs::write(dir.path().join("v2/hunan.yaml"), PROVINCE.replace("changsha.yaml", "city.yaml")).unwrap();
    std::fs::write(dir.path().join("v2/city.yaml"), "code: \"430100\"\nname: c\nlevel: prefecture\n")
        .unwrap();
    std::os::unix::fs::symlink(dir.path().join("v2/hunan.yaml"), dir.path().join("current.yaml")).unwrap();
    load_file(&dir.path().join("current.yaml")).unwrap();
    // A FIFO would block the read and a directory cannot be read: neither is opened.
    let dir = tree(&[("hunan.yaml", PROVINCE)]);
    let fifo = dir.path().join("changsha.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
    assert!(made, "mkfifo");
    let d = first(&dir);
    assert!(d.message.ends_with("changsha.yaml: it is not a regular file"), "{d}");
    std::fs::remove_file(&fifo).unwrap();
    std::fs::create_dir(&fifo).unwrap();
    assert!(first(&dir).message.ends_with("it is not a regular file"));
    let d = load_file(Path::new("/dev/zero")).unwrap_err();
    assert!(d.0[0].message.contains("/dev/zero: it is not a regular file"), "{d}");
}

#[test]
fn problems_of_every_file_are_reported_together() {
    // The main file, the city and the county each have one.
    let province = PROVINCE.replace("name: Hunan", "name: Hunan\n    levle: x");
    let city = CITY.replace("prefecture", "city");
    let county = COUNTY.replace("10.0.0.0/25", "10.0.0.0/99");
    let dir = tree(&[("hunan.yaml", &province), ("changsha.yaml", &city), ("furong.yaml", &county)]);
    let errs = load_file(&dir.path().join("hunan.yaml")).unwrap_err();
    let got: Vec<(String, usize)> =
        errs.0.iter().map(|d| (d.file.file_name().unwrap().to_string_lossy().into_owned(), d.line)).collect();
    let want = [("hunan.yaml", 5), ("changsha.yaml", 3), ("furong.yaml", 6)];
    assert_eq!(got, want.map(|(f, l)| (f.to_string(), l)), "{errs}");
}

#[test]
fn duplicate_keys_are_named() {
    let errs = errors("plan: a\nplan: b\nnodes: []\n");
    assert_eq!(errs.0[0].message, "duplicate field \"plan\"", "{errs}");
    assert_eq!((errs.0[0].line, errs.0[0].column), (2, 1), "{errs}");
    let nested = "plan: a\nnodes:\n  - code: \"430100\"\n    name: n\n    # a comment\n    name: m\n    level: county\n";
    let errs = errors(nested);
    assert_eq!((errs.0[0].line, errs.0[0].column), (6, 5), "{errs}");
    assert_eq!(errs.0[0].hint.as_deref(), Some("it is first given at line 4, column 5"));
}

/// Syntax and type mistakes in one plan each, with where they must be reported.
#[test]
fn syntax_and_type_errors_are_located() {
    const BASE: &str = "plan: t\nnodes:\n  - code: \"430100\"\n    name: n\n    level: prefecture\n    legacy_networks:\n      - id: lan\n        prefixes: [10.20.0.0/24]\n        napt: { pool: [198.18.0.0/28], block_size: 64 }\n";
    let cases = [
        ("block_size: 64", "block_size: big", 9, "expected a whole number 0-65535, found \"big\""),
        (
            "block_size: 64",
            "block_size: 70000",
            9,
            "\"70000\" is out of range; expected a whole number 0-65535",
        ),
        ("level: prefecture", "level: township", 5, "unknown level \"township\""),
        (
            "[10.20.0.0/24]",
            "[10.20.0.0/-1]",
            8,
            "expected an IPv4 prefix such as 10.20.0.0/24, found \"10.20.0.0/-1\"",
        ),
        ("[10.20.0.0/24]", "10.20.0.0/24", 8, "expected a list of IPv4 prefixes, found \"10.20.0.0/24\""),
        ("      - id: lan", "    - id: lan", 7, "YAML syntax error: "),
        ("name: n", "name: [n", 4, "YAML syntax error: "),
    ];
    for (from, to, line, want) in cases {
        assert!(BASE.contains(from), "{from:?}");
        let errs = errors(&BASE.replacen(from, to, 1));
        let d = &errs.0[0];
        assert!(d.message.contains(want), "{to:?}: expected {want:?}, got {d}");
        assert!(d.line == line || d.line == line + 1, "{to:?}: expected line {line}, got {d}");
    }
}

#[test]
fn unknown_field_is_an_error() {
    let errs = errors("plan: t\nnodes: []\nnoeds: []\n");
    assert_eq!(
        errs.0[0].message,
        "unknown field \"noeds\" in the plan; the fields are plan, nodes, operators"
    );
    assert_eq!((errs.0[0].line, errs.0[0].column), (3, 1));
    assert!(errs.0[0].hint.as_deref().unwrap().starts_with("did you mean \"nodes\"?"), "{errs}");
}

#[test]
fn several_type_errors_in_one_file_are_all_reported() {
    let text = "plan: [t]\nnodes:\n  - code: \"430100\"\n    name: n\n    level: County\n    gateways:\n      - id: gw\n        interfaces:\n          - { name: e, role: extranet, vlan: 5000000, address: 10.0.0.1/24, tunnel: { local: 1.2.3.4, remote: x, key: 99999999999 } }\n        routes: [{ prefix: 10.0.0.0/8, via: \"1.2.3\" }]\n    policies:\n      - { name: p, ports: 99999, action: allow }\n";
    let got: Vec<String> =
        errors(text).0.iter().map(|d| d.to_string().lines().next().unwrap().to_string()).collect();
    let want = [
        "p.yaml:1:7: error: expected text, found a list (at plan)",
        "p.yaml:5:12: error: unknown level \"County\"; expected one of central, province, prefecture, county (at nodes[0].level)",
        "p.yaml:9:46: error: \"5000000\" is out of range; expected a whole number 0-65535 (at nodes[0].gateways[0].interfaces[0].vlan)",
        "p.yaml:9:111: error: expected an IPv4 address such as 192.0.2.1, found \"x\" (at nodes[0].gateways[0].interfaces[0].tunnel.remote)",
        "p.yaml:9:119: error: \"99999999999\" is out of range; expected a whole number 0-4294967295 (at nodes[0].gateways[0].interfaces[0].tunnel.key)",
        "p.yaml:10:45: error: expected an IPv4 address such as 192.0.2.1, found \"1.2.3\" (at nodes[0].gateways[0].routes[0].via)",
        "p.yaml:12:27: error: \"99999\" is out of range; expected a port 0-65535 (at nodes[0].policies[0].ports)",
        "p.yaml:12:42: error: unknown action \"allow\"; expected one of permit, deny, count (at nodes[0].policies[0].action)",
    ];
    assert_eq!(got, want);
}

#[test]
fn bytes_a_bom_bad_utf8_and_nul_are_handled_before_yaml() {
    let good = "plan: t\nnodes: []\n";
    let with_bom = [b"\xEF\xBB\xBF".as_slice(), good.as_bytes()].concat();
    assert_eq!(load_bytes(&with_bom, Path::new("p.yaml")).unwrap().plan.plan, "t");
    // Invalid UTF-8 at line 3, column 5 (four characters before it, one of them two bytes).
    let errs = load_bytes(b"plan: t\nnodes: []\n# \xC3\xA9 \xFF\x80\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(errs.0.len(), 2, "each bad byte is a sequence of its own: {errs}");
    assert_eq!(errs.0[0].to_string().lines().next().unwrap(), "p.yaml:3:5: error: invalid UTF-8 (byte 0xFF)");
    assert_eq!((errs.0[1].line, errs.0[1].column), (3, 6));
    let errs = load_str("plan: t\nnodes:\n  - name: \"a\u{0}b\"\n", Path::new("p.yaml")).unwrap_err();
    assert_eq!(
        errs.0[0].to_string().lines().next().unwrap(),
        "p.yaml:3:13: error: the character U+0000 (NUL) is not allowed in YAML"
    );
}

#[test]
fn hostile_nesting_and_aliases_are_refused_quickly() {
    let started = Instant::now();
    let errs = errors(&"[".repeat(100_000));
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(errs.0.len(), 1);
    assert_eq!(
        errs.0[0].to_string().lines().next().unwrap(),
        "p.yaml:1:65: error: nesting deeper than 64 levels"
    );

    let mut laughs = String::from("plan: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        laughs.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", ")));
    }
    let started = Instant::now();
    let errs = errors(&laughs);
    assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    assert_eq!(errs.0.len(), 1, "{errs}");
    assert_eq!(errs.0[0].message, "aliases in this file repeat more than 1000000 values in all");
}

#[test]
fn empty_and_odd_files_are_named_at_the_start() {
    for (text, want) in [
        ("", "p.yaml:1:1: error: the file is empty; expected a plan"),
        ("  # nothing\n", "p.yaml:1:1: error: the file is empty; expected a plan"),
        ("\n  just text\n", "p.yaml:1:1: error: expected a plan at the top of the file, found \"just text\""),
        (
            "plan: t\nnodes: []\n---\nplan: u\n",
            "p.yaml:3:1: error: a second YAML document starts here; a plan file holds one",
        ),
    ] {
        let errs = errors(text);
        assert_eq!(errs.0[0].to_string().lines().next().unwrap(), want, "{text:?}");
    }
}

#[test]
fn unreadable_and_oversized_files_name_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.yaml");
    let errs = load_file(&path).unwrap_err();
    assert_eq!(
        errs.0[0].message,
        format!("cannot read {}: No such file or directory (os error 2)", path.display())
    );
    // Sparse: refused from its size, unread.
    std::fs::File::create(&path).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
    let errs = load_file(&path).unwrap_err();
    assert_eq!(
        errs.0[0].message,
        format!(
            "cannot read {}: it is 268435457 bytes, over the 256 MiB a plan file may have",
            path.display()
        )
    );
}

/// Broken variants of the example plans: no message or hint may speak Rust or serde.
#[test]
fn messages_never_name_rust_types() {
    const PLANS: [&str; 3] = [
        include_str!("../../../configs/demo/plan.yaml"),
        include_str!("../../../configs/examples/conversions.yaml"),
        include_str!("../../../configs/examples/province-tree.yaml"),
    ];
    let replacements = [
        ": ",
        ": [",
        ": {",
        ": ~",
        ": \"x\"",
        ": 99999999999",
        ": -1",
        ": true",
        ": 1.5",
        ": 10.0.0.0/33",
        ": 10.0.0.1",
        ": *a",
        ": &a",
        ": !!str",
        ": \"80\"",
        ": |\n  x",
        "- ",
        "-",
        ":",
        "",
    ];
    let forbidden = [
        "untagged",
        "enum",
        "u8",
        "u16",
        "u32",
        "u64",
        "usize",
        "Ipv4",
        "Ipv6",
        "Net",
        "PortSpec",
        "String",
        "Vec",
        "Option",
        "invalid type",
        "invalid value",
        "unit value",
        "variant",
        "struct",
        "Ipv4Net",
        "Ipv4Addr",
        "SocketAddrV4",
        "Level",
        "Node",
        "Plan",
    ];
    let mut checked = 0;
    for plan in PLANS {
        for (n, line) in plan.lines().enumerate() {
            let Some(colon) = line.find(": ") else { continue };
            for r in replacements {
                let broken: String = plan
                    .lines()
                    .enumerate()
                    .map(|(i, l)| if i == n { format!("{}{r}", &line[..colon]) } else { l.to_string() })
                    .collect::<Vec<_>>()
                    .join("\n");
                let Err(errs) = load_str(&broken, Path::new("p.yaml")) else { continue };
                for d in &errs.0 {
                    let text = format!("{} {}", d.message, d.hint.as_deref().unwrap_or(""));
                    // Quoted values are the plan's own; the rest are the loader's words.
                    let outside_quotes: String = text.split('"').step_by(2).collect::<Vec<_>>().join(" ");
                    let words: Vec<&str> = outside_quotes.split(|c: char| !c.is_alphanumeric()).collect();
                    for term in forbidden {
                        let found = if term.contains(' ') {
                            outside_quotes.contains(term)
                        } else {
                            words.contains(&term)
                        };
                        assert!(!found, "{term:?} in {d}\nfrom {broken}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} messages");
}
