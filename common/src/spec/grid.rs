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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde_json::Value as Json;
use toml_edit::{Document, Item};

use super::early_stopping::{self, EarlyStopping};
use super::model::ModelFactors;
use super::run::{RunSpec, SpecError};
use crate::{arch, zoo};

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

/// The keys a grid file may have at its top level.
const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "priority",
    "base",
    "grid",
    "runs",
    "early_stopping",
    "claims",
];

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

/// 1-based line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Line and column of a dotted key path (e.g. `base.dataset.root`) in a TOML document:
/// the key itself when present, else the deepest table on the path that exists.
pub fn locate_key(text: &str, dotted: &str) -> Option<(usize, usize)> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best = None;
    for part in dotted.split('.').filter(|p| !p.is_empty()) {
        let table = item.as_table_like()?;
        let (key, child) = match table.get_key_value(part) {
            Some(kv) => kv,
            None => break,
        };
        if let Some(span) = key.span() {
            best = Some(span.start);
        }
        item = child;
    }
    best.map(|offset| line_col(text, offset))
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
    let table: toml::Table = toml::from_str(text).map_err(|e| GridError {
        file: file_name.to_string(),
        position: e.span().map(|s| line_col(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let doc = Document::parse(text).map_err(|e| GridError {
        file: file_name.to_string(),
        position: e.span().map(|s| line_col(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let source = Source {
        text,
        file: file_name,
        doc,
    };
    Parser { source: &source }.parse(table)
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

/// One step of a path into a TOML tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn keys<'a>(parts: impl IntoIterator<Item = &'a str>) -> Vec<Seg> {
    parts.into_iter().map(|p| Seg::Key(p.to_string())).collect()
}

/// The grid file, for positions.
pub(super) struct Source<'a> {
    text: &'a str,
    file: &'a str,
    doc: Document<&'a str>,
}

impl Source<'_> {
    /// Offset of the deepest element of `path` that exists in the file.
    pub(super) fn locate(&self, path: &[Seg]) -> Option<usize> {
        locate_from(Node::Item(self.doc.as_item()), path)
    }

    fn position(&self, path: &[Seg]) -> Option<(usize, usize)> {
        self.locate(path).map(|o| line_col(self.text, o))
    }

    pub(super) fn error(&self, path: &[Seg], message: impl Into<String>) -> GridError {
        GridError {
            file: self.file.to_string(),
            position: self.position(path).or(Some((1, 1))),
            message: message.into(),
        }
    }
}

/// A place in a parsed TOML document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a toml_edit::Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(value) => value
                .as_inline_table()
                .map(|t| t as &dyn toml_edit::TableLike),
            Node::Table(table) => Some(table),
        }
    }
}

/// Offset of the deepest element of `path` below `node`.
fn locate_from(node: Node<'_>, path: &[Seg]) -> Option<usize> {
    let (seg, rest) = path.split_first()?;
    match seg {
        Seg::Key(k) => {
            let (key, child) = node.table_like()?.get_key_value(k)?;
            locate_from(Node::Item(child), rest).or(key.span().map(|s| s.start))
        }
        Seg::Index(i) => {
            let array = match node {
                Node::Item(item) => item.as_array(),
                Node::Value(value) => value.as_array(),
                Node::Table(_) => None,
            };
            if let Some(array) = array {
                let value = array.get(*i)?;
                return locate_from(Node::Value(value), rest).or(value.span().map(|s| s.start));
            }
            let Node::Item(item) = node else { return None };
            let table = item.as_array_of_tables()?.get(*i)?;
            locate_from(Node::Table(table), rest).or(table.span().map(|s| s.start))
        }
    }
}

/// Where a value of a merged run came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// Element `index` of the `[grid]` array at `path`.
    Grid { path: Vec<String>, index: usize },
    /// `[[runs]]` entry `index`.
    Runs { index: usize },
}

/// How one run was made: its merged table and where the non-base values came from.
#[derive(Debug, Clone)]
struct Merged {
    table: toml::Table,
    /// Origins by key path (longest prefix wins); paths absent here come from `[base]`.
    origins: Vec<(Vec<String>, Origin)>,
    /// The whole run's origin for errors that concern no key.
    whole: Vec<Seg>,
    /// An explicit name from a `[[runs]]` entry.
    explicit_name: Option<String>,
}

impl Merged {
    /// The file path to blame for an error at `path` (dotted keys) of this run.
    fn blame(&self, path: &[String]) -> Vec<Seg> {
        match self.origin(path) {
            Some(Origin::Grid { path: dim, index }) => {
                let mut segs = keys(["grid"]);
                segs.extend(dim.iter().map(|k| Seg::Key(k.clone())));
                segs.push(Seg::Index(*index));
                segs
            }
            Some(Origin::Runs { index }) => {
                let mut segs = vec![Seg::Key("runs".into()), Seg::Index(*index)];
                segs.extend(path.iter().map(|k| Seg::Key(k.clone())));
                segs
            }
            None if path.is_empty() => self.whole.clone(),
            None => {
                let mut segs = keys(["base"]);
                segs.extend(path.iter().map(|k| Seg::Key(k.clone())));
                segs
            }
        }
    }

    /// Where the value at `path` came from (`None`: `[base]`).
    fn origin(&self, path: &[String]) -> Option<&Origin> {
        self.origins
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, o)| o)
    }

    /// Whether the value at `path` came from `[grid]` or a `[[runs]]` entry.
    fn varies_at(&self, path: &[String]) -> bool {
        self.origins.iter().any(|(p, _)| path.starts_with(p))
    }

    /// The value at a dotted path.
    fn get(&self, path: &[String]) -> Option<&toml::Value> {
        let (last, parents) = path.split_last()?;
        let mut table = &self.table;
        for key in parents {
            table = table.get(key)?.as_table()?;
        }
        table.get(last)
    }
}

struct Parser<'a> {
    source: &'a Source<'a>,
}

impl Parser<'_> {
    fn parse(&self, mut table: toml::Table) -> Result<Grid, GridError> {
        let src = self.source;
        let mut top: Vec<&String> = table.keys().collect();
        top.sort_by_key(|k| src.locate(&keys([k.as_str()])));
        for key in top {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                return Err(src.error(
                    &keys([key.as_str()]),
                    format!(
                        "unknown key `{key}` (a grid has: {}; run fields go in [base])",
                        TOP_LEVEL_KEYS.join(", ")
                    ),
                ));
            }
        }
        for (key, value) in &table {
            let limit = if key == "description" {
                MAX_DESCRIPTION_BYTES
            } else {
                MAX_STRING_BYTES
            };
            if let Some((at, len)) = long_string(value, &mut keys([key.as_str()]), limit) {
                let shown: Vec<String> = at
                    .iter()
                    .map(|seg| match seg {
                        Seg::Key(k) => k.chars().take(40).collect(),
                        Seg::Index(i) => i.to_string(),
                    })
                    .collect();
                return Err(src.error(
                    &at,
                    format!(
                        "`{}` is a string of {len} bytes; the limit is {limit}",
                        shown.join(".")
                    ),
                ));
            }
        }
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) if s.trim().len() > 128 => {
                return Err(src.error(
                    &keys(["name"]),
                    format!("`name` is {} bytes long; the limit is 128", s.trim().len()),
                ))
            }
            Some(toml::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(toml::Value::String(_)) => {
                return Err(src.error(&keys(["name"]), "`name` must not be empty"))
            }
            Some(other) => {
                return Err(src.error(
                    &keys(["name"]),
                    format!("`name` must be a string, not {}", other.type_str()),
                ))
            }
            None => return Err(src.error(&[], "missing `name = \"...\"` (the experiment's name)")),
        };
        let description = match table.remove("description") {
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(src.error(
                    &keys(["description"]),
                    format!("`description` must be a string, not {}", other.type_str()),
                ))
            }
            None => None,
        };
        let priority = match table.remove("priority") {
            Some(toml::Value::Integer(p)) if (1..=i64::from(MAX_PRIORITY)).contains(&p) => p as u32,
            Some(other) => {
                return Err(src.error(
                    &keys(["priority"]),
                    format!("`priority` must be an integer from 1 to {MAX_PRIORITY}, not {other}"),
                ))
            }
            None => 1,
        };
        let base = match table.remove("base") {
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                return Err(src.error(
                    &keys(["base"]),
                    format!("`base` must be a table, not {}", other.type_str()),
                ))
            }
            None => toml::Table::new(),
        };
        let grid = match table.remove("grid") {
            Some(toml::Value::Table(t)) => Some(t),
            Some(other) => {
                return Err(src.error(
                    &keys(["grid"]),
                    format!("`grid` must be a table of arrays, not {}", other.type_str()),
                ))
            }
            None => None,
        };
        let early_stopping = match table.remove("early_stopping") {
            Some(value) => Some(early_stopping::parse_section(&value).map_err(|e| {
                let mut at = keys(["early_stopping"]);
                at.extend(e.key.iter().map(|k| Seg::Key(k.clone())));
                src.error(&at, e.message)
            })?),
            None => None,
        };
        let entries = match table.remove("runs") {
            Some(toml::Value::Array(a)) => a,
            Some(other) => {
                return Err(src.error(
                    &keys(["runs"]),
                    format!(
                        "`runs` must be an array of tables ([[runs]]), not {}",
                        other.type_str()
                    ),
                ))
            }
            None => Vec::new(),
        };
        let claims = table.remove("claims");

        let mut dims = Vec::new();
        if let Some(grid) = &grid {
            self.dimensions(grid, &mut Vec::new(), &mut dims)?;
        }
        let grid_count = if !dims.is_empty() {
            dims.iter()
                .try_fold(1usize, |acc, d| acc.checked_mul(d.values.len()))
        } else if entries.is_empty() {
            Some(1)
        } else {
            Some(0)
        };
        let total = grid_count.and_then(|n| n.checked_add(entries.len()));
        match total {
            Some(n) if n <= MAX_RUNS => {}
            _ => {
                let shown = total
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "too many".into());
                let at = if grid.is_some() {
                    keys(["grid"])
                } else {
                    keys(["runs"])
                };
                return Err(src.error(
                    &at,
                    format!("the grid expands to {shown} runs; the limit is {MAX_RUNS}"),
                ));
            }
        }
        let grid_count = grid_count.unwrap_or(0);
        // What the expansion would hold, computed before it allocates anything.
        let base_bytes = table_bytes(&base);
        let dims_bytes: usize = dims
            .iter()
            .map(|d| d.values.iter().map(value_bytes).max().unwrap_or(0))
            .sum();
        let entries_bytes: usize = entries.iter().map(value_bytes).sum();
        let expanded = grid_count
            .checked_mul(base_bytes.saturating_add(dims_bytes))
            .and_then(|g| g.checked_add(entries.len().checked_mul(base_bytes)?))
            .and_then(|g| g.checked_add(entries_bytes));
        match expanded {
            Some(n) if n <= MAX_EXPANDED_BYTES => {}
            _ => {
                let shown = expanded
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "more than 2^64".into());
                return Err(src.error(
                    &keys(["base"]),
                    format!(
                        "the expanded runs would hold {shown} bytes of values ({} runs × \
                         [base] of {base_bytes} bytes plus their grid values); the limit is \
                         {MAX_EXPANDED_BYTES}: shorten the long values or split the grid",
                        total.unwrap_or(0)
                    ),
                ));
            }
        }

        let mut merged = Vec::with_capacity(total.unwrap_or(0));
        let whole_grid = if grid.is_some() {
            keys(["grid"])
        } else {
            keys(["base"])
        };
        for combo in 0..grid_count {
            let mut table = base.clone();
            let mut origins = Vec::with_capacity(dims.len());
            let mut rest = combo;
            // Mixed radix, last dimension fastest.
            let mut indices = vec![0; dims.len()];
            for (slot, dim) in indices.iter_mut().zip(&dims).rev() {
                *slot = rest % dim.values.len();
                rest /= dim.values.len();
            }
            for (dim, &index) in dims.iter().zip(&indices) {
                set_path(&mut table, &dim.path, dim.values[index].clone());
                origins.push((
                    dim.path.clone(),
                    Origin::Grid {
                        path: dim.path.clone(),
                        index,
                    },
                ));
            }
            merged.push(Merged {
                table,
                origins,
                whole: whole_grid.clone(),
                explicit_name: None,
            });
        }
        for (index, entry) in entries.into_iter().enumerate() {
            let at = vec![Seg::Key("runs".into()), Seg::Index(index)];
            let toml::Value::Table(mut entry) = entry else {
                return Err(src.error(&at, "each [[runs]] entry must be a table"));
            };
            let explicit_name = match entry.remove("name") {
                Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Some(_) => {
                    let mut p = at.clone();
                    p.push(Seg::Key("name".into()));
                    return Err(src.error(&p, "a run's `name` must be a non-empty string"));
                }
                None => None,
            };
            let mut table = base.clone();
            let mut leaves = Vec::new();
            leaf_paths(&entry, &mut Vec::new(), &mut leaves);
            deep_merge(&mut table, entry);
            let origins = leaves
                .into_iter()
                .map(|p| (p, Origin::Runs { index }))
                .collect();
            merged.push(Merged {
                table,
                origins,
                whole: at,
                explicit_name,
            });
        }

        let names = self.names(&merged, &dims);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(first) = seen.insert(name.as_str(), i) {
                return Err(src.error(
                    &merged[i].whole,
                    format!(
                        "two runs are both named `{name}` (runs {} and {}); vary a key, or \
                         give the [[runs]] entry a `name`",
                        first + 1,
                        i + 1
                    ),
                ));
            }
        }
        let factor_keys = varying_keys(&merged, &dims);

        let mut runs = Vec::with_capacity(merged.len());
        for (m, name) in merged.iter().zip(names) {
            let spec = self.run_spec(m, &name)?;
            let (params, flops) = self.check_model(m, &name, &spec)?;
            let factors = factor_keys
                .iter()
                .filter_map(|path| {
                    let value = m.get(path)?;
                    Some((path.join("."), toml_to_json(value)))
                })
                .collect();
            runs.push(PlannedRun {
                name,
                spec,
                factors,
                params,
                flops,
            });
        }
        if runs.is_empty() {
            return Err(src.error(&keys(["grid"]), "the grid has no runs"));
        }
        super::preset_factors::add_preset_factors(&mut runs);
        if let Some(stopping) = &early_stopping {
            early_stopping::check_against_runs(stopping, &runs)
                .map_err(|(key, message)| src.error(&keys(["early_stopping", key]), message))?;
        }
        let claims = super::claims::parse_claims(src, claims, &runs)?;
        Ok(Grid {
            name,
            description,
            priority,
            runs,
            early_stopping,
            claims,
        })
    }

    /// The `[grid]` arrays, in file order, with their dotted paths.
    fn dimensions(
        &self,
        table: &toml::Table,
        prefix: &mut Vec<String>,
        out: &mut Vec<Dimension>,
    ) -> Result<(), GridError> {
        let src = self.source;
        let mut entries: Vec<(&String, &toml::Value)> = table.iter().collect();
        entries.sort_by_key(|(k, _)| {
            let mut path = keys(["grid"]);
            path.extend(prefix.iter().map(|p| Seg::Key(p.clone())));
            path.push(Seg::Key((*k).clone()));
            src.locate(&path)
        });
        for (key, value) in entries {
            prefix.push(key.clone());
            let mut at = keys(["grid"]);
            at.extend(prefix.iter().map(|p| Seg::Key(p.clone())));
            match value {
                toml::Value::Array(values) if values.is_empty() => {
                    return Err(src.error(
                        &at,
                        format!(
                            "`grid.{}` is empty: the grid would have no runs",
                            prefix.join(".")
                        ),
                    ))
                }
                toml::Value::Array(values) => out.push(Dimension {
                    path: prefix.clone(),
                    values: values.clone(),
                }),
                toml::Value::Table(sub) => self.dimensions(sub, prefix, out)?,
                other => {
                    return Err(src.error(
                        &at,
                        format!(
                            "`grid.{}` must be an array of values to try, not a {} (a fixed \
                             value goes in [base])",
                            prefix.join("."),
                            other.type_str()
                        ),
                    ))
                }
            }
            prefix.pop();
        }
        Ok(())
    }

    /// Readable names: the model plus `label=value` for the keys that vary.
    fn names(&self, merged: &[Merged], dims: &[Dimension]) -> Vec<String> {
        let varying = varying_keys(merged, dims);
        merged
            .iter()
            .map(|m| {
                if let Some(name) = &m.explicit_name {
                    return name.clone();
                }
                let model = match m.table.get("model") {
                    Some(toml::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "?".to_string(),
                };
                let mut name = model;
                for path in &varying {
                    if let Some(value) = m.get(path) {
                        name.push(' ');
                        name.push_str(&label(path));
                        name.push('=');
                        name.push_str(&display_value(value));
                    }
                }
                name
            })
            .collect()
    }

    /// Deserialises and checks one merged run, blaming the file position its error came from.
    fn run_spec(&self, m: &Merged, name: &str) -> Result<RunSpec, GridError> {
        let src = self.source;
        let blame = |path: &[String], message: String| {
            src.error(&m.blame(path), format!("run `{name}`: {message}"))
        };
        // Through TOML text so that serde errors come with a position that names the key.
        let text = toml::to_string(&m.table)
            .map_err(|e| blame(&[], format!("cannot be written as TOML: {e}")))?;
        let spec: RunSpec = match toml::from_str(&text) {
            Ok(spec) => spec,
            Err(e) => {
                let message = e.message().trim().to_string();
                let path = match e.span() {
                    Some(span) if span.end > 0 => key_path_at(&text, span.start),
                    _ => culprit_without_span(&m.table, &message),
                };
                let from_grid = matches!(m.origin(&path), Some(Origin::Grid { .. }));
                let message = if from_grid && message.contains("expected a sequence") {
                    format!(
                        "{message} (in [grid] every array element is one value to try: \
                         write a list value as [[5, 6]])"
                    )
                } else {
                    message
                };
                return Err(blame(&path, message));
            }
        };
        spec.check().map_err(|e| {
            let path = match &e {
                SpecError::UnknownKey { path } => dotted(path),
                SpecError::Invalid { field, .. } => dotted(field),
                SpecError::Toml(_) => Vec::new(),
            };
            blame(&path, e.to_string())
        })?;
        Ok(spec)
    }

    /// Builds the run's model from the catalogue; returns (params, forward FLOPs per image).
    fn check_model(&self, m: &Merged, name: &str, spec: &RunSpec) -> Result<(u64, u64), GridError> {
        let src = self.source;
        let size_path = || {
            let image = vec!["image_size".to_string()];
            if m.varies_at(&image) && !m.varies_at(&["model".to_string()]) {
                image
            } else {
                vec!["model".to_string()]
            }
        };
        let arch = spec.architecture().map_err(|e| {
            let path = match &e {
                zoo::ZooError::UnsupportedFactor { factor, .. }
                | zoo::ZooError::InvalidFactor { factor, .. } => vec![factor.to_string()],
                zoo::ZooError::UnknownModel { .. } => vec!["model".to_string()],
                zoo::ZooError::InvalidInput { .. } => vec!["channels".to_string()],
                _ => size_path(),
            };
            src.error(&m.blame(&path), format!("run `{name}`: {e}"))
        })?;
        let analysis = arch::analyse(&arch).map_err(|e| {
            src.error(
                &m.blame(&size_path()),
                format!(
                    "run `{name}`: model `{}` at {}×{}×{}: {e}",
                    spec.model, spec.channels, spec.image_size, spec.image_size
                ),
            )
        })?;
        Ok((analysis.params, analysis.flops))
    }
}

/// One `[grid]` array.
#[derive(Debug, Clone)]
struct Dimension {
    path: Vec<String>,
    values: Vec<toml::Value>,
}

/// About how many bytes a value takes once expanded into a run (its strings, keys and a
/// few bytes per scalar): used to refuse a grid before its expansion allocates.
fn value_bytes(value: &toml::Value) -> usize {
    match value {
        toml::Value::String(s) => s.len() + 2,
        toml::Value::Array(a) => a.iter().map(value_bytes).fold(2, usize::saturating_add),
        toml::Value::Table(t) => table_bytes(t),
        _ => 8,
    }
}

/// [`value_bytes`] of a table.
fn table_bytes(table: &toml::Table) -> usize {
    table
        .iter()
        .map(|(k, v)| k.len().saturating_add(value_bytes(v)).saturating_add(2))
        .fold(2, usize::saturating_add)
}

/// The first string (or key) longer than `limit` under `value`: its path and length.
fn long_string(
    value: &toml::Value,
    path: &mut Vec<Seg>,
    limit: usize,
) -> Option<(Vec<Seg>, usize)> {
    match value {
        toml::Value::String(s) if s.len() > limit => Some((path.clone(), s.len())),
        toml::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
            path.push(Seg::Index(i));
            let found = long_string(v, path, limit);
            path.pop();
            found
        }),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| {
            if k.len() > limit {
                return Some((path.clone(), k.len()));
            }
            path.push(Seg::Key(k.clone()));
            let found = long_string(v, path, limit);
            path.pop();
            found
        }),
        _ => None,
    }
}

fn dotted(path: &str) -> Vec<String> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Keys that vary across runs: every `[grid]` dimension with two or more distinct values,
/// then every key a `[[runs]]` entry sets whose value is not the same everywhere; `model`
/// excluded (it starts the name), `seed` last.
fn varying_keys(merged: &[Merged], dims: &[Dimension]) -> Vec<Vec<String>> {
    let mut candidates: Vec<Vec<String>> = dims.iter().map(|d| d.path.clone()).collect();
    let mut extra = BTreeSet::new();
    for m in merged {
        for (path, origin) in &m.origins {
            if matches!(origin, Origin::Runs { .. }) && !candidates.contains(path) {
                extra.insert(path.clone());
            }
        }
    }
    candidates.extend(extra);
    candidates.retain(|path| path.len() != 1 || path[0] != "model");
    candidates.retain(|path| {
        let mut distinct: Vec<Option<&toml::Value>> = Vec::new();
        for m in merged {
            let v = m.get(path);
            if !distinct.contains(&v) {
                distinct.push(v);
            }
            if distinct.len() > 1 {
                return true;
            }
        }
        false
    });
    let (mut seed, mut rest): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|p| p.len() == 1 && p[0] == "seed");
    rest.append(&mut seed);
    rest
}

/// The short label of a key path in run names (`activation` → `act`).
fn label(path: &[String]) -> String {
    match path {
        [single] => zoo::factor_label(single).to_string(),
        _ => path.join("."),
    }
}

/// A value as it appears in run names: strings bare, everything else as compact TOML/JSON.
fn display_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => toml_to_json(other).to_string(),
    }
}

pub(super) fn toml_to_json(value: &toml::Value) -> Json {
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(f.to_string())),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Sets a dotted path in a table, creating intermediate tables.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("made a table above");
    }
    current.insert(last.clone(), value);
}

/// Merges `over` into `into`: tables recursively, any other value replaced.
fn deep_merge(into: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(sub)) => {
                deep_merge(existing, sub)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Dotted paths of the non-table values of a table.
fn leaf_paths(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            toml::Value::Table(sub) => leaf_paths(sub, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

/// The dotted key path whose key or value spans `offset` in `text` (the deepest one).
fn key_path_at(text: &str, offset: usize) -> Vec<String> {
    let Ok(doc) = Document::parse(text) else {
        return Vec::new();
    };
    let mut best: Vec<String> = Vec::new();
    let mut path = Vec::new();
    find_key(doc.as_item(), offset, &mut path, &mut best);
    best
}

fn find_key(item: &Item, offset: usize, path: &mut Vec<String>, best: &mut Vec<String>) {
    let Some(table) = item.as_table_like() else {
        return;
    };
    let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
    for name in names {
        let Some((key, child)) = table.get_key_value(&name) else {
            continue;
        };
        path.push(name.clone());
        let within = |span: Option<std::ops::Range<usize>>| {
            span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
        };
        if (within(key.span()) || within(child.span())) && path.len() > best.len() {
            *best = path.clone();
        }
        find_key(child, offset, path, best);
        path.pop();
    }
}

/// For a serde error without a position (fields of flattened structs, missing fields):
/// the key to blame.
fn culprit_without_span(table: &toml::Table, message: &str) -> Vec<String> {
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(field) = rest.split('`').next() {
            return vec![field.to_string()];
        }
    }
    // The model factors are flattened into the run, so their type errors carry no span:
    // find the factor that does not deserialise on its own.
    for (key, value) in table {
        let mut single = toml::Table::new();
        single.insert(key.clone(), value.clone());
        if toml::Value::Table(single)
            .try_into::<ModelFactors>()
            .is_err()
        {
            return vec![key.clone()];
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"name = "t"

[base]
image_size = 32
channels = 1
classes = 10
epochs = 2
"#;

    fn grid(extra: &str) -> Result<Grid, GridError> {
        parse_grid(&format!("{BASE}{extra}"), "g.toml")
    }

    fn err(extra: &str) -> String {
        grid(extra).unwrap_err().to_string()
    }

    #[test]
    fn cartesian_product_first_key_slowest() {
        let g = grid("\n[grid]\nmodel = [\"cnn\", \"lenet\"]\nseed = [1, 2, 3]\n").unwrap();
        let names: Vec<&str> = g.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cnn seed=1",
                "cnn seed=2",
                "cnn seed=3",
                "lenet seed=1",
                "lenet seed=2",
                "lenet seed=3"
            ]
        );
        assert_eq!(g.runs[4].spec.model, "lenet");
        assert_eq!(g.runs[4].spec.seed, 2);
        assert_eq!(g.runs[4].spec.epochs, 2);
        assert_eq!(g.runs[4].factors.get("seed"), Some(&Json::from(2)));
        assert!(g.runs.iter().all(|r| r.params > 0 && r.flops > 0));
    }

    #[test]
    fn factorial_names_use_short_labels_and_seed_last() {
        let g = grid(
            "\n[grid]\nseed = [1, 2]\nmodel = [\"cnn\"]\nactivation = [\"relu\", \"sigmoid\"]\n\
             batch_norm = [false, true]\nhead = [\"fc\", \"gap\"]\n",
        )
        .unwrap();
        assert_eq!(g.runs.len(), 16);
        let first = &g.runs[0];
        assert_eq!(first.name, "cnn act=relu bn=false head=fc seed=1");
        let keys: Vec<&str> = first.factors.keys().map(String::as_str).collect();
        assert_eq!(keys, ["activation", "batch_norm", "head", "seed"]);
        assert_eq!(first.factors["batch_norm"], Json::Bool(false));
    }

    #[test]
    fn single_value_dimensions_do_not_vary() {
        let g = grid("\n[grid]\nmodel = [\"cnn\", \"lenet\"]\nseed = [7]\n").unwrap();
        assert_eq!(g.runs[0].name, "cnn");
        assert_eq!(g.runs[0].spec.seed, 7);
        assert!(g.runs[0].factors.is_empty());
    }

    #[test]
    fn explicit_runs_merge_over_base() {
        let g = grid(
            "\n[grid]\nmodel = [\"cnn\"]\nseed = [1, 2]\n\n[[runs]]\nmodel = \"lenet\"\nepochs = 5\n\n\
             [[runs]]\nmodel = \"lenet\"\nname = \"lenet long\"\nepochs = 9\n",
        )
        .unwrap();
        assert_eq!(g.runs.len(), 4);
        assert_eq!(g.runs[2].name, "lenet epochs=5");
        assert_eq!(g.runs[2].spec.epochs, 5);
        assert_eq!(g.runs[2].spec.image_size, 32);
        assert_eq!(g.runs[3].name, "lenet long");
        assert_eq!(g.runs[0].name, "cnn epochs=2 seed=1");
    }

    #[test]
    fn base_alone_is_one_run() {
        let g = parse_grid(
            "name = \"one\"\n[base]\nmodel = \"lenet\"\nimage_size = 32\nchannels = 1\n",
            "g.toml",
        )
        .unwrap();
        assert_eq!(g.runs.len(), 1);
        assert_eq!(g.runs[0].name, "lenet");
    }

    #[test]
    fn nested_grid_keys_set_nested_fields() {
        let g = grid(
            "[base.dataset]\nformat = \"idx\"\nroot = \"/d\"\n\
             train = { images = \"a\", labels = \"b\", limit = 100 }\n\
             eval = { images = \"c\", labels = \"d\", limit = 50 }\n\n\
             [grid]\nmodel = [\"lenet\"]\ndataset.fit = [\"pad\", \"resize\"]\n",
        )
        .unwrap();
        assert_eq!(g.runs.len(), 2);
        assert_eq!(g.runs[0].name, "lenet dataset.fit=pad");
        let fit = g.runs[1].spec.dataset.as_ref().unwrap().fit;
        assert_eq!(fit, crate::spec::Fit::Resize);
        assert_eq!(
            g.runs[1].factors["dataset.fit"],
            Json::String("resize".into())
        );
        let flops = g.runs[0].train_flops().unwrap();
        assert_eq!(flops, (3.0 * 100.0 + 50.0) * g.runs[0].flops as f64 * 2.0);
    }

    #[test]
    fn syntax_error_is_located() {
        let e = parse_grid("name = \"x\"\n[base\n", "g.toml").unwrap_err();
        assert_eq!(e.file, "g.toml");
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
    }

    #[test]
    fn unknown_top_level_key_is_located() {
        assert_eq!(
            err("[gird]\nmodel = [\"cnn\"]\n"),
            "g.toml:8:2: unknown key `gird` (a grid has: name, description, priority, base, grid, runs, \
             early_stopping, claims; run fields go in [base])"
        );
    }

    #[test]
    fn missing_name() {
        let e = parse_grid("[base]\nmodel = \"cnn\"\n", "g.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "g.toml:1:1: missing `name = \"...\"` (the experiment's name)"
        );
    }

    #[test]
    fn unknown_base_key_is_located() {
        let e = parse_grid(
            "name = \"x\"\n[base]\nmodel = \"cnn\"\nepochz = 3\n",
            "g.toml",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "g.toml:4:1: run `cnn`: unknown key `epochz`");
    }

    #[test]
    fn unknown_grid_key_points_at_its_element() {
        let e = err("\n[grid]\nmodel = [\"cnn\"]\nactivaton = [\"relu\", \"tanh\"]\n");
        assert!(
            e.starts_with("g.toml:11:14: run `cnn activaton=relu`: unknown key `activaton`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_in_base_is_located() {
        let e = parse_grid(
            "name = \"x\"\n[base]\nmodel = \"cnn\"\nepochs = \"three\"\n",
            "g.toml",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g.toml:4:1: run `cnn`: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_in_grid_points_at_the_element() {
        let e = err("\n[grid]\nmodel = [\"cnn\"]\nlr = [0.1, \"fast\"]\n");
        assert!(
            e.starts_with("g.toml:11:12: run `cnn lr=fast`: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn wrong_factor_value_points_at_the_element() {
        // Factors are flattened into the run spec: serde gives no position for them.
        let e = err("\n[grid]\nmodel = [\"cnn\"]\nactivation = [\"relu\", \"swish\"]\n");
        assert!(
            e.starts_with("g.toml:11:23: run `cnn act=swish`: unknown variant"),
            "{e}"
        );
    }

    #[test]
    fn nested_unknown_key_in_base_is_located() {
        let e = grid(
            "model = \"lenet\"\n[base.dataset]\nformat = \"idx\"\nroot = \"/d\"\nformt = 1\n\
             train = { images = \"a\", labels = \"b\" }\neval = { images = \"c\", labels = \"d\" }\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g.toml:12:1: run `lenet`: unknown field `formt`"),
            "{e}"
        );
    }

    #[test]
    fn invalid_value_in_runs_entry_is_located() {
        let e = err("\n[[runs]]\nmodel = \"lenet\"\nepochs = 0\n");
        assert_eq!(
            e,
            "g.toml:11:1: run `lenet`: field `epochs`: must be at least 1"
        );
    }

    #[test]
    fn unknown_model_points_at_the_grid_element() {
        let e = err("\n[grid]\nmodel = [\"cnn\", \"resnet99\"]\n");
        assert!(
            e.starts_with("g.toml:10:17: run `resnet99`: unknown model `resnet99`"),
            "{e}"
        );
    }

    #[test]
    fn impossible_size_points_at_the_model() {
        let e = parse_grid(
            "name = \"x\"\n[base]\nimage_size = 4\nchannels = 1\n[grid]\nmodel = [\"lenet\"]\n",
            "g.toml",
        )
        .unwrap_err();
        assert_eq!(e.position, Some((6, 10)), "{e}");
        assert!(e.message.starts_with("run `lenet`: "), "{e}");
    }

    #[test]
    fn unsupported_factor_points_at_the_factor() {
        let e = err("\n[grid]\nmodel = [\"lenet\"]\nbatch_norm = [true, false]\n");
        assert!(
            e.starts_with("g.toml:11:15: run `lenet bn=true`: model `lenet` has no factor"),
            "{e}"
        );
    }

    #[test]
    fn empty_dimension_is_an_error() {
        assert_eq!(
            err("\n[grid]\nmodel = [\"cnn\"]\nseed = []\n"),
            "g.toml:11:1: `grid.seed` is empty: the grid would have no runs"
        );
    }

    #[test]
    fn scalar_in_grid_is_an_error() {
        let e = err("\n[grid]\nmodel = [\"cnn\"]\nlr = 0.1\n");
        assert!(
            e.starts_with("g.toml:11:1: `grid.lr` must be an array"),
            "{e}"
        );
    }

    #[test]
    fn expansion_over_the_limit_is_an_error() {
        let e = err("\n[grid]\nmodel = [\"cnn\"]\nseed = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n\
                     lr = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]\n\
                     epochs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nbatch_size = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n\
                     momentum = [0.1, 0.2]\n");
        assert_eq!(
            e,
            "g.toml:9:2: the grid expands to 20000 runs; the limit is 10000"
        );
    }

    #[test]
    fn long_strings_and_big_expansions_are_refused_before_expanding() {
        let long = format!("[base.dataset]\nroot = \"{}\"\n", "x".repeat(5_000));
        let e = err(&format!("{long}[grid]\nmodel = [\"cnn\"]\n"));
        assert!(
            e.ends_with("`base.dataset.root` is a string of 5000 bytes; the limit is 4096"),
            "{e}"
        );
        assert!(e.starts_with("g.toml:9:1"), "{e}");
        // 30 strings of 4 kB in [base] × 10,000 seeds: 1.2 GB once expanded.
        let mut wide = String::from("[base.dataset]\n");
        for i in 0..30 {
            wide.push_str(&format!("k{i} = \"{}\"\n", "y".repeat(4_000)));
        }
        let seeds: Vec<String> = (0..10_000).map(|s| s.to_string()).collect();
        wide.push_str(&format!("[grid]\nseed = [{}]\n", seeds.join(",")));
        let started = std::time::Instant::now();
        let e = err(&wide);
        assert!(e.contains("the expanded runs would hold"), "{e}");
        assert!(e.contains("10000 runs"), "{e}");
        assert!(e.contains("the limit is 67108864"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let huge = format!("name = \"t\"\n#{}\n", "z".repeat(MAX_GRID_FILE_BYTES));
        let e = parse_grid(&huge, "g.toml").unwrap_err().to_string();
        assert!(e.contains("the limit is 1048576"), "{e}");
    }

    #[test]
    fn non_finite_and_out_of_range_numbers_are_refused_by_name() {
        for (extra, field) in [
            ("weight_decay = nan", "weight_decay"),
            ("weight_decay = inf", "weight_decay"),
            ("lr = nan", "lr"),
            ("momentum = nan", "momentum"),
            ("warmup_epochs = 4294967295", "warmup_epochs"),
            ("batch_size = 99999999999", "batch_size"),
            (
                "lr_schedule = { kind = \"cosine\", min_lr = nan }",
                "min_lr",
            ),
        ] {
            let e = err(&format!("{extra}\n[grid]\nmodel = [\"cnn\"]\n"));
            assert!(e.contains(field), "{extra}: {e}");
        }
    }

    #[test]
    fn duplicate_names_are_an_error() {
        let e = err("\n[grid]\nmodel = [\"lenet\"]\n\n[[runs]]\nmodel = \"lenet\"\n");
        assert_eq!(
            e,
            "g.toml:12:1: two runs are both named `lenet` (runs 1 and 2); vary a key, or give \
             the [[runs]] entry a `name`"
        );
    }

    #[test]
    fn missing_model_is_located_at_base() {
        let e = err("");
        assert_eq!(e, "g.toml:3:2: run `?`: missing field `model`");
    }

    #[test]
    fn a_list_value_in_the_grid_gets_a_hint() {
        let e = err("\n[grid]\nmodel = [\"cnn\"]\nconcat_stages = [5, 6]\n");
        assert!(e.starts_with("g.toml:11:18: run `cnn concat=5`: "), "{e}");
        assert!(e.contains("write a list value as [[5, 6]]"), "{e}");
        let g = grid("\n[grid]\nmodel = [\"cnn\"]\nconcat_stages = [[5, 6], [6]]\n").unwrap();
        assert_eq!(g.runs[0].name, "cnn concat=[5,6]");
        assert_eq!(g.runs[0].spec.factors.concat_stages, Some(vec![5, 6]));
    }

    #[test]
    fn the_quick_grid_is_valid() {
        let text = include_str!("../../../grids/quick.toml");
        let g = parse_grid(text, "grids/quick.toml").unwrap();
        assert_eq!(g.name, "quick");
        let names: Vec<&str> = g.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cnn_sigmoid",
                "cnn_baseline",
                "cnn_leakyrelu",
                "cnn_poolreplacefc",
                "cnn_dropout",
                "cnn_coresize3",
                "cnn_concatconv",
                "cnn_alltricks",
                "lenet"
            ]
        );
        for run in &g.runs {
            let dataset = run.spec.dataset.as_ref().unwrap();
            assert_eq!(dataset.fit, crate::spec::Fit::Pad);
            assert_eq!(
                (run.spec.image_size, run.spec.channels, run.spec.classes),
                (32, 1, 10)
            );
            assert_eq!(run.spec.gpus, 0);
            assert!(run.train_flops().is_some());
        }
    }

    #[test]
    fn spec_round_trips_through_json() {
        let g =
            grid("\n[grid]\nmodel = [\"cnn\"]\nactivation = [\"leaky_relu\", \"tanh\"]\n").unwrap();
        let json = serde_json::to_string(&g.runs[0].spec).unwrap();
        let back: RunSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, g.runs[0].spec);
    }

    #[test]
    fn priority_is_a_bounded_integer_defaulting_to_one() {
        let runs = "\n[grid]\nmodel = [\"cnn\"]\n";
        assert_eq!(grid(runs).unwrap().priority, 1);
        let with = |p: &str| parse_grid(&format!("priority = {p}\n{BASE}{runs}"), "g.toml");
        assert_eq!(with("3").unwrap().priority, 3);
        assert_eq!(stored_priority(&format!("priority = 3\n{BASE}")), 3);
        assert_eq!(stored_priority(BASE), 1);
        for bad in ["0", "101", "\"high\""] {
            let e = with(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("g.toml:1:1: `priority` must be an integer from 1 to 100"),
                "{e}"
            );
        }
    }

    #[test]
    fn early_stopping_is_parsed_and_its_errors_are_located() {
        let runs = "\n[grid]\nmodel = [\"lenet\"]\nlr = [0.1, 0.01, 0.001, 1e-6]\nseed = [1, 2]\n";
        let with = |section: &str| grid(&format!("{runs}\n[early_stopping]\n{section}"));
        let g = with("rule = \"median\"\ngrace_epochs = 1\n").unwrap();
        let s = g.early_stopping.unwrap();
        assert_eq!((s.rule.as_str(), s.grace_epochs), ("median", 1));
        assert!(grid(runs).unwrap().early_stopping.is_none());
        // The section starts on line 14; its keys follow.
        assert_eq!(
            with("rule = \"median\"\ngrace = 1\n")
                .unwrap_err()
                .to_string(),
            "g.toml:16:1: early_stopping.grace: unknown key (the section has: rule, metric, \
             mode, grace_epochs, min_runs, eta, max_rungs, group_seeds)"
        );
        assert_eq!(
            with("rule = \"asha\"\neta = 0\n").unwrap_err().to_string(),
            "g.toml:16:1: early_stopping.eta: must be an integer from 2 to 100, not 0"
        );
        // Epochs = 2 in [base]: grace 2 leaves no epoch to judge.
        let e = with("rule = \"median\"\ngrace_epochs = 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("g.toml:16:1: early_stopping.grace_epochs = 2: "),
            "{e}"
        );
        // 4 variants (seeds judged together): min_runs 4 can never be met.
        let e = with("rule = \"median\"\nmin_runs = 4\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("g.toml:16:1: early_stopping.min_runs = 4: the grid has 4 variants"),
            "{e}"
        );
        // Judged one by one there are 8.
        assert!(with("rule = \"median\"\nmin_runs = 4\ngroup_seeds = false\n").is_ok());
        let e = with("rule = 3\n").unwrap_err().to_string();
        assert!(
            e.starts_with("g.toml:15:1: early_stopping.rule: must be a string"),
            "{e}"
        );
        let e = parse_grid(&format!("early_stopping = 1\n{BASE}{runs}"), "g.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`early_stopping` must be a table"), "{e}");
    }
}
