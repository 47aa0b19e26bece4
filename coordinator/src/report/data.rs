//! What a report is rendered from: an experiment and its runs as stored. The store fills
//! these; the renderers (Markdown, HTML, CSV, JSON) only read them.

use std::collections::BTreeMap;

use ablate_common::metrics::EpochRecord;
use serde::{Deserialize, Serialize};

/// An experiment as the report sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentInfo {
    /// Experiment id.
    pub id: String,
    /// Grid name.
    pub name: String,
    /// `queued`, `running`, `finished`, `failed` or `cancelled`.
    pub state: String,
}

/// One run with everything stored about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunData {
    /// Run id.
    pub id: String,
    /// Readable name (`cnn act=relu head=gap seed=2`).
    pub name: String,
    /// Catalogue model.
    pub model: String,
    /// The grid values that vary across the experiment, by grid key (seed included).
    pub factors: BTreeMap<String, serde_json::Value>,
    /// Trainable parameters.
    pub params: u64,
    /// `queued`, `running`, `finished`, `failed` or `cancelled`.
    pub state: String,
    /// Attempts started so far.
    pub attempts: u32,
    /// Wall time of the training (all attempts), seconds.
    pub wall_s: f64,
    /// Epochs, in order, each stored once.
    pub epochs: Vec<EpochRecord>,
    /// Failure reason, when failed.
    pub error: Option<String>,
}

/// The input of every renderer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    /// The experiment.
    pub experiment: ExperimentInfo,
    /// Its runs, in submission order.
    pub runs: Vec<RunData>,
    /// Early stopping, when the grid has an `[early_stopping]` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<super::stopping::StoppingData>,
    /// The claims of its grid (`[[claims]]`), each side resolved to run names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ablate_common::spec::claims::Claim>,
}
