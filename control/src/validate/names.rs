//! Names and ids. Ids become file names (`compile --all -o DIR` writes `DIR/<gateway>.json`),
//! API path segments, VRF names and parts of generated rule names, so they come from one small
//! character set; generated names join ids with `:`, which no id may contain, so two generated
//! names can never collide. Interface names follow Linux's own rules.

use std::collections::HashMap;

use hutong_config::EXTRANET_VRF;

use super::Ctx;
use crate::{
    diagnostics::{near_miss, quote},
    model::INTERNET_ACCESS,
};

/// Longest id.
pub const ID_MAX: usize = 64;

/// Ids legacy networks may not take: the names of the VRFs every gateway has.
pub const RESERVED_NETWORK_IDS: [&str; 2] = ["extranet", INTERNET_ACCESS];

const ID_RULE: &str = "an id is 1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or a digit";

/// Why `id` is not an id, if it is not.
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("is empty".into());
    }
    if id.chars().count() > ID_MAX {
        return Some(format!("is {} characters long", id.chars().count()));
    }
    let (i, c) = id
        .chars()
        .enumerate()
        .find(|(i, c)| !(c.is_ascii_alphanumeric() || (*i > 0 && matches!(c, '.' | '_' | '-'))))?;
    let what = if i == 0 && matches!(c, '.' | '_' | '-') {
        "may not start an id".to_string()
    } else {
        "is not allowed".to_string()
    };
    Some(format!("character {} {} {what}", i + 1, quote(&c.to_string()).replace('"', "'")))
}

/// Linux's rule for an interface name (net/core/dev.c `dev_valid_name`): 1-15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace. hutong also keeps to printable ASCII, so that a name
/// in the plan reads the same as in `ip link`, and refuses `%`, which Linux reads as a
/// pattern (`eth%d`) when it creates a device.
pub fn interface_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > 15 {
        return Some(format!("is {} bytes long; Linux allows 15", name.len()));
    }
    if name == "." || name == ".." {
        return Some("is a directory name Linux refuses".into());
    }
    let (i, c) =
        name.chars().enumerate().find(|(_, c)| !c.is_ascii_graphic() || matches!(c, '/' | ':' | '%'))?;
    Some(format!("character {} {} is not allowed", i + 1, quote(&c.to_string()).replace('"', "'")))
}

impl Ctx<'_> {
    /// Reports `id` at `at` if it is not an id; `what` names it ("gateway id").
    pub fn check_id(&self, at: &str, what: &str, id: &str) -> bool {
        match id_problem(id) {
            None => true,
            Some(why) => {
                self.err(at, format!("{what} {} is not a valid id: {why}", quote(id)), Some(ID_RULE.into()));
                false
            }
        }
    }
}

/// Ids and names everywhere, and the plan-wide uniqueness of node codes, legacy network ids,
/// gateway ids and operator ids (each reported where it repeats, naming the first).
pub(super) fn check(cx: &Ctx) {
    let lp = cx.lp;
    if lp.plan.plan.trim().is_empty() {
        cx.err("plan", "the plan needs a name", Some("plan: <a name for it, e.g. the province>".into()));
    }
    if lp.plan.nodes.is_empty() {
        // Most likely a plan whose nodes went missing (`nodes:` left empty, an indentation slip).
        cx.err("nodes", "the plan has no nodes", Some("a plan describes at least one node".into()));
    }
    let mut codes: HashMap<&str, String> = HashMap::new();
    let mut networks: HashMap<&str, String> = HashMap::new();
    let mut gateways: HashMap<&str, String> = HashMap::new();
    let mut folded: HashMap<String, (String, &str)> = HashMap::new();
    let nodes: Vec<(&str, &crate::model::Node)> =
        cx.tree.nodes.iter().map(|t| (t.path.as_str(), t.node)).collect();
    for (path, node) in nodes {
        if node.code.len() != 6 || !node.code.bytes().all(|b| b.is_ascii_digit()) {
            cx.err(
                &format!("{path}.code"),
                format!("node code {} is not a GB/T 2260 division code", quote(&node.code)),
                Some("a division code is six digits, written in quotes".into()),
            );
        }
        if let Some(first) = first_use(&mut codes, &node.code, path) {
            let hint = format!("first used at {}", cx.place(&format!("{first}.code")));
            cx.err(
                &format!("{path}.code"),
                format!("node code {} is used twice", quote(&node.code)),
                Some(hint),
            );
        }
        if node.name.trim().is_empty() {
            cx.err(&format!("{path}.name"), "a node needs a name", None);
        }
        for (k, d) in node.departments.iter().enumerate() {
            cx.check_id(&format!("{path}.departments[{k}].id"), "department id", &d.id);
        }
        for (i, n) in node.legacy_networks.iter().enumerate() {
            let at = format!("{path}.legacy_networks[{i}]");
            if cx.check_id(&format!("{at}.id"), "legacy network id", &n.id)
                && RESERVED_NETWORK_IDS.contains(&n.id.as_str())
            {
                cx.err(
                    &format!("{at}.id"),
                    format!(
                        "legacy network id {} is reserved: it names a VRF every gateway has",
                        quote(&n.id)
                    ),
                    Some(format!(
                        "choose another id (reserved: {}; VRF {EXTRANET_VRF} is the extranet)",
                        RESERVED_NETWORK_IDS.join(", ")
                    )),
                );
            }
            if let Some(first) = first_use(&mut networks, &n.id, &at) {
                let hint = format!("first used at {}", cx.place(&format!("{first}.id")));
                cx.err(
                    &format!("{at}.id"),
                    format!("legacy network id {} is used twice", quote(&n.id)),
                    Some(hint),
                );
            }
            for (k, s) in n.services.iter().enumerate() {
                cx.check_id(&format!("{at}.services[{k}].name"), "service name", &s.name);
            }
        }
        for (i, g) in node.gateways.iter().enumerate() {
            let at = format!("{path}.gateways[{i}]");
            cx.check_id(&format!("{at}.id"), "gateway id", &g.id);
            if let Some(first) = first_use(&mut gateways, &g.id, &at) {
                let hint = format!("first used at {}", cx.place(&format!("{first}.id")));
                cx.err(&format!("{at}.id"), format!("gateway id {} is used twice", quote(&g.id)), Some(hint));
            } else if let Some((first, id)) = folded.get(&g.id.to_ascii_lowercase()) {
                // Each gateway's config is the file `<id>.json`: on a case-insensitive file
                // system (or an operator's eye) `GW.json` and `gw.json` are one.
                let hint = format!("first used at {}", cx.place(&format!("{first}.id")));
                cx.err(
                    &format!("{at}.id"),
                    format!("gateway id {} differs from gateway id {} only in case", quote(&g.id), quote(id)),
                    Some(hint),
                );
            } else {
                folded.insert(g.id.to_ascii_lowercase(), (at.clone(), g.id.as_str()));
            }
            for (k, itf) in g.interfaces.iter().enumerate() {
                if let Some(why) = interface_name_problem(&itf.name) {
                    cx.err(
                        &format!("{at}.interfaces[{k}].name"),
                        format!(
                            "interface name {} is not a valid Linux interface name: {why}",
                            quote(&itf.name)
                        ),
                        Some(
                            "1-15 printable ASCII characters, no '/', ':', '%' or spaces, not '.' or '..'"
                                .into(),
                        ),
                    );
                }
            }
        }
        for (i, r) in node.policies.iter().enumerate() {
            cx.check_id(&format!("{path}.policies[{i}].name"), "policy name", &r.name);
        }
    }
    let mut operators: HashMap<&str, String> = HashMap::new();
    for (i, o) in lp.plan.operators.iter().enumerate() {
        let at = format!("operators[{i}]");
        cx.check_id(&format!("{at}.id"), "operator id", &o.id);
        if let Some(first) = first_use(&mut operators, &o.id, &at) {
            let hint = format!("first used at {}", cx.place(&format!("{first}.id")));
            cx.err(&format!("{at}.id"), format!("operator id {} is used twice", quote(&o.id)), Some(hint));
        }
        if cx.tree.find(&o.scope).is_none() {
            let codes = cx.tree.nodes.iter().map(|t| t.node.code.as_str());
            let hint =
                near_miss(&o.scope, codes).unwrap_or_else(|| "use a node code of this plan, quoted".into());
            cx.err(
                &format!("{at}.scope"),
                format!("scope {} is not a node of the plan", quote(&o.scope)),
                Some(hint),
            );
        }
    }
}

/// Records `path` as where `key` is first used, or returns that first place if it already was.
fn first_use<'a>(seen: &mut HashMap<&'a str, String>, key: &'a str, path: &str) -> Option<String> {
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => Some(e.get().clone()),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(path.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_a_small_character_set() {
        for ok in ["gw-changsha", "li.na", "tax_office", "430100", "A1"] {
            assert_eq!(id_problem(ok), None, "{ok}");
        }
        assert_eq!(id_problem("../x").as_deref(), Some("character 1 '.' may not start an id"));
        assert_eq!(id_problem("/etc/x").as_deref(), Some("character 1 '/' is not allowed"));
        assert_eq!(id_problem("a:b").as_deref(), Some("character 2 ':' is not allowed"));
        assert_eq!(id_problem("city-hаll").as_deref(), Some("character 7 'а' is not allowed"));
        assert_eq!(id_problem("").as_deref(), Some("is empty"));
        assert!(id_problem(&"x".repeat(65)).unwrap().contains("65 characters"));
    }

    #[test]
    fn interface_names_follow_linux() {
        for ok in ["eth0", "legacy0", "bond0.100", "gre-clinic", "a_b"] {
            assert_eq!(interface_name_problem(ok), None, "{ok}");
        }
        for bad in ["", ".", "..", "eth 0", "eth:0", "a/b", "eth%d", "sixteen-chars-xx", "eth\t0", "éth0"] {
            assert!(interface_name_problem(bad).is_some(), "{bad:?} accepted");
        }
    }
}
