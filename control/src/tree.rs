//! The plan's node tree, flattened once in document order (parents first) with each node's
//! parent and the end of its subtree, so that "is A above B", "the nodes from the root to B" and
//! "the node with code C" cost O(1) or O(depth) instead of a walk of the whole plan per question
//! (which made a 52,000-node plan take minutes).

use std::collections::HashMap;

use crate::model::{Node, Plan};

pub struct TreeNode<'a> {
    /// Where the node is in the document: `nodes[0].children[3]`.
    pub path: String,
    pub node: &'a Node,
    pub parent: Option<usize>,
    /// One past the last index of this node's subtree: `i..end` is the node and all below it.
    pub end: usize,
}

pub struct Tree<'a> {
    pub nodes: Vec<TreeNode<'a>>,
    /// Node code → index of its first node (codes are unique in a valid plan).
    by_code: HashMap<&'a str, usize>,
}

impl<'a> Tree<'a> {
    pub fn new(plan: &'a Plan) -> Tree<'a> {
        let mut nodes = Vec::new();
        // Explicit stack: a node's subtree ends when the walk comes back to it. The loader bounds
        // the document's depth, but nothing here relies on that.
        enum Step<'a> {
            Enter(&'a Node, String, Option<usize>),
            Leave(usize),
        }
        let mut stack: Vec<Step<'a>> = plan
            .nodes
            .iter()
            .enumerate()
            .rev()
            .map(|(i, n)| Step::Enter(n, format!("nodes[{i}]"), None))
            .collect();
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(node, path, parent) => {
                    let me = nodes.len();
                    stack.push(Step::Leave(me));
                    for (i, c) in node.children.iter().enumerate().rev() {
                        stack.push(Step::Enter(c, format!("{path}.children[{i}]"), Some(me)));
                    }
                    nodes.push(TreeNode { path, node, parent, end: me + 1 });
                }
                Step::Leave(me) => nodes[me].end = nodes.len(),
            }
        }
        let mut by_code = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            by_code.entry(n.node.code.as_str()).or_insert(i);
        }
        Tree { nodes, by_code }
    }

    /// The index of the node with `code`.
    pub fn find(&self, code: &str) -> Option<usize> {
        self.by_code.get(code).copied()
    }

    /// `a` is `b` or above it.
    pub fn covers(&self, a: usize, b: usize) -> bool {
        a <= b && b < self.nodes[a].end
    }

    /// `a` is strictly above `b`.
    pub fn is_ancestor(&self, a: usize, b: usize) -> bool {
        a < b && b < self.nodes[a].end
    }

    /// The nodes from the root down to `i`, both ends included.
    pub fn ancestry(&self, i: usize) -> Vec<usize> {
        let mut out = vec![i];
        let mut at = i;
        while let Some(p) = self.nodes[at].parent {
            out.push(p);
            at = p;
        }
        out.reverse();
        out
    }

    /// `i`'s ancestors, nearest first.
    pub fn above(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.nodes[i].parent, |p| self.nodes[*p].parent)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn parents_subtrees_and_ancestry() {
        let text = include_str!("../../configs/examples/province-tree.yaml");
        let lp = crate::load_str(text, Path::new("t.yaml")).unwrap();
        let t = Tree::new(&lp.plan);
        let codes: Vec<&str> = t.nodes.iter().map(|n| n.node.code.as_str()).collect();
        assert_eq!(codes, ["430000", "430100", "430102", "430103", "430200"]);
        assert_eq!(t.nodes[2].path, "nodes[0].children[0].children[0]");
        assert_eq!(
            t.nodes.iter().map(|n| n.parent).collect::<Vec<_>>(),
            [None, Some(0), Some(1), Some(1), Some(0)]
        );
        assert_eq!(t.nodes.iter().map(|n| n.end).collect::<Vec<_>>(), [5, 4, 3, 4, 5]);
        assert!(t.is_ancestor(0, 3) && t.is_ancestor(1, 2) && !t.is_ancestor(1, 4) && !t.is_ancestor(2, 2));
        assert!(t.covers(2, 2) && !t.covers(2, 3));
        assert_eq!(t.ancestry(3), [0, 1, 3]);
        assert_eq!(t.above(3).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(t.find("430200"), Some(4));
        assert_eq!(t.find("999999"), None);
    }
}
