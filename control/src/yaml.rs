//! A plan file's YAML as a small tree that remembers where each value was written and whether a
//! scalar was plain or quoted: the decoder needs both to say what is wrong and where, and
//! `LoadedPlan::error` walks it to place validation's errors.
//!
//! The tree is built from yaml-rust2's parser events, pulled one at a time (its own `load`
//! recurses once per nesting level), so hostile input costs bounded work: nesting stops at
//! [`MAX_DEPTH`], aliases share the anchored value instead of copying it, and the nodes they
//! would add are counted against [`MAX_ALIAS_NODES`] so a "billion laughs" file is refused at the
//! alias that crosses the line. Nodes sit in flat vectors, so nothing here recurses either.

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, Parser, Tag},
    scanner::{Marker, ScanError, TScalarStyle},
};

use crate::{
    diagnostics::quote,
    position::{Pos, Problem},
};

/// Most collections one inside another (a plan needs about a dozen).
pub(crate) const MAX_DEPTH: usize = 64;

/// Most nodes that aliases may add to one file, counting each alias as the whole value it repeats.
pub(crate) const MAX_ALIAS_NODES: u64 = 1_000_000;

/// A node of a [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeId(u32);

#[derive(Clone, Copy, Debug)]
struct Node {
    line: u32,
    column: u32,
    kind: Kind,
}

/// Text and children live in the tree's shared vectors; a node holds ranges into them.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Scalar {
        start: u32,
        len: u32,
        plain: bool,
    },
    Seq {
        start: u32,
        len: u32,
    },
    /// `len` entries, their keys and values alternating in `items`.
    Map {
        start: u32,
        len: u32,
    },
    /// Written `*name`: the anchored node, shared rather than copied.
    Alias(NodeId),
}

/// One YAML document. File offsets are below 4 GiB (the loader refuses larger files), so `u32`
/// indices keep a node at 20 bytes.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
    /// Each collection's children, contiguous.
    items: Vec<NodeId>,
    /// Every scalar's text, one after another.
    text: String,
    root: Option<NodeId>,
}

/// What a node is, aliases followed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape<'t> {
    /// Nothing written, `~` or `null`, plain.
    Null,
    Scalar {
        text: &'t str,
        plain: bool,
    },
    Seq(&'t [NodeId]),
    /// Keys and values alternating.
    Map(&'t [NodeId]),
}

impl Tree {
    /// The document's top node; `None` for a file with no content.
    pub(crate) fn root(&self) -> Option<NodeId> {
        self.root
    }

    /// Where `id` was written (for an alias: the alias, not the anchored value).
    pub(crate) fn pos(&self, id: NodeId) -> Pos {
        let n = &self.nodes[id.0 as usize];
        Pos { line: n.line as usize, column: n.column as usize }
    }

    pub(crate) fn is_alias(&self, id: NodeId) -> bool {
        matches!(self.nodes[id.0 as usize].kind, Kind::Alias(_))
    }

    pub(crate) fn shape(&self, id: NodeId) -> Shape<'_> {
        let mut kind = self.nodes[id.0 as usize].kind;
        if let Kind::Alias(target) = kind {
            // An anchor is never on an alias, so one step reaches the value.
            kind = self.nodes[target.0 as usize].kind;
        }
        let range = |start: u32, len: u32| start as usize..(start + len) as usize;
        match kind {
            Kind::Scalar { start, len, plain } => {
                let text = &self.text[range(start, len)];
                if plain && matches!(text, "" | "~" | "null" | "Null" | "NULL") {
                    Shape::Null
                } else {
                    Shape::Scalar { text, plain }
                }
            }
            Kind::Seq { start, len } => Shape::Seq(&self.items[range(start, len)]),
            Kind::Map { start, len } => Shape::Map(&self.items[range(start, 2 * len)]),
            Kind::Alias(_) => Shape::Null,
        }
    }

    /// Where the value at `path` (`nodes[0].gateways[1].id`, relative to the root) was written,
    /// or its nearest ancestor that exists. A mapping's collection or empty value is placed at
    /// its key (the line a reader looks for); a path through an alias stops at the alias, since the
    /// anchored text serves other places too.
    pub(crate) fn find(&self, path: &str) -> Option<Pos> {
        let mut node = self.root?;
        let mut at = self.pos(node);
        if path.is_empty() {
            return Some(at);
        }
        for part in path.split('.') {
            let (key, mut indices) = part.split_at(part.find('[').unwrap_or(part.len()));
            if !key.is_empty() {
                if self.is_alias(node) {
                    return Some(at);
                }
                let Shape::Map(items) = self.shape(node) else { return Some(at) };
                let entry = items
                    .chunks_exact(2)
                    .find(|kv| matches!(self.shape(kv[0]), Shape::Scalar { text, .. } if text == key));
                let Some(&[k, v]) = entry else { return Some(at) };
                node = v;
                at = match self.shape(v) {
                    Shape::Scalar { .. } => self.pos(v),
                    _ if self.is_alias(v) => self.pos(v),
                    _ => self.pos(k),
                };
            }
            while let Some(rest) = indices.strip_prefix('[') {
                let Some((i, after)) = rest.split_once(']') else { return Some(at) };
                indices = after;
                if self.is_alias(node) {
                    return Some(at);
                }
                let Shape::Seq(items) = self.shape(node) else { return Some(at) };
                let Some(&item) = i.parse::<usize>().ok().and_then(|i| items.get(i)) else { return Some(at) };
                node = item;
                at = self.pos(item);
            }
        }
        Some(at)
    }
}

/// A tree, when the file's structure could be read, and the problems found reading it. Problems
/// that stop the reading (syntax, nesting, alias expansion, a second document) leave no tree.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub tree: Option<Tree>,
    pub problems: Vec<Problem>,
}

/// Reads `text` as one YAML document.
pub(crate) fn parse(text: &str) -> Parsed {
    parse_with(text, true)
}

fn parse_with(text: &str, may_retry: bool) -> Parsed {
    let mut b = Builder {
        tree: Tree::default(),
        open: Vec::new(),
        pending: Vec::new(),
        anchors: HashMap::new(),
        aliased: 0,
        documents: 0,
        problems: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let step = match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break,
            Ok((event, mark)) => {
                let mapping = matches!(event, Event::MappingStart(..));
                b.event(event, pos(mark)).map_err(|mut p| {
                    // A block mapping's start is reported at its first colon; place the problem
                    // at the first key instead.
                    if let (true, Ok((Event::Scalar(..), key))) = (mapping, parser.peek()) {
                        p.pos = p.pos.min(pos(*key));
                    }
                    p
                })
            }
            Err(e) => Err(syntax(&e, text, may_retry)),
        };
        if let Err(p) = step {
            b.problems.push(p);
            return Parsed { tree: None, problems: b.problems };
        }
    }
    Parsed { tree: Some(b.tree), problems: b.problems }
}

/// yaml-rust2 counts lines from 1 and columns from 0.
fn pos(mark: Marker) -> Pos {
    Pos { line: mark.line(), column: mark.col() + 1 }
}

fn too_deep(at: Pos) -> Problem {
    Problem::new(
        at,
        format!("nesting deeper than {MAX_DEPTH} levels"),
        Some("a plan nests a dozen levels or so; look for brackets that are never closed".into()),
    )
}

/// A parser error as a problem at its place.
fn syntax(e: &ScanError, text: &str, may_retry: bool) -> Problem {
    let at = pos(*e.marker());
    match e.info() {
        "while parsing node, found unknown anchor" => {
            // The message lacks the name; the marker is at the `*`.
            let name: String = text
                .chars()
                .skip(e.marker().index() + 1)
                .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                .collect();
            Problem::new(
                at,
                format!(
                    "unknown alias {}: no anchor of that name comes before it",
                    quote(&format!("*{name}"))
                ),
                Some("an alias *NAME repeats a value marked &NAME earlier in the same file".into()),
            )
        }
        "recursion limit exceeded" => {
            // The scanner looks ahead through nested flow collections and gives up at 255 levels,
            // before the parser hands over the one that opens level 65. Reading only what it read
            // finds that place; the retry's text is shorter, so this costs at most twice.
            let end = text.char_indices().nth(e.marker().index()).map_or(text.len(), |(i, _)| i);
            if may_retry {
                let again = parse_with(&text[..end], false);
                if let Some(p) = again.problems.into_iter().find(|p| p.message == too_deep(at).message) {
                    return p;
                }
            }
            too_deep(at)
        }
        info => Problem::new(at, format!("YAML syntax error: {info}"), None),
    }
}

/// A collection being read.
struct Open {
    node: NodeId,
    /// Where its children start in `Builder::pending`.
    first: usize,
    anchor: usize,
    /// Nodes in it, aliases counted as what they repeat.
    size: u64,
    /// Levels of nesting in it, itself included.
    height: usize,
}

/// What an alias of an anchored node costs.
struct Anchored {
    node: NodeId,
    size: u64,
    height: usize,
}

struct Builder {
    tree: Tree,
    open: Vec<Open>,
    /// Children of the open collections, innermost last.
    pending: Vec<NodeId>,
    /// By the parser's anchor id; an anchor is entered once its value is complete.
    anchors: HashMap<usize, Anchored>,
    /// Nodes the aliases so far repeat.
    aliased: u64,
    documents: usize,
    /// Problems that do not stop the reading.
    problems: Vec<Problem>,
}

impl Builder {
    /// Takes in one event; `Err` stops the reading.
    fn event(&mut self, event: Event, at: Pos) -> Result<(), Problem> {
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Problem::new(
                        at,
                        "a second YAML document starts here; a plan file holds one",
                        Some("remove the `---` or `...` line, or move the rest to a file of its own".into()),
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.tag(tag.as_ref(), at);
                let start = self.tree.text.len() as u32;
                self.tree.text.push_str(&text);
                let kind =
                    Kind::Scalar { start, len: text.len() as u32, plain: style == TScalarStyle::Plain };
                let id = self.node(at, kind);
                self.anchor(anchor, id, 1, 0);
                self.add(id, 1, 0);
            }
            Event::SequenceStart(anchor, tag) => {
                self.start(Kind::Seq { start: 0, len: 0 }, anchor, tag, at)?
            }
            Event::MappingStart(anchor, tag) => {
                self.start(Kind::Map { start: 0, len: 0 }, anchor, tag, at)?
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(o) = self.open.pop() else { return Ok(()) };
                let start = self.tree.items.len() as u32;
                let count = (self.pending.len() - o.first) as u32;
                self.tree.items.extend(self.pending.drain(o.first..));
                let first = self.tree.items.get(start as usize).map(|&k| self.tree.pos(k));
                let n = &mut self.tree.nodes[o.node.0 as usize];
                n.kind = match n.kind {
                    Kind::Map { .. } => {
                        // A block mapping's start is reported at its first colon; a reader looks
                        // for its first key.
                        if let Some(key) =
                            first.filter(|k| (k.line as u32, k.column as u32) < (n.line, n.column))
                        {
                            (n.line, n.column) = (key.line as u32, key.column as u32);
                        }
                        Kind::Map { start, len: count / 2 }
                    }
                    _ => Kind::Seq { start, len: count },
                };
                self.anchor(o.anchor, o.node, o.size, o.height);
                self.add(o.node, o.size, o.height);
            }
            Event::Alias(anchor) => {
                let Some(a) = self.anchors.get(&anchor) else {
                    // Its anchor is on a collection still open: the value would contain itself.
                    self.problems.push(Problem::new(
                        at,
                        "this alias repeats a value that contains it",
                        Some("an alias must come after the end of the value it repeats".into()),
                    ));
                    let id = self.node(at, Kind::Scalar { start: 0, len: 0, plain: true });
                    self.add(id, 1, 0);
                    return Ok(());
                };
                let (target, size, height) = (a.node, a.size, a.height);
                self.aliased = self.aliased.saturating_add(size);
                if self.aliased > MAX_ALIAS_NODES {
                    return Err(Problem::new(
                        at,
                        format!("aliases in this file repeat more than {MAX_ALIAS_NODES} values in all"),
                        Some("a plan has no need to repeat that much; write the values out".into()),
                    ));
                }
                if self.open.len() + height > MAX_DEPTH {
                    return Err(too_deep(at));
                }
                let id = self.node(at, Kind::Alias(target));
                self.add(id, size, height);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    /// Opens a collection; its range is filled in when it ends.
    fn start(&mut self, kind: Kind, anchor: usize, tag: Option<Tag>, at: Pos) -> Result<(), Problem> {
        self.tag(tag.as_ref(), at);
        if self.open.len() >= MAX_DEPTH {
            return Err(too_deep(at));
        }
        let node = self.node(at, kind);
        self.open.push(Open { node, first: self.pending.len(), anchor, size: 1, height: 1 });
        Ok(())
    }

    fn node(&mut self, at: Pos, kind: Kind) -> NodeId {
        let id = NodeId(self.tree.nodes.len() as u32);
        self.tree.nodes.push(Node { line: at.line as u32, column: at.column as u32, kind });
        id
    }

    /// Hangs a complete node in its collection, or makes it the root.
    fn add(&mut self, id: NodeId, size: u64, height: usize) {
        match self.open.last_mut() {
            Some(parent) => {
                let siblings = self.pending.len() - parent.first;
                let is_value = matches!(self.tree.nodes[parent.node.0 as usize].kind, Kind::Map { .. })
                    && siblings % 2 == 1;
                if is_value
                    && matches!(self.tree.nodes[id.0 as usize].kind, Kind::Scalar { len: 0, plain: true, .. })
                {
                    // Nothing written: the parser places it at the next token, often lines
                    // below; its key is where it belongs.
                    let key = self.tree.nodes[self.pending[self.pending.len() - 1].0 as usize];
                    let n = &mut self.tree.nodes[id.0 as usize];
                    (n.line, n.column) = (key.line, key.column);
                }
                self.pending.push(id);
                parent.size = parent.size.saturating_add(size);
                parent.height = parent.height.max(height + 1);
            }
            None => self.tree.root = Some(id),
        }
    }

    fn anchor(&mut self, anchor: usize, node: NodeId, size: u64, height: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, Anchored { node, size, height });
        }
    }

    /// Tags change how a value is read (`!!str 80`); a plan's fields already say that.
    fn tag(&mut self, tag: Option<&Tag>, at: Pos) {
        let Some(tag) = tag else { return };
        let written = match tag.handle.as_str() {
            "tag:yaml.org,2002:" => format!("!!{}", tag.suffix),
            handle => format!("{handle}{}", tag.suffix),
        };
        self.problems.push(Problem::new(
            at,
            format!("YAML tags such as {} are not used in plans", quote(&written)),
            Some("remove the tag; to make a value text, quote it".into()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn tree(text: &str) -> Tree {
        let p = parse(text);
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        p.tree.unwrap()
    }

    fn problem(text: &str) -> Problem {
        let p = parse(text);
        assert!(p.tree.is_none(), "{text:?} should stop the reading");
        p.problems.last().cloned().unwrap()
    }

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    const DOC: &str = "plan: x\nnodes:\n  - code: \"430100\"\n    gateways:\n      - id: gw\n        interfaces:\n          - { name: a, address: 10.0.0.1/24 }\n          - name: b\n            address: 10.0.1.1/24\n";

    #[test]
    fn paths_map_to_lines_and_columns() {
        let t = tree(DOC);
        assert_eq!(t.find("plan"), Some(at(1, 7)));
        assert_eq!(t.find("nodes[0].code"), Some(at(3, 11)));
        assert_eq!(t.find("nodes[0].gateways[0].id").unwrap().line, 5);
        assert_eq!(t.find("nodes[0].gateways[0].interfaces[0].address"), Some(at(7, 33)));
        assert_eq!(t.find("nodes[0].gateways[0].interfaces[1].address").unwrap().line, 9);
        // A collection value is placed at its key; an item at the item.
        assert_eq!(t.find("nodes[0].gateways"), Some(at(4, 5)));
        assert_eq!(t.find("nodes[0].gateways[0]"), Some(at(5, 9)));
        assert_eq!(t.find(""), Some(at(1, 1)));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let t = tree(DOC);
        assert_eq!(t.find("nodes[0].gateways[0].routes[3].via").unwrap().line, 5);
        assert_eq!(t.find("nodes[7].code"), Some(at(2, 1)));
        assert_eq!(t.find("plan[0]"), Some(at(1, 7)));
    }

    #[test]
    fn scalars_keep_text_style_and_null() {
        let t = tree("a: 80\nb: \"80\"\nc:\nd: ~\ne: 'null'\n");
        let Shape::Map(items) = t.shape(t.root().unwrap()) else { panic!() };
        let shapes: Vec<String> = items.chunks(2).map(|kv| format!("{:?}", t.shape(kv[1]))).collect();
        assert_eq!(
            shapes,
            [
                "Scalar { text: \"80\", plain: true }",
                "Scalar { text: \"80\", plain: false }",
                "Null",
                "Null",
                "Scalar { text: \"null\", plain: false }"
            ]
        );
    }

    #[test]
    fn aliases_share_their_anchor_and_paths_stop_at_them() {
        let t = tree("a: &x { b: 1 }\nc: *x\n");
        let Shape::Map(items) = t.shape(t.root().unwrap()) else { panic!() };
        assert!(matches!(t.shape(items[3]), Shape::Map(_)));
        assert_eq!(t.find("c.b"), Some(at(2, 4)));
        assert_eq!(t.find("a.b"), Some(at(1, 12)));
    }

    #[test]
    fn syntax_errors_are_placed_and_prefixed() {
        let p = problem("plan: x\nnodes: [a\n");
        assert!(p.message.starts_with("YAML syntax error: "), "{p:?}");
        assert_eq!(p.pos.line, 3, "{p:?}");
        let p = problem("a: 1\nb: *nope\n");
        assert_eq!(p.message, "unknown alias \"*nope\": no anchor of that name comes before it");
        assert_eq!(p.pos, at(2, 4));
    }

    #[test]
    fn one_document_per_file() {
        let p = problem("a: 1\n---\nb: 2\n");
        assert_eq!(p.message, "a second YAML document starts here; a plan file holds one");
        assert_eq!(p.pos, at(2, 1));
        assert!(parse("---\na: 1\n...\n").problems.is_empty());
    }

    #[test]
    fn nesting_is_capped_where_it_is_exceeded() {
        let deep = |n: usize| format!("a: {}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(&deep(MAX_DEPTH - 1)).problems.is_empty());
        let p = problem(&deep(MAX_DEPTH));
        assert_eq!(p.message, "nesting deeper than 64 levels");
        assert_eq!(p.pos, at(1, 4 + MAX_DEPTH - 1));
        // Block nesting counts the same.
        let mut block = String::new();
        for i in 0..70 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(problem(&block).pos, at(MAX_DEPTH + 1, MAX_DEPTH + 1));
        // Through an alias: 40 levels repeated inside 40 more.
        let forty = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let p = problem(&format!("a: &x {forty}\nb: {}*x{}\n", "[".repeat(39), "]".repeat(39)));
        assert_eq!((p.message.as_str(), p.pos), ("nesting deeper than 64 levels", at(2, 43)));
    }

    #[test]
    fn a_hundred_thousand_brackets_are_refused_quickly() {
        for open in ["[", "{", "- ", "[{a: "] {
            let text = open.repeat(100_000);
            let started = Instant::now();
            let p = problem(&text);
            assert_eq!(p.message, "nesting deeper than 64 levels", "{open:?}");
            assert!(started.elapsed() < Duration::from_millis(500), "{open:?}: {:?}", started.elapsed());
        }
    }

    #[test]
    fn alias_expansion_is_bounded() {
        let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = Instant::now();
        let p = problem(&laughs);
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        assert_eq!(p.message, "aliases in this file repeat more than 1000000 values in all");
        // Each alias on a5's line repeats a4, 111,111 nodes: the eighth pushes the total over.
        assert_eq!(p.pos, at(6, 45), "{p:?}");
        // A modest reuse is fine.
        assert!(parse("a: &x [1, 2]\nb: *x\nc: *x\n").problems.is_empty());
    }

    #[test]
    fn a_self_containing_alias_and_tags_are_reported_without_stopping() {
        let p = parse("a: &x [1, *x]\nb: !!str 80\nc: !local 1\n");
        let got: Vec<(Pos, &str)> = p.problems.iter().map(|p| (p.pos, p.message.as_str())).collect();
        assert_eq!(
            got,
            [
                (at(1, 11), "this alias repeats a value that contains it"),
                (at(2, 10), "YAML tags such as \"!!str\" are not used in plans"),
                (at(3, 11), "YAML tags such as \"!local\" are not used in plans"),
            ]
        );
        assert!(p.tree.is_some());
    }
}
