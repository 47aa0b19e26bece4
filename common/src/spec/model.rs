//! A run's model choice: a catalogue name plus optional factor overrides.

use serde::{Deserialize, Serialize};

use crate::arch::{DropoutImpl, InitScheme};

/// Activation names a grid can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationName {
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// ReLU.
    Relu,
    /// Leaky ReLU (slope from `leaky_slope`, default Paddle's 0.02).
    LeakyRelu,
}

/// Convolution kernels of the CNN family's stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// One 5×5 conv (padding 2) per stage.
    K5,
    /// One 3×3 conv (padding 1) per stage.
    K3,
    /// Two 3×3 convs (padding 1) per stage, each with its own BN (CNN_CoreSize3).
    TwoK3,
}

/// The CNN family's classifier head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// flatten → fc 1024 (activation) → [dropout] → fc C.
    Fc,
    /// global average pool → [dropout] → fc C.
    Gap,
}

/// Factor overrides on top of a catalogue preset. `None` keeps the preset's value.
/// Factors that a model does not have are rejected by the catalogue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelFactors {
    /// Activation of every conv and hidden fc.
    pub activation: Option<ActivationName>,
    /// Negative slope of `leaky_relu`.
    pub leaky_slope: Option<f64>,
    /// Batch norm after every conv.
    pub batch_norm: Option<bool>,
    /// Stage convolution kernels.
    pub kernel: Option<KernelKind>,
    /// 1-based stages replaced by ConcatConv (Inception-like) blocks, e.g. `[5, 6]`.
    pub concat_stages: Option<Vec<u32>>,
    /// Classifier head.
    pub head: Option<HeadKind>,
    /// Dropout probability in the head (0 disables it).
    pub dropout: Option<f64>,
    /// Dropout scaling convention.
    pub dropout_impl: Option<DropoutImpl>,
    /// Initialisation scheme.
    pub init: Option<InitScheme>,
}
