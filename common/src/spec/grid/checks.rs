//! The checks of a grid: its top-level keys and string lengths, the typed sections, the
//! limits on runs and expanded bytes (before anything is expanded), unique run names, and
//! each run's spec and model against the catalogue. Every error is located in the file.

use std::collections::HashMap;

use super::expand::{Dimension, Merged, Origin};
use super::span::{key_path_at, keys, Seg, Source};
use super::{
    GridError, MAX_DESCRIPTION_BYTES, MAX_EXPANDED_BYTES, MAX_PRIORITY, MAX_RUNS, MAX_STRING_BYTES,
};
use crate::spec::early_stopping::{self, EarlyStopping};
use crate::spec::model::ModelFactors;
use crate::spec::run::{RunSpec, SpecError};
use crate::{arch, zoo};

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

/// A grid file's sections, typed (not yet expanded).
pub(super) struct Sections {
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) priority: u32,
    pub(super) base: toml::Table,
    pub(super) grid: Option<toml::Table>,
    pub(super) early_stopping: Option<EarlyStopping>,
    /// The `[[runs]]` entries.
    pub(super) entries: Vec<toml::Value>,
    /// The `[[claims]]`, parsed once the runs are known.
    pub(super) claims: Option<toml::Value>,
}

/// Refuses an unknown top-level key, and a string (or key) over its length limit.
pub(super) fn top_level(src: &Source<'_>, table: &toml::Table) -> Result<(), GridError> {
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
    for (key, value) in table {
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
    Ok(())
}

/// Takes the sections out of the file's table, each checked for its type.
pub(super) fn sections(src: &Source<'_>, mut table: toml::Table) -> Result<Sections, GridError> {
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
    Ok(Sections {
        name,
        description,
        priority,
        base,
        grid,
        early_stopping,
        entries,
        claims,
    })
}

/// Refuses a grid that would expand to more than [`MAX_RUNS`] runs or hold more than
/// [`MAX_EXPANDED_BYTES`] of values, computed before anything is expanded. Returns the
/// number of runs of the `[grid]` product.
pub(super) fn size(
    src: &Source<'_>,
    sections: &Sections,
    dims: &[Dimension],
) -> Result<usize, GridError> {
    let grid_count = if !dims.is_empty() {
        dims.iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(d.values.len()))
    } else if sections.entries.is_empty() {
        Some(1)
    } else {
        Some(0)
    };
    let total = grid_count.and_then(|n| n.checked_add(sections.entries.len()));
    match total {
        Some(n) if n <= MAX_RUNS => {}
        _ => {
            let shown = total
                .map(|n| n.to_string())
                .unwrap_or_else(|| "too many".into());
            let at = if sections.grid.is_some() {
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
    let base_bytes = table_bytes(&sections.base);
    let dims_bytes: usize = dims
        .iter()
        .map(|d| d.values.iter().map(value_bytes).max().unwrap_or(0))
        .sum();
    let entries_bytes: usize = sections.entries.iter().map(value_bytes).sum();
    let expanded = grid_count
        .checked_mul(base_bytes.saturating_add(dims_bytes))
        .and_then(|g| g.checked_add(sections.entries.len().checked_mul(base_bytes)?))
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
    Ok(grid_count)
}

/// Refuses two runs with the same name.
pub(super) fn unique_names(
    src: &Source<'_>,
    merged: &[Merged],
    names: &[String],
) -> Result<(), GridError> {
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
    Ok(())
}

/// Deserialises and checks one merged run, blaming the file position its error came from.
pub(super) fn run_spec(src: &Source<'_>, m: &Merged, name: &str) -> Result<RunSpec, GridError> {
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
pub(super) fn check_model(
    src: &Source<'_>,
    m: &Merged,
    name: &str,
    spec: &RunSpec,
) -> Result<(u64, u64), GridError> {
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
