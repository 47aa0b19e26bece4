//! Claims: the hypotheses a grid tests, written in its file and judged by the report.
//!
//! ```toml
//! [[claims]]
//! name = "all tricks beat the BN baseline"
//! better = { model = "cnn_alltricks" }   # a selector over the grid's runs
//! than = { model = "cnn_baseline" }
//! metric = "best_eval_acc"               # optional, the default
//! margin = 0.02                          # optional: by more than this much (metric units)
//!
//! [[claims]]
//! name = "dropout overfits less"         # a smaller train − eval accuracy gap
//! overfits_less = { model = "cnn_dropout" }
//! than = { model = "cnn_baseline" }
//!
//! [[claims]]
//! name = "the BN baseline learns"        # above chance (1 / classes) by more than margin
//! learns = { model = "cnn_baseline" }
//! margin = 0.05
//!
//! [[claims]]
//! name = "the sigmoid CNN does not learn" # not above chance by more than margin
//! does_not_learn = { model = "cnn_sigmoid" }
//! margin = 0.05
//! ```
//!
//! A selector is an inline table of `model`, `name` or any key that varies across the
//! grid's runs (its `factors`, e.g. `activation`, `lr`, `dataset.fit`); a run is selected
//! when every key matches. Each side must select at least one run, the two sides no common
//! run; both are errors at the selector's `file:line:col` otherwise.
//!
//! Metrics (accuracies and gaps are fractions, so `margin = 0.02` is two points):
//! `best_eval_acc`, `final_eval_acc` (higher is better), `final_eval_loss`,
//! `train_eval_gap` (train − eval accuracy at the last epoch), and `epochs_to_eval_acc`
//! (the first epoch whose eval accuracy reaches `threshold`; lower is better).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::grid::{keys, toml_to_json, GridError, PlannedRun, Seg, Source};

/// The most `[[claims]]` a grid may have.
pub const MAX_CLAIMS: usize = 256;

/// The most keys one selector may have.
pub const MAX_SELECTOR_KEYS: usize = 32;

/// The most runs all claims' sides may select together (each side keeps the names of its
/// runs, so this bounds what a grid's claims hold).
pub const MAX_CLAIM_SELECTIONS: usize = 100_000;

/// The significance level when a claim gives none.
pub const DEFAULT_ALPHA: f64 = 0.05;

/// The keys a `[[claims]]` entry may have.
const CLAIM_KEYS: &[&str] = &[
    "name",
    "better",
    "overfits_less",
    "learns",
    "does_not_learn",
    "than",
    "metric",
    "threshold",
    "margin",
    "chance",
    "alpha",
];

/// What a claim says about its sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimForm {
    /// `better` beats `than` on the metric by more than the margin.
    Better,
    /// `overfits_less` has a smaller train − eval gap than `than`, by more than the margin.
    OverfitsLess,
    /// `learns` is above chance on an accuracy metric by more than the margin.
    Learns,
    /// `does_not_learn` is not above chance by more than the margin (the seed's "does not
    /// converge").
    DoesNotLearn,
}

impl ClaimForm {
    /// The key that names the claim's first side.
    pub fn key(self) -> &'static str {
        match self {
            ClaimForm::Better => "better",
            ClaimForm::OverfitsLess => "overfits_less",
            ClaimForm::Learns => "learns",
            ClaimForm::DoesNotLearn => "does_not_learn",
        }
    }

    /// Whether the claim compares one side with chance (no `than`).
    pub fn against_chance(self) -> bool {
        matches!(self, ClaimForm::Learns | ClaimForm::DoesNotLearn)
    }
}

/// The number a claim compares, per run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    /// Highest eval accuracy over the epochs.
    BestEvalAcc,
    /// Eval accuracy of the last epoch.
    FinalEvalAcc,
    /// Eval loss of the last epoch.
    FinalEvalLoss,
    /// Train − eval accuracy at the last epoch.
    TrainEvalGap,
    /// The first (1-based) epoch whose eval accuracy reaches `threshold`.
    EpochsToEvalAcc {
        /// The eval accuracy to reach (a fraction).
        threshold: f64,
    },
}

impl Metric {
    /// The metric names a claim's `metric` accepts.
    pub const NAMES: [&'static str; 5] = [
        "best_eval_acc",
        "final_eval_acc",
        "final_eval_loss",
        "train_eval_gap",
        "epochs_to_eval_acc",
    ];

    /// Whether a larger value is the better one.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::BestEvalAcc | Metric::FinalEvalAcc)
    }

    /// Whether the metric is an accuracy (what "learns" can be judged on).
    pub fn is_accuracy(self) -> bool {
        matches!(self, Metric::BestEvalAcc | Metric::FinalEvalAcc)
    }

    /// Whether values are fractions that read better as percentage points.
    pub fn is_fraction(self) -> bool {
        !matches!(self, Metric::FinalEvalLoss | Metric::EpochsToEvalAcc { .. })
    }

    /// The metric as written in a grid (`epochs_to_eval_acc(0.8)` with its threshold).
    pub fn label(self) -> String {
        match self {
            Metric::BestEvalAcc => "best_eval_acc".into(),
            Metric::FinalEvalAcc => "final_eval_acc".into(),
            Metric::FinalEvalLoss => "final_eval_loss".into(),
            Metric::TrainEvalGap => "train_eval_gap".into(),
            Metric::EpochsToEvalAcc { threshold } => format!("epochs_to_eval_acc({threshold})"),
        }
    }
}

/// A selector over a grid's runs: `model`, `name` or factor keys (dotted), each with the
/// value a selected run has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    /// Key → value; a run matches when all match.
    pub keys: BTreeMap<String, Json>,
}

impl Selector {
    /// Whether a run with this name, model and factors is selected. Numbers compare by
    /// value (`lr = 0` selects a run whose `lr` is `0.0`).
    pub fn matches(&self, name: &str, model: &str, factors: &BTreeMap<String, Json>) -> bool {
        self.keys.iter().all(|(key, want)| match key.as_str() {
            "model" => want.as_str() == Some(model),
            "name" => want.as_str() == Some(name),
            _ => factors.get(key).is_some_and(|have| same_value(have, want)),
        })
    }
}

impl std::fmt::Display for Selector {
    /// `{ model = "cnn", lr = 0 }`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .keys
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        write!(f, "{{ {} }}", parts.join(", "))
    }
}

/// JSON equality with numbers compared as numbers.
fn same_value(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => a == b,
    }
}

/// One side of a claim: its selector and the runs it selected when the grid was parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimSide {
    /// As written.
    pub selector: Selector,
    /// Names of the selected runs, in grid order.
    pub runs: Vec<String>,
}

/// One `[[claims]]` entry, validated against the grid's runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The claim in words.
    pub name: String,
    /// What it says.
    pub form: ClaimForm,
    /// The number compared.
    pub metric: Metric,
    /// By more than this much (metric units, ≥ 0).
    pub margin: f64,
    /// Significance level of the paired test.
    pub alpha: f64,
    /// `better`, `overfits_less`, `learns` or `does_not_learn`.
    pub side: ClaimSide,
    /// `than`; `None` for the claims against chance.
    pub than: Option<ClaimSide>,
    /// The chance accuracy of a `learns` / `does_not_learn` claim (given, or 1 / classes
    /// of its runs).
    pub chance: Option<f64>,
}

/// Parses and checks the `claims` value of a grid whose runs are `runs`.
pub(super) fn parse_claims(
    src: &Source<'_>,
    value: Option<toml::Value>,
    runs: &[PlannedRun],
) -> Result<Vec<Claim>, GridError> {
    let entries = match value {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(entries)) => entries,
        Some(other) => {
            return Err(src.error(
                &keys(["claims"]),
                format!(
                    "`claims` must be an array of tables ([[claims]]), not {}",
                    other.type_str()
                ),
            ))
        }
    };
    if entries.len() > MAX_CLAIMS {
        return Err(src.error(
            &keys(["claims"]),
            format!(
                "the grid has {} claims; the limit is {MAX_CLAIMS}",
                entries.len()
            ),
        ));
    }
    let factor_keys: std::collections::BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.factors.keys().map(String::as_str))
        .collect();
    let parser = ClaimParser {
        src,
        runs,
        factor_keys: factor_keys.into_iter().collect(),
    };
    let mut claims: Vec<Claim> = Vec::with_capacity(entries.len());
    let mut selected = 0usize;
    for (index, entry) in entries.into_iter().enumerate() {
        let claim = parser.claim(index, entry)?;
        selected += claim.side.runs.len() + claim.than.as_ref().map_or(0, |t| t.runs.len());
        if selected > MAX_CLAIM_SELECTIONS {
            return Err(src.error(
                &parser.at(index, None),
                format!(
                    "the claims up to `{}` select {selected} runs in all; the limit is \
                     {MAX_CLAIM_SELECTIONS} (select by model or factor rather than repeating \
                     large sides)",
                    claim.name
                ),
            ));
        }
        if let Some(first) = claims.iter().position(|c| c.name == claim.name) {
            return Err(src.error(
                &parser.at(index, Some("name")),
                format!(
                    "two claims are both named `{}` (claims {} and {})",
                    claim.name,
                    first + 1,
                    index + 1
                ),
            ));
        }
        claims.push(claim);
    }
    Ok(claims)
}

struct ClaimParser<'a> {
    src: &'a Source<'a>,
    runs: &'a [PlannedRun],
    factor_keys: Vec<&'a str>,
}

impl ClaimParser<'_> {
    /// The file path of claim `index`, or of one of its keys.
    fn at(&self, index: usize, key: Option<&str>) -> Vec<Seg> {
        let mut path = vec![Seg::Key("claims".into()), Seg::Index(index)];
        if let Some(key) = key {
            path.push(Seg::Key(key.into()));
        }
        path
    }

    fn claim(&self, index: usize, entry: toml::Value) -> Result<Claim, GridError> {
        let whole = self.at(index, None);
        let toml::Value::Table(mut table) = entry else {
            return Err(self
                .src
                .error(&whole, "each [[claims]] entry must be a table"));
        };
        let mut present: Vec<&String> = table.keys().collect();
        present.sort_by_key(|k| self.src.locate(&self.at(index, Some(k.as_str()))));
        for key in present {
            if !CLAIM_KEYS.contains(&key.as_str()) {
                return Err(self.src.error(
                    &self.at(index, Some(key.as_str())),
                    format!(
                        "claim {}: unknown key `{key}` (a claim has: {})",
                        index + 1,
                        CLAIM_KEYS.join(", ")
                    ),
                ));
            }
        }
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(_) => {
                return Err(self.src.error(
                    &self.at(index, Some("name")),
                    format!("claim {}: `name` must be a non-empty string", index + 1),
                ))
            }
            None => {
                return Err(self.src.error(
                    &whole,
                    format!(
                        "claim {}: missing `name = \"...\"` (the claim in words)",
                        index + 1
                    ),
                ))
            }
        };
        let who = format!("claim `{name}`");
        let forms: Vec<ClaimForm> = [
            ClaimForm::Better,
            ClaimForm::OverfitsLess,
            ClaimForm::Learns,
            ClaimForm::DoesNotLearn,
        ]
        .into_iter()
        .filter(|f| table.contains_key(f.key()))
        .collect();
        let form = match forms.as_slice() {
            [form] => *form,
            [] => {
                return Err(self.src.error(
                    &whole,
                    format!(
                        "{who}: says nothing: give one of `better = {{...}}` (with `than`), \
                         `overfits_less = {{...}}` (with `than`), `learns = {{...}}` or \
                         `does_not_learn = {{...}}`"
                    ),
                ))
            }
            [_, second, ..] => {
                return Err(self.src.error(
                    &self.at(index, Some(second.key())),
                    format!(
                        "{who}: has both `{}` and `{}`; a claim has one form",
                        forms[0].key(),
                        second.key()
                    ),
                ))
            }
        };
        let metric = self.metric(index, &who, form, &mut table)?;
        let margin = match self.number(index, &who, &mut table, "margin")? {
            None => 0.0,
            Some(m) if m >= 0.0 => m,
            Some(m) => {
                return Err(self.src.error(
                    &self.at(index, Some("margin")),
                    format!("{who}: `margin` must be 0 or more, not {m}"),
                ))
            }
        };
        let alpha = match self.number(index, &who, &mut table, "alpha")? {
            None => DEFAULT_ALPHA,
            Some(a) if a > 0.0 && a <= 0.5 => a,
            Some(a) => {
                return Err(self.src.error(
                    &self.at(index, Some("alpha")),
                    format!("{who}: `alpha` must be in (0, 0.5], not {a}"),
                ))
            }
        };
        let side_value = table.remove(form.key()).expect("the form's key is present");
        let side = self.side(index, &who, form.key(), side_value)?;
        let than = match (form.against_chance(), table.remove("than")) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(self.src.error(
                    &self.at(index, Some("than")),
                    format!(
                        "{who}: a `{}` claim compares with chance and has no `than`",
                        form.key()
                    ),
                ))
            }
            (_, None) => {
                return Err(self.src.error(
                    &self.at(index, Some(form.key())),
                    format!(
                        "{who}: `{}` needs `than = {{...}}`, the runs it is compared with",
                        form.key()
                    ),
                ))
            }
            (_, Some(value)) => Some(self.side(index, &who, "than", value)?),
        };
        if let Some(than) = &than {
            if let Some(shared) = side.runs.iter().find(|r| than.runs.contains(r)) {
                return Err(self.src.error(
                    &self.at(index, Some("than")),
                    format!(
                        "{who}: run `{shared}` is selected by both `{}` and `than`; the two \
                         sides must not share a run",
                        form.key()
                    ),
                ));
            }
        }
        let chance = self.chance(index, &who, form, &side, &mut table)?;
        Ok(Claim {
            name,
            form,
            metric,
            margin,
            alpha,
            side,
            than,
            chance,
        })
    }

    /// A finite number at `key`, if present.
    fn number(
        &self,
        index: usize,
        who: &str,
        table: &mut toml::Table,
        key: &str,
    ) -> Result<Option<f64>, GridError> {
        match table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Float(f)) if f.is_finite() => Ok(Some(f)),
            Some(toml::Value::Integer(i)) => Ok(Some(i as f64)),
            Some(other) => Err(self.src.error(
                &self.at(index, Some(key)),
                format!("{who}: `{key}` must be a finite number, not {other}"),
            )),
        }
    }

    fn metric(
        &self,
        index: usize,
        who: &str,
        form: ClaimForm,
        table: &mut toml::Table,
    ) -> Result<Metric, GridError> {
        let at = self.at(index, Some("metric"));
        let name = match table.remove("metric") {
            None => None,
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(self.src.error(
                    &at,
                    format!("{who}: `metric` must be a string, not {}", other.type_str()),
                ))
            }
        };
        let threshold = self.number(index, who, table, "threshold")?;
        let metric = match name.as_deref() {
            None if form == ClaimForm::OverfitsLess => Metric::TrainEvalGap,
            None | Some("best_eval_acc") => Metric::BestEvalAcc,
            Some("final_eval_acc") => Metric::FinalEvalAcc,
            Some("final_eval_loss") => Metric::FinalEvalLoss,
            Some("train_eval_gap") => Metric::TrainEvalGap,
            Some("epochs_to_eval_acc") => match threshold {
                Some(t) if t > 0.0 && t <= 1.0 => Metric::EpochsToEvalAcc { threshold: t },
                Some(t) => {
                    return Err(self.src.error(
                        &self.at(index, Some("threshold")),
                        format!("{who}: `threshold` is an eval accuracy in (0, 1], not {t}"),
                    ))
                }
                None => {
                    return Err(self.src.error(
                        &at,
                        format!(
                            "{who}: `epochs_to_eval_acc` needs `threshold = ...`, the eval \
                             accuracy to reach (a fraction, e.g. 0.8)"
                        ),
                    ))
                }
            },
            Some(other) => {
                return Err(self.src.error(
                    &at,
                    format!(
                        "{who}: unknown metric `{other}` (expected one of {})",
                        Metric::NAMES.join(", ")
                    ),
                ))
            }
        };
        if threshold.is_some() && !matches!(metric, Metric::EpochsToEvalAcc { .. }) {
            return Err(self.src.error(
                &self.at(index, Some("threshold")),
                format!("{who}: `threshold` only goes with metric = \"epochs_to_eval_acc\""),
            ));
        }
        if form == ClaimForm::OverfitsLess && metric != Metric::TrainEvalGap {
            return Err(self.src.error(
                &at,
                format!(
                    "{who}: `overfits_less` compares the train − eval gap; leave `metric` out \
                     or use `better` for {}",
                    metric.label()
                ),
            ));
        }
        if form.against_chance() && !metric.is_accuracy() {
            return Err(self.src.error(
                &at,
                format!(
                    "{who}: `{}` compares an accuracy with chance: use best_eval_acc or \
                     final_eval_acc, not {}",
                    form.key(),
                    metric.label()
                ),
            ));
        }
        Ok(metric)
    }

    /// A side's selector, checked against the runs.
    fn side(
        &self,
        index: usize,
        who: &str,
        key: &str,
        value: toml::Value,
    ) -> Result<ClaimSide, GridError> {
        let at = self.at(index, Some(key));
        let table = match value {
            toml::Value::Table(table) => table,
            other => {
                return Err(self.src.error(
                    &at,
                    format!(
                        "{who}: `{key}` must be a selector table such as \
                         {{ model = \"cnn_baseline\" }}, not {}",
                        other.type_str()
                    ),
                ))
            }
        };
        let mut flat = Vec::new();
        flatten(&table, &mut Vec::new(), &mut flat);
        if flat.is_empty() {
            return Err(self.src.error(
                &at,
                format!("{who}: `{key}` is empty; it would select every run"),
            ));
        }
        if flat.len() > MAX_SELECTOR_KEYS {
            return Err(self.src.error(
                &at,
                format!(
                    "{who}: `{key}` has {} keys; the limit is {MAX_SELECTOR_KEYS}",
                    flat.len()
                ),
            ));
        }
        let mut selector = Selector::default();
        for (path, value) in flat {
            let dotted = path.join(".");
            let mut key_at = at.clone();
            key_at.extend(path.iter().map(|p| Seg::Key(p.clone())));
            let known = matches!(dotted.as_str(), "model" | "name")
                || self.factor_keys.contains(&dotted.as_str());
            if !known {
                let varying = if self.factor_keys.is_empty() {
                    "none".to_string()
                } else {
                    self.factor_keys.join(", ")
                };
                return Err(self.src.error(
                    &key_at,
                    format!(
                        "{who}: `{key}` selects by `{dotted}`, which does not vary across the \
                         grid's runs (a selector uses model, name or a key that varies: {varying})"
                    ),
                ));
            }
            if matches!(dotted.as_str(), "model" | "name") && !value.is_str() {
                return Err(self
                    .src
                    .error(&key_at, format!("{who}: `{key}.{dotted}` must be a string")));
            }
            selector.keys.insert(dotted, toml_to_json(&value));
        }
        let runs: Vec<String> = self
            .runs
            .iter()
            .filter(|r| selector.matches(&r.name, &r.spec.model, &r.factors))
            .map(|r| r.name.clone())
            .collect();
        if runs.is_empty() {
            let models: std::collections::BTreeSet<&str> =
                self.runs.iter().map(|r| r.spec.model.as_str()).collect();
            return Err(self.src.error(
                &at,
                format!(
                    "{who}: `{key}` = {selector} selects no run (the grid's models: {})",
                    models.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Ok(ClaimSide { selector, runs })
    }

    /// The chance accuracy of a `learns` claim: given, or 1 / classes of its runs.
    fn chance(
        &self,
        index: usize,
        who: &str,
        form: ClaimForm,
        side: &ClaimSide,
        table: &mut toml::Table,
    ) -> Result<Option<f64>, GridError> {
        let given = self.number(index, who, table, "chance")?;
        if !form.against_chance() {
            if given.is_some() {
                return Err(self.src.error(
                    &self.at(index, Some("chance")),
                    format!("{who}: `chance` only goes with a `learns` or `does_not_learn` claim"),
                ));
            }
            return Ok(None);
        }
        if let Some(c) = given {
            if !(0.0..1.0).contains(&c) {
                return Err(self.src.error(
                    &self.at(index, Some("chance")),
                    format!("{who}: `chance` is an accuracy in [0, 1), not {c}"),
                ));
            }
            return Ok(Some(c));
        }
        let classes: std::collections::BTreeSet<usize> = self
            .runs
            .iter()
            .filter(|r| side.runs.contains(&r.name))
            .map(|r| r.spec.classes)
            .collect();
        match classes.iter().collect::<Vec<_>>().as_slice() {
            [c] if **c > 0 => Ok(Some(1.0 / **c as f64)),
            _ => Err(self.src.error(
                &self.at(index, Some(form.key())),
                format!(
                    "{who}: the selected runs have different class counts ({classes:?}); give \
                     `chance = ...` explicitly"
                ),
            )),
        }
    }
}

/// The leaves of a selector table as dotted paths (`{ dataset.fit = "pad" }` is nested in
/// TOML).
fn flatten(
    table: &toml::Table,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, toml::Value)>,
) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            toml::Value::Table(sub) => flatten(sub, prefix, out),
            other => out.push((prefix.clone(), other.clone())),
        }
        prefix.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::super::grid::parse_grid;
    use super::*;

    const GRID: &str = r#"name = "t"

[base]
image_size = 32
channels = 1
classes = 10
epochs = 2

[grid]
model = ["cnn_baseline", "cnn_sigmoid"]
lr = [1.0, 0.01]
seed = [1, 2]
"#;

    fn grid(claims: &str) -> Result<super::super::grid::Grid, GridError> {
        parse_grid(&format!("{GRID}{claims}"), "g.toml")
    }

    fn err(claims: &str) -> String {
        grid(claims).unwrap_err().to_string()
    }

    #[test]
    fn a_better_claim_resolves_both_sides() {
        let g = grid(
            "\n[[claims]]\nname = \"BN helps\"\nbetter = { model = \"cnn_baseline\", lr = 0.01 }\n\
             than = { model = \"cnn_sigmoid\", lr = 0.01 }\nmargin = 0.02\n",
        )
        .unwrap();
        assert_eq!(g.claims.len(), 1);
        let c = &g.claims[0];
        assert_eq!(c.form, ClaimForm::Better);
        assert_eq!(c.metric, Metric::BestEvalAcc);
        assert_eq!(c.margin, 0.02);
        assert_eq!(c.alpha, DEFAULT_ALPHA);
        assert_eq!(
            c.side.runs,
            ["cnn_baseline lr=0.01 seed=1", "cnn_baseline lr=0.01 seed=2"]
        );
        assert_eq!(
            c.than.as_ref().unwrap().runs,
            ["cnn_sigmoid lr=0.01 seed=1", "cnn_sigmoid lr=0.01 seed=2"]
        );
        assert_eq!(c.chance, None);
    }

    #[test]
    fn integer_selectors_match_float_factors_and_learns_defaults_chance() {
        let g = grid("\n[[claims]]\nname = \"lr 0 learns\"\nlearns = { lr = 1 }\n").unwrap();
        let c = &g.claims[0];
        assert_eq!(c.form, ClaimForm::Learns);
        assert_eq!(c.side.runs.len(), 4);
        assert_eq!(c.chance, Some(0.1));
        assert!(c.than.is_none());
    }

    #[test]
    fn overfits_less_uses_the_gap_and_epochs_to_needs_a_threshold() {
        let g = grid(
            "\n[[claims]]\nname = \"o\"\noverfits_less = { model = \"cnn_baseline\" }\n\
             than = { model = \"cnn_sigmoid\" }\n\n[[claims]]\nname = \"fast\"\n\
             better = { lr = 0.01 }\nthan = { lr = 1.0 }\nmetric = \"epochs_to_eval_acc\"\n\
             threshold = 0.5\n",
        )
        .unwrap();
        assert_eq!(g.claims[0].metric, Metric::TrainEvalGap);
        assert_eq!(
            g.claims[1].metric,
            Metric::EpochsToEvalAcc { threshold: 0.5 }
        );
        assert!(!g.claims[1].metric.higher_is_better());
    }

    #[test]
    fn a_selector_that_matches_nothing_is_located() {
        let e = err(
            "\n[[claims]]\nname = \"x\"\nbetter = { model = \"lenet\" }\nthan = { lr = 1.0 }\n",
        );
        assert_eq!(
            e,
            "g.toml:16:1: claim `x`: `better` = { model = \"lenet\" } selects no run (the grid's \
             models: cnn_baseline, cnn_sigmoid)"
        );
        let e = err("\n[[claims]]\nname = \"x\"\nbetter = { lr = 0.5 }\nthan = { lr = 1.0 }\n");
        assert!(
            e.starts_with("g.toml:16:1: claim `x`: `better` = { lr = 0.5 } selects no run"),
            "{e}"
        );
    }

    #[test]
    fn a_key_that_does_not_vary_is_located() {
        let e = err("\n[[claims]]\nname = \"x\"\nlearns = { model = \"cnn_baseline\", activation = \"relu\" }\n");
        assert!(
            e.starts_with(
                "g.toml:16:36: claim `x`: `learns` selects by `activation`, which does not vary"
            ),
            "{e}"
        );
        assert!(
            e.ends_with("a key that varies: batch_norm, lr, seed)"),
            "{e}"
        );
    }

    #[test]
    fn malformed_claims_are_located() {
        for (claims, want) in [
            ("name = \"x\"\nbetter = { lr = 1.0 }\n", "g.toml:16:1: claim `x`: `better` needs `than"),
            ("name = \"x\"\nlearns = { lr = 1.0 }\nthan = { lr = 0.01 }\n", "g.toml:17:1: claim `x`: a `learns` claim"),
            ("name = \"x\"\n", "g.toml:14:1: claim `x`: says nothing"),
            ("better = { lr = 1.0 }\n", "g.toml:14:1: claim 1: missing `name"),
            ("name = \"x\"\nbetter = { lr = 1.0 }\nthan = { lr = 0.01 }\nmetrc = 1\n", "g.toml:18:1: claim 1: unknown key `metrc`"),
            ("name = \"x\"\nbetter = { lr = 1.0 }\nthan = { lr = 0.01 }\nmetric = \"acc\"\n", "g.toml:18:1: claim `x`: unknown metric `acc`"),
            ("name = \"x\"\nbetter = { lr = 1.0 }\nthan = { lr = 0.01 }\nmargin = -1\n", "g.toml:18:1: claim `x`: `margin` must be 0 or more"),
            ("name = \"x\"\nbetter = { lr = 1.0 }\nthan = { lr = 0.01 }\nalpha = 0.9\n", "g.toml:18:1: claim `x`: `alpha` must be in (0, 0.5]"),
            ("name = \"x\"\nbetter = { lr = 1.0 }\nthan = { seed = 1 }\n", "g.toml:17:1: claim `x`: run `cnn_baseline lr=1 seed=1` is selected by both"),
            ("name = \"x\"\nbetter = {}\nthan = { lr = 0.01 }\n", "g.toml:16:1: claim `x`: `better` is empty"),
            ("name = \"x\"\nlearns = { lr = 1.0 }\nmetric = \"final_eval_loss\"\n", "g.toml:17:1: claim `x`: `learns` compares an accuracy"),
            ("name = \"x\"\nbetter = { lr = 1.0 }\nthan = { lr = 0.01 }\nmetric = \"epochs_to_eval_acc\"\n", "g.toml:18:1: claim `x`: `epochs_to_eval_acc` needs `threshold"),
            ("name = \"x\"\nbetter = { lr = 1.0 }\nlearns = { lr = 0.01 }\n", "g.toml:17:1: claim `x`: has both `better` and `learns`"),
        ] {
            let e = err(&format!("\n[[claims]]\n{claims}"));
            assert!(e.starts_with(want), "{claims}: {e}");
        }
        let dup = "\n[[claims]]\nname = \"x\"\nlearns = { lr = 1.0 }\n\n[[claims]]\nname = \"x\"\nlearns = { lr = 0.01 }\n";
        assert_eq!(
            err(dup),
            "g.toml:19:1: two claims are both named `x` (claims 1 and 2)"
        );
        let e = parse_grid(&format!("claims = 3\n{GRID}"), "g.toml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g.toml:1:1: `claims` must be an array"),
            "{e}"
        );
    }

    #[test]
    fn claims_that_select_too_many_runs_in_all_are_refused() {
        let seeds: Vec<String> = (0..5_000).map(|s| s.to_string()).collect();
        let mut text = format!(
            "name = \"t\"\n[base]\nmodel = \"lenet\"\nimage_size = 32\nchannels = 1\n\
             [grid]\nlr = [0.1, 0.2]\nseed = [{}]\n",
            seeds.join(",")
        );
        for i in 0..11 {
            text.push_str(&format!(
                "[[claims]]\nname = \"c{i}\"\nbetter = {{ lr = 0.1 }}\nthan = {{ lr = 0.2 }}\n"
            ));
        }
        let e = parse_grid(&text, "g.toml").unwrap_err().to_string();
        assert!(
            e.contains("the claims up to `c10` select 110000 runs in all; the limit is 100000"),
            "{e}"
        );
    }

    #[test]
    fn the_seed_grids_state_their_claims() {
        let study = include_str!("../../../grids/seed-study.toml");
        let g = parse_grid(study, "grids/seed-study.toml").unwrap();
        assert_eq!(g.claims.len(), 24);
        assert!(g.claims.iter().all(|c| c.side.runs.len() == 1));
        let decay = g
            .claims
            .iter()
            .find(|c| c.name.starts_with("lr decay helps"))
            .unwrap();
        assert_eq!(decay.side.runs, ["cnn_alltricks lr_decay"]);
        assert_eq!(decay.than.as_ref().unwrap().runs, ["cnn_alltricks"]);
        let cpu = include_str!("../../../grids/seed-claims.toml");
        let g = parse_grid(cpu, "grids/seed-claims.toml").unwrap();
        assert_eq!(g.runs.len(), 24);
        assert_eq!(g.claims.len(), 16);
        for claim in &g.claims {
            assert_eq!(claim.side.runs.len(), 3, "{}: three seeds", claim.name);
        }
    }
}
