//! Errors of the catalogue.

use thiserror::Error;

use crate::arch::ArchError;

/// Why a model cannot be built as asked.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ZooError {
    /// The name is not in the catalogue.
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The catalogue's names, comma-separated.
        known: String,
    },
    /// A factor override that this model does not have (e.g. `batch_norm` on `lenet`).
    #[error("model `{model}` has no factor `{factor}`; its factors are: {allowed}")]
    UnsupportedFactor {
        /// The model.
        model: String,
        /// The factor key.
        factor: &'static str,
        /// The model's factor keys, comma-separated.
        allowed: String,
    },
    /// A factor value outside what the model can take (e.g. `dropout = 1.2`).
    #[error("model `{model}`: factor `{factor}` {reason}")]
    InvalidFactor {
        /// The model.
        model: String,
        /// The factor key.
        factor: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// A `key=value` override whose key is no factor.
    #[error("unknown factor `{key}`; known factors: {known}")]
    UnknownFactor {
        /// The key given.
        key: String,
        /// The factor keys, comma-separated.
        known: String,
    },
    /// A `key=value` override whose value does not parse.
    #[error("factor `{key}` cannot be `{value}`: expected {expected}")]
    BadFactorValue {
        /// The factor key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What would parse.
        expected: &'static str,
    },
    /// No input channels or no classes.
    #[error(
        "model `{model}` needs at least 1 input channel and 1 class, got {channels} and {classes}"
    )]
    InvalidInput {
        /// The model.
        model: String,
        /// Input channels asked for.
        channels: usize,
        /// Classes asked for.
        classes: usize,
    },
    /// The image size is below the smallest size the model takes.
    #[error("{model} cannot take {size}×{size} images: {cause}; the smallest size is {min}")]
    TooSmall {
        /// The model.
        model: String,
        /// The size asked for.
        size: usize,
        /// The smallest size that works.
        min: usize,
        /// What fails at `size`.
        cause: Box<ArchError>,
    },
    /// No image size up to the search limit works.
    #[error("{model} takes no image size up to {limit}×{limit}: at {limit}×{limit}, {cause}")]
    NoValidSize {
        /// The model.
        model: String,
        /// The largest size tried.
        limit: usize,
        /// What fails at `limit`.
        cause: Box<ArchError>,
    },
    /// The model cannot run at this size for another reason than a vanishing feature map.
    #[error("{model} cannot take {size}×{size} images: {cause}")]
    Arch {
        /// The model.
        model: String,
        /// The size asked for.
        size: usize,
        /// What fails.
        cause: Box<ArchError>,
    },
}
