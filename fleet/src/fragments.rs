//! The plan as the store keeps it: one fragment per node (the node's own fields, without its
//! children), and the plan's name and operators apart. A push replaces the fragments of one
//! subtree; every reader puts the whole plan back together and validates it whole, since the
//! plan's promises (one owner per address) are plan-wide.
//!
//! Fragments are YAML, as plans are written, so `etcdctl get` shows what an engineer expects.
//! Reassembled, children are ordered by code: the store has no order of its own, and a code
//! order makes the compiled configs a function of the store's content alone.

use std::collections::BTreeMap;

use control::model::{Node, Operator, Plan};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::keys::NodePath;

/// What the store keeps at [`crate::keys::META`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub plan: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<Operator>,
}

/// One node's own fields, at its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub path: NodePath,
    pub yaml: String,
}

/// The fragments of `node` and everything below it; `above` is the path of its parent.
pub fn split_node(node: &Node, above: &[String]) -> Vec<Fragment> {
    let mut out = Vec::new();
    let mut path = above.to_vec();
    path.push(node.code.clone());
    let own = Node { children: Vec::new(), include: Vec::new(), ..node.clone() };
    let yaml = serde_yaml_ng::to_string(&own).expect("a plan node serialises");
    out.push(Fragment { path: path.clone(), yaml });
    for c in &node.children {
        out.extend(split_node(c, &path));
    }
    out
}

/// A whole plan: its meta and every node's fragment.
pub fn split(plan: &Plan) -> (Meta, Vec<Fragment>) {
    let meta = Meta { plan: plan.plan.clone(), operators: plan.operators.clone() };
    (meta, plan.nodes.iter().flat_map(|n| split_node(n, &[])).collect())
}

/// Finds a node by code, with its path.
pub fn find<'a>(plan: &'a Plan, code: &str) -> Option<(NodePath, &'a Node)> {
    fn walk<'a>(n: &'a Node, above: &mut Vec<String>, code: &str) -> Option<(NodePath, &'a Node)> {
        above.push(n.code.clone());
        if n.code == code {
            return Some((above.clone(), n));
        }
        for c in &n.children {
            if let Some(found) = walk(c, above, code) {
                return Some(found);
            }
        }
        above.pop();
        None
    }
    plan.nodes.iter().find_map(|n| walk(n, &mut Vec::new(), code))
}

/// Why the store's fragments do not make a plan.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AssembleError {
    #[error("the store holds no plan yet (no {key}): push one first")]
    NoPlan { key: &'static str },
    #[error("{key}: not a plan fragment: {why}")]
    Corrupt { key: String, why: String },
    #[error("{key}: the fragment's code {code:?} is not the last part of its key")]
    WrongCode { key: String, code: String },
    #[error("{key}: no fragment for its parent node {parent}: the plan tree is broken there")]
    Orphan { key: String, parent: String },
}

/// Puts the plan back together as YAML text, for `control::load_str` to read and validate like
/// any plan file. `fragments`: (path, YAML) as read from the store, in any order.
pub fn assemble(meta: Option<&str>, fragments: &[(NodePath, String)]) -> Result<String, AssembleError> {
    let meta = meta.ok_or(AssembleError::NoPlan { key: crate::keys::META })?;
    let mut top = match serde_yaml_ng::from_str::<Value>(meta) {
        Ok(Value::Mapping(m)) => m,
        Ok(_) => return Err(corrupt(crate::keys::META, "not a mapping")),
        Err(e) => return Err(corrupt(crate::keys::META, &e.to_string())),
    };
    let mut nodes: BTreeMap<NodePath, Mapping> = BTreeMap::new();
    for (path, yaml) in fragments {
        let key = crate::keys::node(path);
        let mut m = match serde_yaml_ng::from_str::<Value>(yaml) {
            Ok(Value::Mapping(m)) => m,
            Ok(_) => return Err(corrupt(&key, "not a mapping")),
            Err(e) => return Err(corrupt(&key, &e.to_string())),
        };
        let code = m.get("code").and_then(Value::as_str).unwrap_or_default().to_string();
        if path.last() != Some(&code) {
            return Err(AssembleError::WrongCode { key, code });
        }
        // A fragment is one node: children come from their own keys, never from its value.
        for field in ["children", "include"] {
            if m.contains_key(field) {
                return Err(corrupt(&key, &format!("a fragment holds no {field:?}")));
            }
        }
        m.insert("children".into(), Value::Sequence(Vec::new()));
        nodes.insert(path.clone(), m);
    }
    for path in nodes.keys() {
        if path.len() > 1 && !nodes.contains_key(&path[..path.len() - 1]) {
            let parent = path[..path.len() - 1].join("/");
            return Err(AssembleError::Orphan { key: crate::keys::node(path), parent });
        }
    }
    // Deepest first, so each node is complete when it joins its parent; BTreeMap order within a
    // level keeps siblings by code.
    let mut paths: Vec<NodePath> = nodes.keys().cloned().collect();
    paths.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    let mut roots = Vec::new();
    for path in paths {
        let mut m = nodes.remove(&path).expect("each path once");
        if m.get("children").and_then(Value::as_sequence).is_some_and(|c| c.is_empty()) {
            m.remove("children");
        }
        if path.len() == 1 {
            roots.push((path, Value::Mapping(m)));
        } else {
            let parent = nodes.get_mut(&path[..path.len() - 1]).expect("checked above");
            if let Some(Value::Sequence(c)) = parent.get_mut("children") {
                c.push(Value::Mapping(m));
            }
        }
    }
    // Children were pushed in code order within each level; roots the same.
    roots.sort_by(|a, b| a.0.cmp(&b.0));
    top.insert("nodes".into(), Value::Sequence(roots.into_iter().map(|(_, v)| v).collect()));
    // The plan's own order of keys: name, nodes, operators.
    let mut ordered = Mapping::new();
    for k in ["plan", "nodes", "operators"] {
        if let Some(v) = top.remove(k) {
            ordered.insert(k.into(), v);
        }
    }
    ordered.extend(top);
    Ok(serde_yaml_ng::to_string(&Value::Mapping(ordered)).expect("YAML values serialise"))
}

fn corrupt(key: &str, why: &str) -> AssembleError {
    AssembleError::Corrupt { key: key.to_string(), why: why.to_string() }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const PROVINCE_TREE: &str = include_str!("../../configs/examples/province-tree.yaml");
    const CONVERSIONS: &str = include_str!("../../configs/examples/conversions.yaml");
    const DEMO: &str = include_str!("../../configs/demo/plan.yaml");
    const SHOWCASE: &str = include_str!("../../configs/demo/showcase.yaml");

    fn sorted(mut n: Node) -> Node {
        n.children = n.children.into_iter().map(sorted).collect();
        n.children.sort_by(|a, b| a.code.cmp(&b.code));
        n
    }

    fn round_trip(text: &str) {
        let lp = control::load_str(text, Path::new("p.yaml")).unwrap();
        let (meta, frags) = split(&lp.plan);
        let meta = serde_yaml_ng::to_string(&meta).unwrap();
        let pairs: Vec<(NodePath, String)> = frags.into_iter().rev().map(|f| (f.path, f.yaml)).collect();
        let back = assemble(Some(&meta), &pairs).unwrap();
        let again = control::load_str(&back, Path::new("store")).unwrap_or_else(|d| panic!("{d}\n{back}"));
        let mut want = lp.plan.clone();
        want.nodes = want.nodes.into_iter().map(sorted).collect();
        want.nodes.sort_by(|a, b| a.code.cmp(&b.code));
        assert_eq!(again.plan, want);
    }

    #[test]
    fn every_example_plan_survives_the_store() {
        for text in [PROVINCE_TREE, CONVERSIONS, DEMO, SHOWCASE] {
            round_trip(text);
        }
    }

    #[test]
    fn a_broken_store_is_named_not_guessed() {
        let meta = "plan: p\n";
        let root = vec!["430000".to_string()];
        let child = vec!["430000".to_string(), "430100".to_string()];
        let node = |code: &str| format!("code: \"{code}\"\nname: x\nlevel: county\n");
        assert!(matches!(assemble(None, &[]), Err(AssembleError::NoPlan { .. })));
        assert!(matches!(
            assemble(Some(meta), &[(child.clone(), node("430100"))]),
            Err(AssembleError::Orphan { .. })
        ));
        assert!(matches!(
            assemble(Some(meta), &[(root.clone(), node("430101"))]),
            Err(AssembleError::WrongCode { .. })
        ));
        assert!(matches!(
            assemble(Some(meta), &[(root.clone(), "[1, 2".into())]),
            Err(AssembleError::Corrupt { .. })
        ));
        let with_children = format!("{}children: []\n", node("430000"));
        assert!(matches!(assemble(Some(meta), &[(root, with_children)]), Err(AssembleError::Corrupt { .. })));
    }
}
