//! From a plan file's YAML tree to the model's types, by hand rather than by serde: serde stops
//! at the first mistake and words it in Rust's terms ("untagged enum PortSpec"); a plan's author
//! needs every mistake of the file at once, each at its line:column and document path, in the
//! plan's own words.
//!
//! A decoding function returns `None` when its value has a problem (reported as found) and goes
//! on with the value's siblings, so one run finds everything. The document path of the value
//! being decoded is kept as a stack of segments and written out only when a problem is reported,
//! so the happy path builds no strings.

mod plan;
mod scalars;

use std::collections::HashSet;

use crate::{
    diagnostics::{near_miss, quote},
    model::Node,
    position::{Pos, Problem},
    yaml::{NodeId, Shape, Tree},
};

/// A node's `include:` entries are read by the loader, which knows the files; the decoder hands
/// it each entry as it meets it and hangs the node that comes back among the children.
pub(crate) trait Includes {
    /// The node in file `name` (as written, relative to the including file), to become
    /// `child_path` of the merged plan. `Err` is a problem with the entry itself (unreadable, a
    /// cycle), reported at the entry; `Ok(None)`, a file whose own problems were reported there.
    fn include(&mut self, name: &str, child_path: &str) -> Result<Option<Node>, (String, Option<String>)>;
}

/// One step of a document path.
#[derive(Clone, Copy, Debug)]
enum Seg {
    Field(&'static str),
    Index(usize),
}

/// A field a mapping may have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    name: &'static str,
    required: bool,
}

const fn required(name: &'static str) -> Field {
    Field { name, required: true }
}

const fn optional(name: &'static str) -> Field {
    Field { name, required: false }
}

pub(crate) struct Decoder<'a> {
    tree: &'a Tree,
    /// The file's place in the merged plan (`nodes[0].children[2]` for an included file).
    prefix: &'a str,
    path: Vec<Seg>,
    problems: Vec<Problem>,
    /// Problems found, including those not kept because an alias repeated them.
    problems_found: usize,
    /// (place, message) of each kept problem: a mistake in an anchored value is reported once,
    /// not again for every alias that repeats it.
    reported: HashSet<(Pos, String)>,
    includes: &'a mut dyn Includes,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(tree: &'a Tree, prefix: &'a str, includes: &'a mut dyn Includes) -> Decoder<'a> {
        Decoder {
            tree,
            prefix,
            path: Vec::new(),
            problems: Vec::new(),
            problems_found: 0,
            reported: HashSet::new(),
            includes,
        }
    }

    /// The problems found, in document order.
    pub(crate) fn finish(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| p.pos);
        self.problems
    }

    /// The current document path, with the field `extra` appended when given.
    fn path_with(&self, extra: Option<&str>) -> String {
        fn field(out: &mut String, name: &str) {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
        }
        let mut out = self.prefix.to_string();
        for seg in &self.path {
            match *seg {
                Seg::Field(name) => field(&mut out, name),
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        if let Some(name) = extra {
            field(&mut out, name);
        }
        out
    }

    fn report_at(&mut self, pos: Pos, path: String, message: String, hint: Option<String>) {
        self.problems_found += 1;
        if self.reported.insert((pos, message.clone())) {
            self.problems.push(Problem { pos, path, message, hint });
        }
    }

    /// A problem with the value `at`, at the current path.
    fn report(&mut self, at: NodeId, message: String, hint: Option<String>) {
        let path = self.path_with(None);
        self.report_at(self.tree.pos(at), path, message, hint);
    }

    /// How a value that is not what was expected reads in a message.
    fn found(&self, id: NodeId) -> String {
        match self.tree.shape(id) {
            Shape::Null => "nothing".into(),
            Shape::Scalar { text, .. } => quote(text),
            Shape::Seq(_) => "a list".into(),
            Shape::Map(_) => "a mapping".into(),
        }
    }

    fn is_null(&self, id: NodeId) -> bool {
        matches!(self.tree.shape(id), Shape::Null)
    }

    /// `f(value)` unless the value is null, which stands for an absent optional field.
    fn optional<T>(&mut self, id: NodeId, f: impl FnOnce(&mut Self, NodeId) -> Option<T>) -> Option<T> {
        if self.is_null(id) { None } else { f(self, id) }
    }

    /// The file's top node, which must be a mapping: `what` names what the file holds.
    fn top(&mut self, what: &str, fields: &[Field]) -> Option<NodeId> {
        let names = || fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
        let root = self.tree.root().filter(|r| !self.is_null(*r));
        let Some(root) = root else {
            let message = format!("the file is empty; expected {what}");
            let hint = Some(format!("it is a mapping with the fields {}", names()));
            self.report_at(Pos::START, self.prefix.to_string(), message, hint);
            return None;
        };
        if let Shape::Map(_) = self.tree.shape(root) {
            return Some(root);
        }
        let message = format!("expected {what} at the top of the file, found {}", self.found(root));
        let hint = Some(format!("it is a mapping with the fields {}", names()));
        self.report_at(Pos::START, self.prefix.to_string(), message, hint);
        None
    }

    /// Walks the mapping `id`, giving `each` every known field's value (with the path set to
    /// it), and reports unknown, repeated and missing fields. `what` names the mapping in
    /// messages ("a node"). `None` when `id` is no mapping.
    fn mapping(
        &mut self,
        id: NodeId,
        what: &str,
        fields: &'static [Field],
        mut each: impl FnMut(&mut Self, &'static str, NodeId),
    ) -> Option<()> {
        debug_assert!(fields.len() <= 64);
        let Shape::Map(items) = self.tree.shape(id) else {
            let message = format!("expected {what}, found {}", self.found(id));
            let hint = Some("write it as `field: value` lines, or as { field: value, ... }".into());
            self.report(id, message, hint);
            return None;
        };
        let mut seen = 0u64;
        for kv in items.chunks_exact(2) {
            let (k, v) = (kv[0], kv[1]);
            let key = match self.tree.shape(k) {
                Shape::Scalar { text, .. } => text,
                _ => {
                    let message = format!("expected a field name, found {}", self.found(k));
                    self.report(k, message, None);
                    continue;
                }
            };
            let Some(i) = fields.iter().position(|f| f.name == key) else {
                self.unknown_field(k, key, what, fields);
                continue;
            };
            if seen & (1 << i) != 0 {
                // Looked up again only now: the happy path keeps no positions.
                let same =
                    |k: &NodeId| matches!(self.tree.shape(*k), Shape::Scalar { text, .. } if text == key);
                let first =
                    items.iter().step_by(2).find(|k| same(k)).map_or(Pos::START, |k| self.tree.pos(*k));
                let path = self.path_with(Some(fields[i].name));
                let hint = format!("it is first given at line {}, column {}", first.line, first.column);
                self.report_at(self.tree.pos(k), path, format!("duplicate field {}", quote(key)), Some(hint));
                continue;
            }
            seen |= 1 << i;
            self.path.push(Seg::Field(fields[i].name));
            each(self, fields[i].name, v);
            self.path.pop();
        }
        for (i, f) in fields.iter().enumerate() {
            if f.required && seen & (1 << i) == 0 {
                let all: Vec<&str> = fields.iter().filter(|f| f.required).map(|f| f.name).collect();
                let message = format!("missing field {} in {what}", quote(f.name));
                let hint = Some(format!("{what} needs {}", all.join(", ")));
                self.report(id, message, hint);
            }
        }
        Some(())
    }

    fn unknown_field(&mut self, key_node: NodeId, key: &str, what: &str, fields: &[Field]) {
        let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
        let hint = if key == "<<" {
            Some("merge keys (<<) are not supported; write the fields out".into())
        } else {
            near_miss(key, names.iter().copied())
        };
        let message = format!("unknown field {} in {what}; the fields are {}", quote(key), names.join(", "));
        let path = self.path_with(None);
        self.report_at(self.tree.pos(key_node), path, message, hint);
    }

    /// The list `id` (null is an empty list), each item through `f` with the path set to it.
    /// `None` when it is no list or an item had a problem; every item is decoded either way.
    fn list<T>(
        &mut self,
        id: NodeId,
        what: &str,
        mut f: impl FnMut(&mut Self, NodeId) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = match self.tree.shape(id) {
            Shape::Null => return Some(Vec::new()),
            Shape::Seq(items) => items,
            _ => {
                let message = format!("expected {what}, found {}", self.found(id));
                let hint = Some("write a list as [a, b], or as one `- item` line each".into());
                self.report(id, message, hint);
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, &item) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            match f(self, item) {
                Some(v) => out.push(v),
                None => ok = false,
            }
            self.path.pop();
        }
        ok.then_some(out)
    }

    /// Number of problems found so far: a value is good when decoding it found none.
    fn mark(&self) -> usize {
        self.problems_found
    }

    fn clean_since(&self, mark: usize) -> Option<()> {
        (self.problems_found == mark).then_some(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{model::Plan, yaml};

    /// For decoding without files: every include is refused.
    struct NoIncludes;

    impl Includes for NoIncludes {
        fn include(&mut self, _: &str, _: &str) -> Result<Option<Node>, (String, Option<String>)> {
            Err(("includes are not read here".into(), None))
        }
    }

    /// A whole main file's plan, or its problems in order.
    pub(crate) fn decode_file(text: &str) -> Result<Plan, Vec<Problem>> {
        let parsed = yaml::parse(text);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        let tree = parsed.tree.expect("no YAML problems");
        let mut none = NoIncludes;
        let mut d = Decoder::new(&tree, "", &mut none);
        let plan = d.plan();
        let problems = d.finish();
        match plan {
            Some(plan) if problems.is_empty() => Ok(plan),
            _ => Err(problems),
        }
    }

    /// The value `yaml` decoded by `f`, or its one problem.
    pub(crate) fn decode_value<T>(
        yaml: &str,
        f: impl FnOnce(&mut Decoder<'_>, NodeId) -> Option<T>,
    ) -> Result<T, Problem> {
        let text = format!("v: {yaml}\n");
        let tree = yaml::parse(&text).tree.expect("valid YAML");
        let Some(Shape::Map(items)) = tree.root().map(|r| tree.shape(r)) else { panic!("{text:?}") };
        let mut none = NoIncludes;
        let mut d = Decoder::new(&tree, "", &mut none);
        let value = f(&mut d, items[1]);
        let mut problems = d.finish();
        match value {
            Some(v) if problems.is_empty() => Ok(v),
            _ => {
                assert_eq!(problems.len(), 1, "{yaml:?}: {problems:?}");
                Err(problems.remove(0))
            }
        }
    }

    #[test]
    fn unknown_fields_name_the_near_miss_and_the_fields_allowed() {
        // Cyrillic "а" in "nаme".
        let errs =
            decode_file("plan: t\nnodes:\n  - code: \"1\"\n    nаme: n\n    level: county\n").unwrap_err();
        let e = errs.iter().find(|p| p.message.starts_with("unknown field")).unwrap();
        assert_eq!(
            e.message,
            "unknown field \"nаme\" in a node; the fields are code, name, level, allocations, departments, \
             legacy_networks, gateways, policies, children, include"
        );
        assert_eq!((e.pos.line, e.pos.column), (4, 5));
        assert_eq!(e.path, "nodes[0]");
        assert_eq!(
            e.hint.as_deref(),
            Some("did you mean \"name\"? character 2 is 'а' (U+0430 Cyrillic), not 'a' (U+0061)")
        );
        // The same node lacks "name", at the mapping's place.
        let m = errs.iter().find(|p| p.message.starts_with("missing")).unwrap();
        assert_eq!(
            (m.pos.line, m.pos.column, m.message.as_str()),
            (3, 5, "missing field \"name\" in a node")
        );
        assert_eq!(m.hint.as_deref(), Some("a node needs code, name, level"));
    }

    #[test]
    fn duplicate_fields_are_reported_where_they_repeat() {
        let errs = decode_file("plan: a\nnodes: []\nplan: b\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].pos.line, errs[0].pos.column), (3, 1));
        assert_eq!(errs[0].message, "duplicate field \"plan\"");
        assert_eq!(errs[0].path, "plan");
        assert_eq!(errs[0].hint.as_deref(), Some("it is first given at line 1, column 1"));
    }

    #[test]
    fn merge_keys_are_unknown_fields_with_their_own_hint() {
        let text = "plan: t\nnodes:\n  - &base { code: \"1\", name: a, level: county }\n  - <<: *base\n    code: \"2\"\n";
        let errs = decode_file(text).unwrap_err();
        assert!(errs[0].message.starts_with("unknown field \"<<\" in a node;"), "{errs:?}");
        assert_eq!((errs[0].pos.line, errs[0].pos.column), (4, 5));
        assert_eq!(errs[0].hint.as_deref(), Some("merge keys (<<) are not supported; write the fields out"));
    }

    #[test]
    fn a_mistake_in_an_anchored_value_is_reported_once() {
        let text = "plan: t\nnodes:\n  - &n { code: \"1\", name: a, level: town }\n  - *n\n  - *n\n";
        let errs = decode_file(text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].pos.line, errs[0].path.as_str()), (3, "nodes[0].level"));
    }
}
