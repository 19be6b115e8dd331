//! Reading a plan: its files (the main one and those its nodes `include:`), each through bytes →
//! YAML tree → model, with every problem of every file reported at once, located to
//! file:line:column; and afterwards, the place of any document path, for validation's errors.

use std::{
    io::Read,
    path::{Component, Path, PathBuf},
};

use crate::{
    decode::{Decoder, Includes},
    diagnostics::{Diagnostic, Diagnostics, quote},
    encoding,
    model::{Node, Plan},
    position::{Pos, Problem},
    yaml::{self, Tree},
};

/// One file of a plan: where its content sits in the merged document, and its YAML tree, which
/// places paths on demand (nothing is indexed until an error needs a place).
#[derive(Debug)]
pub struct Source {
    /// Document path of the file's root (`""` for the main file, `nodes[0].children[2]` for an
    /// included node).
    pub prefix: String,
    pub file: PathBuf,
    tree: Tree,
}

impl Source {
    /// Where `path` (relative to this file's root) was written, or its nearest ancestor.
    pub fn position(&self, path: &str) -> Option<Pos> {
        self.tree.find(path)
    }
}

/// A parsed plan (includes resolved) with where each part came from.
#[derive(Debug)]
pub struct LoadedPlan {
    pub plan: Plan,
    /// The main file.
    pub file: PathBuf,
    /// Every file, the main one first, each before the files it includes.
    pub sources: Vec<Source>,
}

/// Most nested includes a plan may have (a province, its cities, their counties, ...).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Largest plan file read: far above any real plan (the national one is tens of MiB), and it
/// keeps the tree's 32-bit offsets valid.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

impl LoadedPlan {
    /// A diagnostic placed at `path` of the merged document, in the file that holds it.
    pub fn error(&self, path: &str, message: impl Into<String>, hint: Option<String>) -> Diagnostic {
        let inside = |s: &&Source| {
            s.prefix.is_empty()
                || path == s.prefix
                || path.strip_prefix(&s.prefix).is_some_and(|r| r.starts_with('.') || r.starts_with('['))
        };
        let src = self
            .sources
            .iter()
            .filter(inside)
            .max_by_key(|s| s.prefix.len())
            .expect("the main file covers all");
        let rel = path[src.prefix.len()..].trim_start_matches('.');
        let pos = src.position(rel);
        Diagnostic {
            file: src.file.clone(),
            line: pos.map_or(0, |p| p.line),
            column: pos.map_or(0, |p| p.column),
            path: path.to_string(),
            message: message.into(),
            hint,
        }
    }
}

/// A diagnostic for a whole file (it could not be read), with no line.
fn file_error(file: &Path, message: String) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
        hint: None,
    }])
}

pub fn load_file(path: &Path) -> Result<LoadedPlan, Diagnostics> {
    let bytes = read(path).map_err(|e| file_error(path, e.message(path, "cannot read")))?;
    load_bytes(&bytes, path)
}

/// Parses plan text; `file` labels diagnostics, and includes are read relative to it.
pub fn load_str(text: &str, file: &Path) -> Result<LoadedPlan, Diagnostics> {
    load_bytes(text.as_bytes(), file)
}

/// Parses a plan file's bytes (UTF-8, a leading byte-order mark allowed); `file` labels
/// diagnostics, and includes are read relative to it.
pub fn load_bytes(bytes: &[u8], file: &Path) -> Result<LoadedPlan, Diagnostics> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(file_error(file, ReadError::TooLarge(bytes.len() as u64).message(file, "cannot load")));
    }
    let root = canonical(&base_dir(file));
    let mut loader = Loader { sources: Vec::new(), reports: Vec::new(), reading: Vec::new(), root };
    let plan = loader.file(bytes, file, String::new(), |d| d.plan());
    let mut diagnostics = Vec::new();
    for (file, problems) in loader.reports {
        diagnostics.extend(problems.into_iter().map(|p| Diagnostic {
            file: file.clone(),
            line: p.pos.line,
            column: p.pos.column,
            path: p.path,
            message: p.message,
            hint: p.hint,
        }));
    }
    match plan {
        Some(plan) if diagnostics.is_empty() => {
            Ok(LoadedPlan { plan, file: file.to_path_buf(), sources: loader.sources })
        }
        _ => {
            debug_assert!(!diagnostics.is_empty(), "a file that did not decode reports why");
            Err(Diagnostics(diagnostics))
        }
    }
}

/// Why a file could not be read.
enum ReadError {
    Io(std::io::Error),
    TooLarge(u64),
    /// A directory, a FIFO (which would block the read), a device (`/dev/zero` never ends).
    NotAFile,
}

impl ReadError {
    /// `cannot read /x/plan.yaml: No such file or directory (os error 2)`: the path in the message
    /// itself, since an include's problem is shown at the including file.
    fn message(&self, path: &Path, what: &str) -> String {
        match self {
            ReadError::Io(e) => format!("{what} {}: {e}", path.display()),
            ReadError::NotAFile => format!("{what} {}: it is not a regular file", path.display()),
            ReadError::TooLarge(size) => format!(
                "{what} {}: it is {size} bytes, over the {} MiB a plan file may have",
                path.display(),
                MAX_FILE_BYTES >> 20
            ),
        }
    }
}

/// The file's bytes, refused unread when it is over [`MAX_FILE_BYTES`].
fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    // Looked at before opening: opening a FIFO blocks until a writer comes.
    if !std::fs::metadata(path).map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotAFile);
    }
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    let size = meta.len();
    if size > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // It may grow while read; the limit holds all the same.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The directory a file's includes are read from: its own, or, when the file is a symlink
/// (`current.yaml -> releases/v2/plan.yaml`), its target's, where the files it names live.
fn base_dir(file: &Path) -> PathBuf {
    let named =
        || file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    match std::fs::symlink_metadata(file) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(file)
            .ok()
            .and_then(|t| t.parent().map(Path::to_path_buf))
            .unwrap_or_else(named),
        _ => named(),
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The state of one load: files read so far and their problems.
struct Loader {
    sources: Vec<Source>,
    /// Each file's problems, in the order the files were first read.
    reports: Vec<(PathBuf, Vec<Problem>)>,
    /// The chain of files being read, innermost last: (as named, canonical), for relative
    /// includes and to name include cycles.
    reading: Vec<(PathBuf, PathBuf)>,
    /// The main file's directory (canonical): every included file lies inside it, so that a
    /// plan (pushed by an operator) can read no other file of the machine.
    root: PathBuf,
}

impl Loader {
    /// Reads one file as what `decode` decodes, reporting its problems under its name. Its
    /// source goes before those of the files it includes.
    fn file<T>(
        &mut self,
        bytes: &[u8],
        file: &Path,
        prefix: String,
        decode: impl FnOnce(&mut Decoder<'_>) -> Option<T>,
    ) -> Option<T> {
        let report = self.reports.len();
        self.reports.push((file.to_path_buf(), Vec::new()));
        let text = match encoding::text(bytes) {
            Ok(text) => text,
            Err(problems) => {
                self.reports[report].1 = problems;
                return None;
            }
        };
        let parsed = yaml::parse(text);
        let mut problems = parsed.problems;
        let Some(tree) = parsed.tree else {
            self.reports[report].1 = problems;
            return None;
        };
        let slot = self.sources.len();
        self.reading.push((file.to_path_buf(), canonical(file)));
        let mut decoder = Decoder::new(&tree, &prefix, self);
        let value = decode(&mut decoder);
        problems.extend(decoder.finish());
        self.reading.pop();
        problems.sort_by_key(|p| p.pos);
        self.reports[report].1 = problems;
        self.sources.insert(slot, Source { prefix, file: file.to_path_buf(), tree });
        value
    }
}

impl Includes for Loader {
    fn include(&mut self, name: &str, child_path: &str) -> Result<Option<Node>, (String, Option<String>)> {
        let (current, _) = self.reading.last().expect("an include is read from a file");
        let base = base_dir(current);
        let relative = Path::new(name);
        let plain = |c: Component| matches!(c, Component::Normal(_) | Component::CurDir);
        if name.is_empty() || relative.is_absolute() || !relative.components().all(plain) {
            return Err((
                format!("include {} is not a relative path below the including file", quote(name)),
                Some("a plan's files live in its directory and below it: no absolute path, no '..'".into()),
            ));
        }
        let target = base.join(relative);
        let key = canonical(&target);
        // A symlink may still lead out; a file that does not exist is reported by the read.
        if std::fs::canonicalize(&target).is_ok_and(|real| !real.starts_with(&self.root)) {
            return Err((
                format!(
                    "included file {} leads outside the plan's directory {} (to {})",
                    target.display(),
                    self.root.display(),
                    key.display()
                ),
                Some("a plan's files live in its directory and below it".into()),
            ));
        }
        if self.reading.len() > MAX_INCLUDE_DEPTH {
            return Err((format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"), None));
        }
        if let Some(first) = self.reading.iter().position(|(_, f)| *f == key) {
            let chain: Vec<String> = self.reading[first..]
                .iter()
                .map(|(_, f)| f)
                .chain([&key])
                .map(|f| f.display().to_string())
                .collect();
            return Err((
                format!("include cycle: {}", chain.join(" -> ")),
                Some("a file may not include itself, directly or not".into()),
            ));
        }
        let bytes = read(&target).map_err(|e| (e.message(&target, "cannot read included file"), None))?;
        Ok(self.file(&bytes, &target, child_path.to_string(), |d| d.included_node()))
    }
}

#[cfg(test)]
mod tests;
