//! Source positions of every node of a YAML document, keyed by its path (`a.b[2].c`).
//!
//! serde gives positions only for the errors it raises itself; validation runs on the typed
//! model afterwards, so this index is built from the parser's events to place those errors too.

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

/// 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Default)]
pub struct Spans {
    map: HashMap<String, Pos>,
}

enum Frame {
    /// In a mapping; `key` is set once the key scalar was read and its value is pending.
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    map: HashMap<String, Pos>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

impl Builder {
    /// The path the next value takes, advancing the parent's state. `None` means the event is a
    /// mapping key, not a value.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos { line: mark.line(), column: mark.col() + 1 };
        match ev {
            Event::Scalar(value, ..) => match self.next_path() {
                Some(p) => {
                    self.map.insert(p, pos);
                }
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        // The key's own position stands for its value until the value is seen.
                        self.map.insert(join(path, &value), pos);
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.map.entry(path.clone()).or_insert(pos);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.next_path();
            }
            _ => {}
        }
    }
}

impl Spans {
    /// Indexes `text`. A document the parser rejects yields an empty index (serde reports it).
    pub fn index(text: &str) -> Spans {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut b, false);
        Spans { map: b.map }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.map.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "plan: x\nnodes:\n  - code: \"430100\"\n    gateways:\n      - id: gw\n        interfaces:\n          - { name: a, address: 10.0.0.1/24 }\n          - name: b\n            address: 10.0.1.1/24\n";

    #[test]
    fn paths_map_to_lines_and_columns() {
        let s = Spans::index(DOC);
        assert_eq!(s.find("plan"), Some(Pos { line: 1, column: 7 }));
        assert_eq!(s.find("nodes[0].code").unwrap().line, 3);
        assert_eq!(s.find("nodes[0].gateways[0].id").unwrap().line, 5);
        assert_eq!(s.find("nodes[0].gateways[0].interfaces[0].address"), Some(Pos { line: 7, column: 33 }));
        assert_eq!(s.find("nodes[0].gateways[0].interfaces[1].address").unwrap().line, 9);
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let s = Spans::index(DOC);
        assert_eq!(s.find("nodes[0].gateways[0].routes[3].via").unwrap().line, 5);
    }
}
