//! Reading a plan file: typed model plus the source positions validation needs.

use std::path::{Path, PathBuf};

use crate::{
    diagnostics::{Diagnostic, Diagnostics},
    model::Plan,
    spans::Spans,
};

/// A parsed plan with where it came from.
#[derive(Debug)]
pub struct LoadedPlan {
    pub plan: Plan,
    pub file: PathBuf,
    pub spans: Spans,
}

impl LoadedPlan {
    /// A diagnostic placed at `path` in this plan's file.
    pub fn error(&self, path: &str, message: impl Into<String>, hint: Option<String>) -> Diagnostic {
        let pos = self.spans.find(path);
        Diagnostic {
            file: self.file.clone(),
            line: pos.map_or(0, |p| p.line),
            column: pos.map_or(0, |p| p.column),
            path: path.to_string(),
            message: message.into(),
            hint,
        }
    }
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

/// Parses plan text; `file` is only used to label diagnostics.
pub fn load_str(text: &str, file: &Path) -> Result<LoadedPlan, Diagnostics> {
    match serde_yaml_ng::from_str::<Plan>(text) {
        Ok(plan) => Ok(LoadedPlan { plan, file: file.to_path_buf(), spans: Spans::index(text) }),
        Err(e) => {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = e.to_string();
            // serde_yaml appends " at line L column C"; the prefix already says where.
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            Err(Diagnostics(vec![Diagnostic {
                file: file.to_path_buf(),
                line,
                column,
                path: String::new(),
                hint: hint_for(&message),
                message,
            }]))
        }
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

    #[test]
    fn unknown_field_is_an_error() {
        let text = "plan: t\nnodes: []\nnoeds: []\n";
        let errs = load_str(text, Path::new("p.yaml")).unwrap_err();
        assert!(errs.0[0].message.contains("unknown field `noeds`"), "{}", errs);
        assert_eq!(errs.0[0].line, 3);
    }
}
