//! Where in a plan file something is, as an editor counts it; and a problem found there before
//! the loader ties it to the file's name. Reading a file has three stages (bytes, YAML, plan
//! fields) that each find problems; this is what they hand back.

/// 1-based line and column; the column counts characters, not bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The first character of a file.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

/// A problem at `pos` of one file. `path` is its document path in the merged plan (empty when the
/// problem is below the level of fields: bytes, YAML syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub pos: Pos,
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(pos: Pos, message: impl Into<String>, hint: Option<String>) -> Problem {
        Problem { pos, path: String::new(), message: message.into(), hint }
    }
}
