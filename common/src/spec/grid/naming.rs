//! Run names and factors: the keys that vary across a grid's runs, their short labels, and
//! each run's name (`cnn act=relu bn=true seed=2`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::expand::{Dimension, Merged, Origin};
use crate::zoo;

/// Readable names: the model plus `label=value` for the keys that vary.
pub(super) fn names(merged: &[Merged], dims: &[Dimension]) -> Vec<String> {
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

/// A run's values of the varying keys, by dotted key.
pub(super) fn factors(m: &Merged, factor_keys: &[Vec<String>]) -> BTreeMap<String, Json> {
    factor_keys
        .iter()
        .filter_map(|path| {
            let value = m.get(path)?;
            Some((path.join("."), toml_to_json(value)))
        })
        .collect()
}

/// Keys that vary across runs: every `[grid]` dimension with two or more distinct values,
/// then every key a `[[runs]]` entry sets whose value is not the same everywhere; `model`
/// excluded (it starts the name), `seed` last.
pub(super) fn varying_keys(merged: &[Merged], dims: &[Dimension]) -> Vec<Vec<String>> {
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

/// A TOML value as JSON (a non-finite float as its text).
pub(in crate::spec) fn toml_to_json(value: &toml::Value) -> Json {
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
