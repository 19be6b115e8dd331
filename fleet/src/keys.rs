//! Where everything lives in etcd. One prefix per jurisdiction: a node's plan fragment, and the
//! desired config and reported status of each of its gateways, all sit under the node's path of
//! GB/T 2260 codes, so that etcd's prefix permissions can say "this operator, this county".
//!
//! ```text
//! /hutong/v1/version                                  the latest push (every push rewrites it: the guard)
//! /hutong/v1/meta                                     plan name and operators (YAML)
//! /hutong/v1/pushes/<N>                               push N's record; its mod revision is push N's plan
//! /hutong/v1/rollout                                  the rollout in progress or last finished
//! /hutong/v1/gateways/<id>                            a gateway's home: its node path ("430000/430100")
//! /hutong/v1/plan/<c1>/<c2>/…/node                    a node's own fields (YAML, no children)
//! /hutong/v1/plan/<c1>/…/gateways/<id>/desired        the compiled config the gateway should run
//! /hutong/v1/plan/<c1>/…/gateways/<id>/staged         the same, waiting for its rollout wave
//! /hutong/v1/plan/<c1>/…/gateways/<id>/status         what the gateway reports, under its lease
//! /hutong/v1/plan/<c1>/…/gateways/<id>/check          a rollout asks for fresh health (short lease)
//! ```

pub const ROOT: &str = "/hutong/v1/";
pub const VERSION: &str = "/hutong/v1/version";
pub const META: &str = "/hutong/v1/meta";
pub const ROLLOUT: &str = "/hutong/v1/rollout";
pub const PLAN: &str = "/hutong/v1/plan/";
pub const PUSHES: &str = "/hutong/v1/pushes/";
pub const GATEWAYS: &str = "/hutong/v1/gateways/";

/// A node's path: its code and its ancestors' codes, root first.
pub type NodePath = Vec<String>;

/// Whether `s` may be one segment of a key: a node code or a gateway id. The plan's validation
/// allows narrower sets than this (six digits; lower-case ids); this is the store's own guard
/// against a value that would change the layout (a `/`, an empty segment, a reserved word).
pub fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !matches!(s, "node" | "gateways" | "." | "..")
}

/// The prefix of a jurisdiction: its node and everything below.
pub fn scope(path: &[String]) -> String {
    format!("{PLAN}{}/", path.join("/"))
}

pub fn node(path: &[String]) -> String {
    format!("{}node", scope(path))
}

pub fn gateway(path: &[String], id: &str, what: GatewayKey) -> String {
    format!("{}gateways/{id}/{}", scope(path), what.name())
}

pub fn home(id: &str) -> String {
    format!("{GATEWAYS}{id}")
}

/// Pushes are numbered from 1; zero-padded so that they sort.
pub fn push(n: u64) -> String {
    format!("{PUSHES}{n:012}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayKey {
    Desired,
    Staged,
    Status,
    Check,
}

impl GatewayKey {
    pub fn name(self) -> &'static str {
        match self {
            GatewayKey::Desired => "desired",
            GatewayKey::Staged => "staged",
            GatewayKey::Status => "status",
            GatewayKey::Check => "check",
        }
    }
}

/// What a key under [`PLAN`] is, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanKey {
    Node(NodePath),
    Gateway(NodePath, String, GatewayKey),
}

/// Parses a key under [`PLAN`]; `None` for anything this layout does not write.
pub fn parse(key: &str) -> Option<PlanKey> {
    let rest = key.strip_prefix(PLAN)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let codes = |p: &[&str]| -> Option<NodePath> {
        (!p.is_empty() && p.iter().all(|s| segment_ok(s))).then(|| p.iter().map(|s| s.to_string()).collect())
    };
    match parts.as_slice() {
        [path @ .., "node"] => Some(PlanKey::Node(codes(path)?)),
        [path @ .., "gateways", id, what] if segment_ok(id) => {
            let what = match *what {
                "desired" => GatewayKey::Desired,
                "staged" => GatewayKey::Staged,
                "status" => GatewayKey::Status,
                "check" => GatewayKey::Check,
                _ => return None,
            };
            Some(PlanKey::Gateway(codes(path)?, id.to_string(), what))
        }
        _ => None,
    }
}

/// The smallest key after every key that starts with `prefix` (etcd's range end of a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(codes: &[&str]) -> NodePath {
        codes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keys_parse_back_and_a_jurisdiction_is_one_prefix() {
        let path = p(&["430000", "430100"]);
        assert_eq!(node(&path), "/hutong/v1/plan/430000/430100/node");
        assert_eq!(parse(&node(&path)), Some(PlanKey::Node(path.clone())));
        let d = gateway(&path, "gw-cs", GatewayKey::Desired);
        assert_eq!(d, "/hutong/v1/plan/430000/430100/gateways/gw-cs/desired");
        assert_eq!(parse(&d), Some(PlanKey::Gateway(path.clone(), "gw-cs".into(), GatewayKey::Desired)));
        for k in [node(&path), d, gateway(&path, "x", GatewayKey::Status)] {
            assert!(k.starts_with(&scope(&path)));
            assert!(!k.starts_with(&scope(&p(&["430000", "430101"]))));
        }
        // A sibling whose code starts with this one's is not inside it.
        assert!(!node(&p(&["430000", "4301009"])).starts_with(&scope(&path)));
    }

    #[test]
    fn keys_outside_the_layout_are_not_read_as_plan() {
        for k in [
            "/hutong/v1/plan/node",
            "/hutong/v1/plan/430000/nodes",
            "/hutong/v1/plan/430000//node",
            "/hutong/v1/plan/430000/gateways/gw/other",
            "/hutong/v1/plan/430000/gateways/../desired",
            "/hutong/v1/other/430000/node",
        ] {
            assert_eq!(parse(k), None, "{k}");
        }
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
    }
}
