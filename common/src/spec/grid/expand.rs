//! Expansion: the `[grid]` arrays as dimensions, and each run's merged table (`[base]` plus
//! one combination, or plus one `[[runs]]` entry) with the origin of every value, so that an
//! error in a run points at the line that set the value.

use super::span::{keys, Seg, Source};
use super::GridError;

/// One `[grid]` array.
#[derive(Debug, Clone)]
pub(super) struct Dimension {
    pub(super) path: Vec<String>,
    pub(super) values: Vec<toml::Value>,
}

/// The `[grid]` arrays, in file order, with their dotted paths.
pub(super) fn dimensions(
    src: &Source<'_>,
    table: &toml::Table,
    prefix: &mut Vec<String>,
    out: &mut Vec<Dimension>,
) -> Result<(), GridError> {
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
            toml::Value::Table(sub) => dimensions(src, sub, prefix, out)?,
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

/// The runs' tables: `[base]` with each combination of the dimensions (mixed radix, the
/// first dimension slowest), then `[base]` under each `[[runs]]` entry; each remembers where
/// its values came from.
pub(super) fn merge(
    src: &Source<'_>,
    base: &toml::Table,
    dims: &[Dimension],
    grid_count: usize,
    has_grid: bool,
    entries: Vec<toml::Value>,
) -> Result<Vec<Merged>, GridError> {
    let mut merged = Vec::with_capacity(grid_count + entries.len());
    let whole_grid = if has_grid {
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
        for (slot, dim) in indices.iter_mut().zip(dims).rev() {
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

    Ok(merged)
}

/// Where a value of a merged run came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// Element `index` of the `[grid]` array at `path`.
    Grid { path: Vec<String>, index: usize },
    /// `[[runs]]` entry `index`.
    Runs { index: usize },
}

/// How one run was made: its merged table and where the non-base values came from.
#[derive(Debug, Clone)]
pub(super) struct Merged {
    pub(super) table: toml::Table,
    /// Origins by key path (longest prefix wins); paths absent here come from `[base]`.
    pub(super) origins: Vec<(Vec<String>, Origin)>,
    /// The whole run's origin for errors that concern no key.
    pub(super) whole: Vec<Seg>,
    /// An explicit name from a `[[runs]]` entry.
    pub(super) explicit_name: Option<String>,
}

impl Merged {
    /// The file path to blame for an error at `path` (dotted keys) of this run.
    pub(super) fn blame(&self, path: &[String]) -> Vec<Seg> {
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
    pub(super) fn origin(&self, path: &[String]) -> Option<&Origin> {
        self.origins
            .iter()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, o)| o)
    }

    /// Whether the value at `path` came from `[grid]` or a `[[runs]]` entry.
    pub(super) fn varies_at(&self, path: &[String]) -> bool {
        self.origins.iter().any(|(p, _)| path.starts_with(p))
    }

    /// The value at a dotted path.
    pub(super) fn get(&self, path: &[String]) -> Option<&toml::Value> {
        let (last, parents) = path.split_last()?;
        let mut table = &self.table;
        for key in parents {
            table = table.get(key)?.as_table()?;
        }
        table.get(last)
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
