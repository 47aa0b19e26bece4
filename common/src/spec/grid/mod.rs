//! Grids: a `[base]` run, `[grid]` arrays expanded as a cartesian product, extra `[[runs]]`.
//! Errors carry the grid file's line and column.
//!
//! ```toml
//! name = "quick"
//! description = "optional free text"
//!
//! [base]                 # any run field (see `RunSpec`); every run starts from these
//! image_size = 32
//! epochs = 3
//!
//! [grid]                 # every array is a dimension; the first key varies slowest
//! model = ["cnn_baseline", "lenet"]
//! seed = [1, 2]
//! dataset.fit = ["pad", "resize"]   # nested keys: a dotted key or a sub-table
//!
//! [[runs]]               # explicit extra runs, each merged over `[base]` (not crossed)
//! model = "resnet18"
//! name = "resnet18 baseline"        # optional readable name
//!
//! [[claims]]             # hypotheses the report judges (see [`super::claims`])
//! name = "BN helps"
//! better = { model = "cnn_baseline" }
//! than = { model = "cnn_sigmoid" }
//! ```
//!
//! A run's readable name is its model followed by `label=value` for every key that varies
//! across the expanded runs (labels are the catalogue's short factor names, seed last):
//! `cnn act=relu bn=true head=gap seed=2`. Those values are the run's `factors`.
//!
//! # Layout
//! - `span`: positions in the file: paths into its TOML tree and their `line:col`.
//! - `checks`: top-level keys, typed sections, size limits, unique names, each run's spec
//!   and model.
//! - `expand`: the `[grid]` dimensions and each run's merged table, with where its values
//!   came from.
//! - `naming`: the keys that vary, run names and factors.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

use super::early_stopping::{self, EarlyStopping};
use super::run::RunSpec;

mod checks;
mod expand;
mod naming;
mod span;
#[cfg(test)]
mod tests;

pub(super) use naming::toml_to_json;
pub(super) use span::{keys, Seg, Source};
pub use span::{line_col, locate_key};

/// The most runs a grid may expand to.
pub const MAX_RUNS: usize = 10_000;

/// The largest grid file (bytes).
pub const MAX_GRID_FILE_BYTES: usize = 1 << 20;

/// The longest string value in a grid (bytes), except `description`.
pub const MAX_STRING_BYTES: usize = 4_096;

/// The longest `description` (bytes).
pub const MAX_DESCRIPTION_BYTES: usize = 64 << 10;

/// The most bytes the expanded runs' values may add up to (each run carries its own copy
/// of `[base]` and its grid values): checked arithmetically before anything is expanded.
pub const MAX_EXPANDED_BYTES: usize = 64 << 20;

/// The largest `priority` a grid may ask for (its share weight against other experiments).
pub const MAX_PRIORITY: u32 = 100;

/// A grid that is wrong, with the position in its file that is to blame.
/// Displays as `file:line:col: message` (or `file: message` when no position applies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct GridError {
    /// The grid file's name, as given to [`parse_grid`].
    pub file: String,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for GridError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// An expanded, validated grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// The grid's (experiment's) name.
    pub name: String,
    /// Optional free text.
    pub description: Option<String>,
    /// The experiment's weight in the cluster's fair share (1 by default; 2 gets twice the
    /// devices of a weight-1 experiment while both have queued runs).
    pub priority: u32,
    /// Runs in expansion order: the cartesian product of `[grid]` (first key slowest),
    /// then the `[[runs]]` entries in file order.
    pub runs: Vec<PlannedRun>,
    /// The `[early_stopping]` section, when the grid has one.
    pub early_stopping: Option<EarlyStopping>,
    /// The `[[claims]]` the grid tests, in file order, each side resolved to its runs.
    pub claims: Vec<super::claims::Claim>,
}

/// One run of a grid, validated against the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// Readable, unique within the grid: the model plus the values that vary.
    pub name: String,
    /// The complete run spec (defaults filled in).
    pub spec: RunSpec,
    /// The keys that vary across the grid's runs (dotted for nested keys, e.g.
    /// `dataset.fit`), with this run's value; a key the run does not set is absent.
    pub factors: BTreeMap<String, Json>,
    /// Trainable parameters of the model at the run's input size.
    pub params: u64,
    /// Forward FLOPs for one image.
    pub flops: u64,
}

impl PlannedRun {
    /// Estimated training FLOPs: forward + backward (≈ 3 × forward) for every training
    /// image of every epoch, plus the forward passes of evaluation. `None` when the spec
    /// has no dataset or its splits have no `limit` (their size is only known on disk).
    pub fn train_flops(&self) -> Option<f64> {
        let dataset = self.spec.dataset.as_ref()?;
        let train = dataset.train.limit? as f64;
        let eval = dataset.eval.limit? as f64;
        let per_epoch = 3.0 * self.flops as f64 * train + self.flops as f64 * eval;
        Some(per_epoch * self.spec.epochs as f64)
    }
}

impl Grid {
    /// Sum of [`PlannedRun::train_flops`] over the runs, and how many runs had no estimate.
    pub fn train_flops(&self) -> (f64, usize) {
        let mut total = 0.0;
        let mut unknown = 0;
        for run in &self.runs {
            match run.train_flops() {
                Some(f) => total += f,
                None => unknown += 1,
            }
        }
        (total, unknown)
    }
}

/// Parses, expands and validates a grid. `file_name` only labels error positions.
pub fn parse_grid(text: &str, file_name: &str) -> Result<Grid, GridError> {
    if text.len() > MAX_GRID_FILE_BYTES {
        return Err(GridError {
            file: file_name.to_string(),
            position: None,
            message: format!(
                "the grid file is {} bytes; the limit is {MAX_GRID_FILE_BYTES}",
                text.len()
            ),
        });
    }
    let (source, table) = Source::parse(text, file_name)?;
    build(&source, table)
}

/// Checks, expands and names the runs of a parsed grid file, then checks its early stopping
/// and claims against them.
fn build(src: &Source<'_>, table: toml::Table) -> Result<Grid, GridError> {
    checks::top_level(src, &table)?;
    let mut sections = checks::sections(src, table)?;
    let mut dims = Vec::new();
    if let Some(grid) = &sections.grid {
        expand::dimensions(src, grid, &mut Vec::new(), &mut dims)?;
    }
    let grid_count = checks::size(src, &sections, &dims)?;
    let entries = std::mem::take(&mut sections.entries);
    let merged = expand::merge(
        src,
        &sections.base,
        &dims,
        grid_count,
        sections.grid.is_some(),
        entries,
    )?;

    let names = naming::names(&merged, &dims);
    checks::unique_names(src, &merged, &names)?;
    let factor_keys = naming::varying_keys(&merged, &dims);
    let mut runs = Vec::with_capacity(merged.len());
    for (m, name) in merged.iter().zip(names) {
        let spec = checks::run_spec(src, m, &name)?;
        let (params, flops) = checks::check_model(src, m, &name, &spec)?;
        runs.push(PlannedRun {
            name,
            factors: naming::factors(m, &factor_keys),
            spec,
            params,
            flops,
        });
    }
    if runs.is_empty() {
        return Err(src.error(&keys(["grid"]), "the grid has no runs"));
    }
    super::preset_factors::add_preset_factors(&mut runs);
    if let Some(stopping) = &sections.early_stopping {
        early_stopping::check_against_runs(stopping, &runs)
            .map_err(|(key, message)| src.error(&keys(["early_stopping", key]), message))?;
    }
    let claims = super::claims::parse_claims(src, sections.claims, &runs)?;
    Ok(Grid {
        name: sections.name,
        description: sections.description,
        priority: sections.priority,
        runs,
        early_stopping: sections.early_stopping,
        claims,
    })
}

/// The `priority` of a grid that was accepted before (its text is stored): 1 when absent or
/// unreadable. Reads only the top-level key, without expanding the grid.
pub fn stored_priority(text: &str) -> u32 {
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("priority")?.as_integer())
        .filter(|p| (1..=i64::from(MAX_PRIORITY)).contains(p))
        .map_or(1, |p| p as u32)
}
