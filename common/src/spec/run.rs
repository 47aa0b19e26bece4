//! One run: model, data, recipe and placement. Defaults are the seed's recipe
//! (batch 32, lr 0.001, Momentum 0.9, 60 epochs, 224×224 RGB, 16 classes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::DatasetSpec;
use super::device::{DeviceError, DeviceList};
use super::model::ModelFactors;

/// Errors of a spec that parsed but does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A key no spec knows; `path` is dotted (e.g. `base.dataset.formt`).
    #[error("unknown key `{path}`")]
    UnknownKey {
        /// Dotted key path.
        path: String,
    },
    /// A field whose value is out of range or inconsistent with another.
    #[error("field `{field}`: {message}")]
    Invalid {
        /// Dotted field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// TOML syntax or type error, with its position.
    #[error("{0}")]
    Toml(String),
}

/// A standalone run spec file that does not parse or check, with where in the file:
/// `file:line:column` where the key is found, else the file's name.
#[derive(Debug, thiserror::Error)]
pub enum SpecFileError {
    /// TOML syntax, or a value of the wrong type.
    #[error("{location}: {}", .source.message())]
    Toml {
        /// `file:line:column`, or the file's name.
        location: String,
        /// The TOML parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// A spec that parsed but does not make sense.
    #[error("{location}: {source}")]
    Check {
        /// `file:line:column`, or the file's name.
        location: String,
        /// What is wrong.
        #[source]
        source: SpecError,
    },
}

/// The optimizer and its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Paddle-style momentum: v = μ·v + g; p -= lr·v.
    Momentum,
    /// Adam (β1 0.9, β2 0.999, ε 1e-8).
    Adam,
}

/// Learning-rate schedule, by epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The base lr throughout.
    Constant,
    /// `values[i]` from epoch `boundaries[i-1]` on (0-based epochs; `values` has one more
    /// entry than `boundaries`), the seed's `lr_decay`.
    Piecewise {
        /// Epoch indices (0-based) where the lr changes.
        boundaries: Vec<u32>,
        /// Learning rates, one more than boundaries.
        values: Vec<f64>,
    },
    /// Cosine from the base lr to `min_lr` over the run.
    Cosine {
        /// Final learning rate.
        #[serde(default)]
        min_lr: f64,
    },
}

/// Everything one training run needs. Any field can appear in a grid's `[base]`, and the
/// scalar ones in its `[grid]` arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Catalogue model name (`ablate models` lists them).
    pub model: String,
    /// Factor overrides on the model's preset.
    #[serde(flatten)]
    pub factors: ModelFactors,
    /// Input height and width.
    #[serde(default = "defaults::image_size")]
    pub image_size: usize,
    /// Input channels (1 or 3); images are converted to it.
    #[serde(default = "defaults::channels")]
    pub channels: usize,
    /// Number of classes; checked against the dataset.
    #[serde(default = "defaults::classes")]
    pub classes: usize,
    /// Training data; required to train, optional for `validate` and `models`.
    #[serde(default)]
    pub dataset: Option<DatasetSpec>,
    /// Epochs to train.
    #[serde(default = "defaults::epochs")]
    pub epochs: u32,
    /// Global batch size (split across data-parallel replicas).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Optimizer.
    #[serde(default = "defaults::optimizer")]
    pub optimizer: OptimizerKind,
    /// Momentum μ of the momentum optimizer.
    #[serde(default = "defaults::momentum")]
    pub momentum: f64,
    /// Base learning rate.
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Learning-rate schedule.
    #[serde(default = "defaults::lr_schedule")]
    pub lr_schedule: LrSchedule,
    /// Linear warm-up from 0 to the scheduled lr over this many epochs (0: none).
    #[serde(default)]
    pub warmup_epochs: u32,
    /// L2 weight decay coefficient (added to the gradient: g + wd·p).
    #[serde(default)]
    pub weight_decay: f64,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// GPUs per run when scheduled on a cluster (0: a CPU run).
    #[serde(default)]
    pub gpus: u32,
    /// Explicit devices for a standalone run (`cpu`, `cpu:2`, `cuda:0,1`); a scheduled run
    /// gets the devices the coordinator placed it on.
    #[serde(default)]
    pub devices: Option<String>,
    /// Intra-op CPU threads per replica (default: all cores / replicas).
    #[serde(default)]
    pub threads: Option<usize>,
    /// bf16 autocast on CUDA.
    #[serde(default)]
    pub mixed_precision: bool,
    /// Where checkpoints and `metrics.jsonl` go for a standalone run.
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Attempts before a run is `failed`.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Report one training step loss out of this many.
    #[serde(default = "defaults::log_every")]
    pub log_every_steps: u64,
    /// A run whose step counter does not move for this long (`90s`, `10m`) is stalled: its
    /// attempt is abandoned and the run re-queued. Default [`DEFAULT_STALL_TIMEOUT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_timeout: Option<String>,
    /// Keys no field knows; always empty in a valid spec (see [`RunSpec::check`]).
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// How long a run's step counter may stand still before the run counts as stalled.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("`{0}`: expected a duration like 15s, 500ms or 2m")]
    NotADuration(String),
    /// A unit other than ms, s, m, h.
    #[error("`{text}`: unknown unit `{unit}` (ms, s, m, h)")]
    Unit {
        /// The duration as given.
        text: String,
        /// Its unit.
        unit: String,
    },
    /// Zero, negative or not finite.
    #[error("`{0}`: must be positive")]
    NotPositive(String),
}

/// Parses `15s`, `500ms`, `2m`, `1h` or a number of seconds; it must be positive.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| DurationError::NotADuration(text.to_string()))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(DurationError::Unit {
                text: text.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(DurationError::NotPositive(text.to_string()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Upper bounds of numeric run fields: far above any real run, low enough that no
/// arithmetic on them overflows and no allocation sized by them is absurd.
pub mod limits {
    /// `epochs`, `warmup_epochs` and schedule boundaries.
    pub const MAX_EPOCHS: u64 = 100_000;
    /// `max_attempts`.
    pub const MAX_ATTEMPTS: u64 = 100;
    /// `gpus` per run.
    pub const MAX_GPUS: u64 = 1_024;
    /// `batch_size`.
    pub const MAX_BATCH_SIZE: u64 = 1 << 20;
    /// `image_size` (pixels per side).
    pub const MAX_IMAGE_SIZE: u64 = 8_192;
    /// `classes`.
    pub const MAX_CLASSES: u64 = 1_000_000;
    /// `threads`.
    pub const MAX_THREADS: u64 = 4_096;
    /// `model`, `devices` and other short names.
    pub const MAX_NAME_BYTES: usize = 256;
}

mod defaults {
    use super::*;
    pub(super) fn image_size() -> usize {
        224
    }
    pub(super) fn channels() -> usize {
        3
    }
    pub(super) fn classes() -> usize {
        16
    }
    pub(super) fn epochs() -> u32 {
        60
    }
    pub(super) fn batch_size() -> usize {
        32
    }
    pub(super) fn optimizer() -> OptimizerKind {
        OptimizerKind::Momentum
    }
    pub(super) fn momentum() -> f64 {
        0.9
    }
    pub(super) fn lr() -> f64 {
        0.001
    }
    pub(super) fn lr_schedule() -> LrSchedule {
        LrSchedule::Constant
    }
    pub(super) fn seed() -> u64 {
        1
    }
    pub(super) fn max_attempts() -> u32 {
        3
    }
    pub(super) fn log_every() -> u64 {
        10
    }
}

impl RunSpec {
    /// The model this spec trains: the catalogue's layer tree for its model, factors,
    /// channels, image size and classes.
    pub fn architecture(&self) -> Result<crate::arch::Architecture, crate::zoo::ZooError> {
        crate::zoo::build(
            &self.model,
            &self.factors,
            self.channels,
            self.image_size,
            self.classes,
        )
    }

    /// Parses a standalone run spec (TOML); unknown keys and bad values are errors with the
    /// file's line and column.
    pub fn from_toml(text: &str, file_name: &str) -> Result<RunSpec, SpecFileError> {
        let location = |at: Option<(usize, usize)>| match at {
            Some((l, c)) => format!("{file_name}:{l}:{c}"),
            None => file_name.to_string(),
        };
        let spec: RunSpec = toml::from_str(text).map_err(|source| SpecFileError::Toml {
            location: location(source.span().map(|s| super::grid::line_col(text, s.start))),
            source,
        })?;
        spec.check().map_err(|source| {
            let key = match &source {
                SpecError::UnknownKey { path } => path.clone(),
                SpecError::Invalid { field, .. } => field.clone(),
                SpecError::Toml(_) => String::new(),
            };
            SpecFileError::Check {
                location: location(super::grid::locate_key(text, &key)),
                source,
            }
        })?;
        Ok(spec)
    }

    /// Checks what serde cannot: unknown keys, ranges, consistency.
    pub fn check(&self) -> Result<(), SpecError> {
        if let Some(key) = self.unknown.keys().next() {
            return Err(SpecError::UnknownKey { path: key.clone() });
        }
        let invalid = |field: &str, message: String| SpecError::Invalid {
            field: field.to_string(),
            message,
        };
        if !(self.channels == 1 || self.channels == 3) {
            return Err(invalid(
                "channels",
                format!("{} (expected 1 or 3)", self.channels),
            ));
        }
        if self.classes < 2 {
            return Err(invalid("classes", format!("{} (at least 2)", self.classes)));
        }
        if self.epochs == 0 {
            return Err(invalid("epochs", "must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1".into()));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(invalid("lr", format!("{} (must be positive)", self.lr)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid(
                "momentum",
                format!("{} (expected 0 ≤ μ < 1)", self.momentum),
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(invalid(
                "weight_decay",
                format!("{} (must be finite and not negative)", self.weight_decay),
            ));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1".into()));
        }
        for (field, value, limit) in [
            ("epochs", self.epochs as u64, limits::MAX_EPOCHS),
            (
                "warmup_epochs",
                self.warmup_epochs as u64,
                limits::MAX_EPOCHS,
            ),
            (
                "max_attempts",
                self.max_attempts as u64,
                limits::MAX_ATTEMPTS,
            ),
            ("gpus", self.gpus as u64, limits::MAX_GPUS),
            ("batch_size", self.batch_size as u64, limits::MAX_BATCH_SIZE),
            ("image_size", self.image_size as u64, limits::MAX_IMAGE_SIZE),
            ("classes", self.classes as u64, limits::MAX_CLASSES),
            (
                "threads",
                self.threads.unwrap_or(0) as u64,
                limits::MAX_THREADS,
            ),
        ] {
            if value > limit {
                return Err(invalid(field, format!("{value} (the limit is {limit})")));
            }
        }
        for (field, text) in [
            ("model", Some(self.model.as_str())),
            ("devices", self.devices.as_deref()),
        ] {
            if let Some(text) = text {
                if text.len() > limits::MAX_NAME_BYTES {
                    return Err(invalid(
                        field,
                        format!(
                            "{} bytes long (the limit is {})",
                            text.len(),
                            limits::MAX_NAME_BYTES
                        ),
                    ));
                }
            }
        }
        if self.log_every_steps == 0 {
            return Err(invalid("log_every_steps", "must be at least 1".into()));
        }
        if let Some(text) = &self.stall_timeout {
            let timeout =
                parse_duration(text).map_err(|e| invalid("stall_timeout", e.to_string()))?;
            if timeout < Duration::from_secs(1) {
                return Err(invalid(
                    "stall_timeout",
                    format!("`{text}` is under a second; a step can take longer than that"),
                ));
            }
        }
        if let LrSchedule::Piecewise { boundaries, values } = &self.lr_schedule {
            if values.len() != boundaries.len() + 1 {
                return Err(invalid(
                    "lr_schedule.values",
                    format!(
                        "{} values for {} boundaries (need one more value than boundaries)",
                        values.len(),
                        boundaries.len()
                    ),
                ));
            }
            if boundaries.windows(2).any(|w| w[0] >= w[1]) {
                return Err(invalid(
                    "lr_schedule.boundaries",
                    "must be increasing".into(),
                ));
            }
            if let Some(b) = boundaries.iter().find(|b| **b as u64 > limits::MAX_EPOCHS) {
                return Err(invalid(
                    "lr_schedule.boundaries",
                    format!("{b} (the limit is {})", limits::MAX_EPOCHS),
                ));
            }
            if let Some(v) = values.iter().find(|v| !(**v >= 0.0 && v.is_finite())) {
                return Err(invalid(
                    "lr_schedule.values",
                    format!("{v} (must be finite and not negative)"),
                ));
            }
        }
        if let LrSchedule::Cosine { min_lr } = &self.lr_schedule {
            if !(*min_lr >= 0.0 && min_lr.is_finite()) {
                return Err(invalid(
                    "lr_schedule.min_lr",
                    format!("{min_lr} (must be finite and not negative)"),
                ));
            }
        }
        if let Some(devices) = &self.devices {
            DeviceList::parse(devices).map_err(|e| invalid("devices", e.to_string()))?;
        }
        if let Some(dataset) = &self.dataset {
            dataset.check().map_err(|e| match e {
                SpecError::Invalid { field, message } => SpecError::Invalid {
                    field: format!("dataset.{field}"),
                    message,
                },
                SpecError::UnknownKey { path } => SpecError::UnknownKey {
                    path: format!("dataset.{path}"),
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// How long the step counter may stand still before the run counts as stalled.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(DEFAULT_STALL_TIMEOUT)
    }

    /// The devices of a standalone run (`devices`, else `cpu`).
    pub fn device_list(&self) -> Result<DeviceList, DeviceError> {
        match &self.devices {
            Some(d) => DeviceList::parse(d),
            None => Ok(DeviceList::Cpu(1)),
        }
    }

    /// A hash of everything that determines the trained weights (not where or how fast the
    /// run trains), so a checkpoint is refused by a run with another recipe.
    pub fn training_hash(&self) -> String {
        let mut canonical = self.clone();
        canonical.devices = None;
        canonical.threads = None;
        canonical.checkpoint_dir = None;
        canonical.max_attempts = 1;
        canonical.gpus = 0;
        canonical.log_every_steps = 1;
        canonical.stall_timeout = None;
        let json = serde_json::to_string(&canonical).expect("a RunSpec serialises");
        let digest = Sha256::digest(json.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The learning rate of a (0-based) epoch: the schedule, then the warm-up ramp.
    pub fn lr_at_epoch(&self, epoch: u32) -> f64 {
        let scheduled = match &self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Piecewise { boundaries, values } => {
                let index = boundaries.iter().filter(|&&b| epoch >= b).count();
                values[index.min(values.len() - 1)]
            }
            LrSchedule::Cosine { min_lr } => {
                let total = self.epochs.max(1) as f64;
                let progress = epoch as f64 / total;
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        };
        if epoch < self.warmup_epochs {
            scheduled * (epoch + 1) as f64 / (self.warmup_epochs + 1) as f64
        } else {
            scheduled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> Result<RunSpec, SpecFileError> {
        RunSpec::from_toml(&format!("model = \"lenet\"\n{extra}"), "run.toml")
    }

    #[test]
    fn defaults_are_the_seed_recipe() {
        let s = spec("").unwrap();
        assert_eq!(
            (s.batch_size, s.epochs, s.image_size, s.classes),
            (32, 60, 224, 16)
        );
        assert_eq!(s.lr, 0.001);
        assert_eq!(s.momentum, 0.9);
        assert_eq!(s.optimizer, OptimizerKind::Momentum);
    }

    #[test]
    fn unknown_key_is_located() {
        let err = spec("epochz = 3").unwrap_err();
        assert_eq!(err.to_string(), "run.toml:2:1: unknown key `epochz`");
    }

    #[test]
    fn wrong_type_is_located() {
        let err = spec("epochs = \"three\"").unwrap_err();
        assert!(err.to_string().starts_with("run.toml:2:"), "{err}");
    }

    #[test]
    fn piecewise_schedule_changes_at_boundaries() {
        let s = spec(
            "lr_schedule = { kind = \"piecewise\", boundaries = [2, 4], values = [0.1, 0.01, 0.001] }",
        )
        .unwrap();
        let lrs: Vec<f64> = (0..6).map(|e| s.lr_at_epoch(e)).collect();
        assert_eq!(lrs, vec![0.1, 0.1, 0.01, 0.01, 0.001, 0.001]);
    }

    #[test]
    fn piecewise_needs_one_more_value() {
        let err = spec("lr_schedule = { kind = \"piecewise\", boundaries = [2], values = [0.1] }")
            .unwrap_err();
        assert!(err.to_string().contains("lr_schedule.values"), "{err}");
    }

    #[test]
    fn stall_timeout_defaults_parses_and_is_checked() {
        assert_eq!(spec("").unwrap().stall_timeout(), DEFAULT_STALL_TIMEOUT);
        let s = spec("stall_timeout = \"90s\"").unwrap();
        assert_eq!(s.stall_timeout(), Duration::from_secs(90));
        assert_eq!(s.training_hash(), spec("").unwrap().training_hash());
        let err = spec("stall_timeout = \"ten minutes\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("run.toml:2:1: field `stall_timeout`:"),
            "{err}"
        );
        let err = spec("stall_timeout = \"200ms\"").unwrap_err().to_string();
        assert!(err.contains("under a second"), "{err}");
    }

    #[test]
    fn training_hash_ignores_placement() {
        let a = spec("devices = \"cpu\"").unwrap();
        let b = spec("devices = \"cpu:2\"\nthreads = 1").unwrap();
        let c = spec("lr = 0.01").unwrap();
        assert_eq!(a.training_hash(), b.training_hash());
        assert_ne!(a.training_hash(), c.training_hash());
    }

    #[test]
    fn device_lists_parse() {
        assert_eq!(DeviceList::parse("cpu:2").unwrap(), DeviceList::Cpu(2));
        assert_eq!(
            DeviceList::parse("cuda:0,1").unwrap(),
            DeviceList::Cuda(vec![0, 1])
        );
        assert!(DeviceList::parse("gpu").is_err());
        assert!(DeviceList::parse("cpu:0").is_err());
        let twice = DeviceList::parse("cuda:0,1,0").unwrap_err();
        assert!(
            twice.to_string().contains("cuda:0 is listed twice"),
            "{twice}"
        );
        assert!(DeviceList::parse("cuda:0,0").is_err());
        assert!(DeviceList::parse("cuda:").is_err());
        assert!(spec("devices = \"cuda:1,1\"").is_err());
    }

    #[test]
    fn device_lists_are_checked_against_the_machine() {
        let list = DeviceList::parse("cuda:0,2").unwrap();
        assert!(list.check_available(3).is_ok());
        let err = list.check_available(2).unwrap_err().to_string();
        assert!(
            err.contains("cuda:2 requested") && err.contains("2 CUDA device(s)"),
            "{err}"
        );
        let err = list.check_available(0).unwrap_err().to_string();
        assert!(err.contains("no CUDA device"), "{err}");
        assert!(DeviceList::Cpu(4).check_available(0).is_ok());
    }
}
