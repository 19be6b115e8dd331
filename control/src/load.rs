//! Reading a plan file: typed model plus the source positions validation needs.

use std::path::{Path, PathBuf};

use crate::{
    diagnostics::{Diagnostic, Diagnostics},
    model::{Node, Plan},
    spans::Spans,
};

/// One file of a plan: where its content sits in the merged document, and its positions.
#[derive(Debug)]
pub struct Source {
    /// Document path of the file's root (`""` for the main file, `nodes[0].children[2]` for an
    /// included node).
    pub prefix: String,
    pub file: PathBuf,
    pub spans: Spans,
}

/// A parsed plan (includes resolved) with where each part came from.
#[derive(Debug)]
pub struct LoadedPlan {
    pub plan: Plan,
    /// The main file.
    pub file: PathBuf,
    /// Every file, the main one first.
    pub sources: Vec<Source>,
}

/// Most nested includes a plan may have (a province, its cities, their counties, ...).
const MAX_INCLUDE_DEPTH: usize = 16;

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
        let pos = src.spans.find(rel);
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

/// A serde error as a diagnostic at its place in `file`.
fn parse_error(e: serde_yaml_ng::Error, file: &Path, text: &str) -> Diagnostic {
    let (mut line, mut column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let message = e.to_string();
    // serde_yaml appends " at line L column C"; the prefix already says where.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    let duplicate = message.split_once("duplicate field `").and_then(|(_, m)| m.split_once('`'));
    if let Some((key, _)) = duplicate {
        // serde points at the mapping; the user needs the line that repeats the key.
        if let Some(at) = repeated_key(text, line, column, key) {
            (line, column) = at;
        }
    }
    Diagnostic {
        file: file.to_path_buf(),
        line,
        column,
        path: String::new(),
        hint: hint_for(&message),
        message,
    }
}

/// Where `key` appears the second time among the keys of the block mapping that starts at
/// `line`:`column` (1-based), if it is one.
fn repeated_key(text: &str, line: usize, column: usize, key: &str) -> Option<(usize, usize)> {
    let mut seen = false;
    for (i, l) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let indent = l.len() - l.trim_start_matches([' ', '-']).len();
        let body = &l[indent..];
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if indent + 1 < column && i + 1 > line {
            return None; // left the mapping
        }
        if indent + 1 == column && body.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':')) {
            if seen {
                return Some((i + 1, column));
            }
            seen = true;
        }
    }
    None
}

pub fn load_file(path: &Path) -> Result<LoadedPlan, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read the plan: {e}"),
            hint: None,
        }])
    })?;
    load_str(&text, path)
}

/// Parses plan text; `file` labels diagnostics, and includes are read relative to it.
pub fn load_str(text: &str, file: &Path) -> Result<LoadedPlan, Diagnostics> {
    let mut plan =
        serde_yaml_ng::from_str::<Plan>(text).map_err(|e| Diagnostics(vec![parse_error(e, file, text)]))?;
    let mut lp = LoadedPlan {
        plan: Plan { plan: String::new(), nodes: Vec::new(), operators: Vec::new() },
        file: file.to_path_buf(),
        sources: vec![Source { prefix: String::new(), file: file.to_path_buf(), spans: Spans::index(text) }],
    };
    let mut errors = Vec::new();
    let mut stack = vec![canonical(file)];
    for (i, node) in plan.nodes.iter_mut().enumerate() {
        expand(node, &format!("nodes[{i}]"), file, &mut stack, &mut lp, &mut errors);
    }
    lp.plan = plan;
    if errors.is_empty() { Ok(lp) } else { Err(Diagnostics(errors)) }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads `node`'s includes (and those of every node below it) into its children, recording each
/// file as a source. `file` is the file `node` was read from; `stack` the chain of files being
/// read, to name include cycles.
fn expand(
    node: &mut Node,
    path: &str,
    file: &Path,
    stack: &mut Vec<PathBuf>,
    lp: &mut LoadedPlan,
    errors: &mut Vec<Diagnostic>,
) {
    for (i, child) in node.children.iter_mut().enumerate() {
        expand(child, &format!("{path}.children[{i}]"), file, stack, lp, errors);
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    for (k, inc) in std::mem::take(&mut node.include).iter().enumerate() {
        let at = format!("{path}.include[{k}]");
        let target = dir.join(inc);
        let key = canonical(&target);
        if stack.len() > MAX_INCLUDE_DEPTH {
            errors.push(lp.error(&at, format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"), None));
            continue;
        }
        if let Some(first) = stack.iter().position(|f| *f == key) {
            let chain: Vec<String> =
                stack[first..].iter().chain([&key]).map(|f| f.display().to_string()).collect();
            errors.push(lp.error(
                &at,
                format!("include cycle: {}", chain.join(" -> ")),
                Some("a file may not include itself, directly or not".into()),
            ));
            continue;
        }
        let text = match std::fs::read_to_string(&target) {
            Ok(t) => t,
            Err(e) => {
                errors.push(lp.error(
                    &at,
                    format!("cannot read included file {}: {e}", target.display()),
                    None,
                ));
                continue;
            }
        };
        let mut child = match serde_yaml_ng::from_str::<Node>(&text) {
            Ok(c) => c,
            Err(e) => {
                errors.push(parse_error(e, &target, &text));
                continue;
            }
        };
        let child_path = format!("{path}.children[{}]", node.children.len());
        lp.sources.push(Source {
            prefix: child_path.clone(),
            file: target.clone(),
            spans: Spans::index(&text),
        });
        stack.push(key);
        expand(&mut child, &child_path, &target, stack, lp, errors);
        stack.pop();
        node.children.push(child);
    }
}

fn hint_for(message: &str) -> Option<String> {
    if message.contains("invalid IP address syntax") {
        Some("write prefixes as ADDRESS/LENGTH with LENGTH 0-32, e.g. 10.20.0.0/24".into())
    } else if message.contains("unknown field") {
        Some("check the spelling; docs/plan.md lists every field".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_prefix_names_file_line_and_column() {
        let text = "plan: t\nnodes:\n  - code: \"430100\"\n    name: n\n    level: prefecture\n    legacy_networks:\n      - id: lan\n        prefixes: [10.20.0.0/33]\n";
        let errs = load_str(text, Path::new("p.yaml")).unwrap_err();
        let d = &errs.0[0];
        assert_eq!(d.line, 8, "{d}");
        assert!(d.to_string().starts_with("p.yaml:8:"), "{d}");
        assert!(d.message.contains("invalid IP address syntax"), "{d}");
        assert!(d.hint.is_some());
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
        // The county's overlapping prefixes are reported in furong.yaml, at line 6.
        let errs = crate::validate(&lp).unwrap_err();
        let d = &errs.0[0];
        assert!(d.file.ends_with("furong.yaml") && d.line == 6, "{d}");
        assert_eq!(d.path, "nodes[0].children[0].children[0].legacy_networks[0].prefixes[0]");
    }

    #[test]
    fn a_missing_include_and_an_include_cycle_are_named() {
        let dir = tree(&[("hunan.yaml", PROVINCE)]);
        let errs = load_file(&dir.path().join("hunan.yaml")).unwrap_err();
        let d = &errs.0[0];
        assert!(
            d.message.contains("cannot read included file") && d.message.contains("changsha.yaml"),
            "{d}"
        );
        assert!(d.file.ends_with("hunan.yaml") && d.line == 6, "{d}");

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
    }

    #[test]
    fn duplicate_keys_are_named() {
        let errs = load_str("plan: a\nplan: b\nnodes: []\n", Path::new("p.yaml")).unwrap_err();
        assert!(errs.0[0].message.contains("duplicate field `plan`"), "{errs}");
        assert_eq!(errs.0[0].line, 2, "{errs}");
        let nested = "plan: a\nnodes:\n  - code: \"430100\"\n    name: n\n    # a comment\n    name: m\n    level: county\n";
        let errs = load_str(nested, Path::new("p.yaml")).unwrap_err();
        assert_eq!((errs.0[0].line, errs.0[0].column), (6, 5), "{errs}");
    }

    /// Syntax and type mistakes in one plan each, with where they must be reported.
    #[test]
    fn syntax_and_type_errors_are_located() {
        const BASE: &str = "plan: t\nnodes:\n  - code: \"430100\"\n    name: n\n    level: prefecture\n    legacy_networks:\n      - id: lan\n        prefixes: [10.20.0.0/24]\n        napt: { pool: [198.18.0.0/28], block_size: 64 }\n";
        let cases = [
            ("block_size: 64", "block_size: big", 9, "invalid type"),
            ("block_size: 64", "block_size: 70000", 9, "invalid value"),
            ("level: prefecture", "level: township", 5, "unknown variant `township`"),
            ("[10.20.0.0/24]", "[10.20.0.0/-1]", 8, "invalid IP address syntax"),
            ("[10.20.0.0/24]", "10.20.0.0/24", 8, "invalid type"),
            ("      - id: lan", "    - id: lan", 7, ""),
            ("name: n", "name: [n", 4, ""),
        ];
        for (from, to, line, want) in cases {
            assert!(BASE.contains(from), "{from:?}");
            let errs = load_str(&BASE.replacen(from, to, 1), Path::new("p.yaml")).unwrap_err();
            let d = &errs.0[0];
            assert!(d.message.contains(want), "{to:?}: expected {want:?}, got {d}");
            assert!(d.line == line || d.line == line + 1, "{to:?}: expected line {line}, got {d}");
        }
    }

    #[test]
    fn unknown_field_is_an_error() {
        let text = "plan: t\nnodes: []\nnoeds: []\n";
        let errs = load_str(text, Path::new("p.yaml")).unwrap_err();
        assert!(errs.0[0].message.contains("unknown field `noeds`"), "{}", errs);
        assert_eq!(errs.0[0].line, 3);
    }
}
