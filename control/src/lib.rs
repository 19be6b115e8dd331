//! hutong's control plane: the unified addressing plan, read from YAML, validated with every error
//! located to file:line:column, and compiled into one [`hutong_config::Config`] per gateway.
//!
//! The flow is `load` (parse, keep source positions) → `validate` (every problem at once) →
//! `compile` (one gateway's config, deterministic). Nothing is compiled from an invalid plan.

#![forbid(unsafe_code)]

pub mod compile;
pub mod conformance;
mod decode;
pub mod diagnostics;
pub mod diff;
mod encoding;
pub mod generate;
pub mod load;
pub mod model;
pub mod policy;
pub mod position;
pub mod special_use;
pub mod tree;
pub mod validate;
mod yaml;

pub use compile::compile;
pub use diagnostics::{Diagnostic, Diagnostics};
pub use load::{LoadedPlan, load_bytes, load_file, load_str};
pub use model::Plan;
pub use validate::validate;

/// Loads and validates a plan file; the one call the CLI's `plan check` and `plan compile` share.
pub fn check_file(path: &std::path::Path) -> Result<LoadedPlan, Diagnostics> {
    let plan = load_file(path)?;
    validate(&plan)?;
    Ok(plan)
}
