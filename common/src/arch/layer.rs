//! The layer vocabulary of the catalogue.

use serde::{Deserialize, Serialize};

/// Element-wise activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// max(x, 0).
    Relu,
    /// max(x, slope·x). Paddle 1.x's default slope is 0.02 (PyTorch's 0.01).
    LeakyRelu {
        /// Negative slope.
        slope: f64,
    },
}

/// How dropout scales activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropoutImpl {
    /// Paddle 1.x `downgrade_in_infer`: no rescaling while training, outputs multiplied by
    /// (1 − p) at eval.
    Paddle,
    /// PyTorch's inverted dropout: kept activations scaled by 1/(1 − p) while training.
    Torch,
}

/// Parameter initialisation scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// Paddle 1.x defaults: conv weights Normal(0, √(2 / (k²·C_in))), linear weights
    /// Xavier-uniform, biases 0.
    Paddle,
    /// PyTorch defaults: Kaiming-uniform(a = √5) weights, uniform(±1/√fan_in) biases.
    Torch,
}

/// Pooling operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKind {
    /// Max pooling.
    Max,
    /// Average pooling (padding excluded from the average, as in Paddle `exclusive=True`).
    Avg,
}

/// A 2-D convolution with a square kernel, from the incoming channels to `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convolution {
    /// Output channels.
    pub out: usize,
    /// Kernel size (square).
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Whether the convolution has a bias (Paddle's Conv2D always does; ResNet's not).
    pub bias: bool,
}

/// 2-D pooling with a square window (floor rounding, as Paddle's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pooling {
    /// Max or average.
    pub kind: PoolKind,
    /// Window size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on each side.
    pub padding: usize,
}

/// One node of a model's layer tree. Layers infer their input size from the shape that
/// reaches them, so a description never repeats a channel or flatten size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// 2-D convolution, square kernel (serialised as the struct variant it replaced:
    /// `{"conv": {"out": …, …}}`).
    Conv(Convolution),
    /// Batch normalisation over the channel (or feature) dimension; eps 1e-5,
    /// running statistics momentum 0.1 (Paddle's 0.9 on the old value).
    BatchNorm,
    /// Element-wise activation.
    Act(Activation),
    /// 2-D pooling with a square window (serialised as the struct variant it replaced).
    Pool(Pooling),
    /// Global average pooling: `[N, C, H, W]` → `[N, C, 1, 1]`.
    GlobalAvgPool,
    /// `[N, C, H, W]` → `[N, C·H·W]`.
    Flatten,
    /// Fully connected layer to `out` features (with bias).
    Linear {
        /// Output features.
        out: usize,
    },
    /// Dropout with probability `p`.
    Dropout {
        /// Drop probability.
        p: f64,
        /// Scaling convention.
        implementation: DropoutImpl,
    },
    /// Branches applied to the same input, concatenated on the channel dimension.
    Concat(Vec<Vec<Layer>>),
    /// `body(x) + shortcut(x)`; an empty shortcut is the identity.
    Residual {
        /// The main path.
        body: Vec<Layer>,
        /// The projection path (empty for identity).
        shortcut: Vec<Layer>,
    },
}

impl Layer {
    /// A convolution to `out` channels with a square `kernel`, `stride` and `padding` on
    /// each side.
    pub fn conv(out: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> Layer {
        Layer::Conv(Convolution {
            out,
            kernel,
            stride,
            padding,
            bias,
        })
    }

    /// `kind` pooling over a square `kernel` window, `stride`, `padding` on each side.
    pub fn pool(kind: PoolKind, kernel: usize, stride: usize, padding: usize) -> Layer {
        Layer::Pool(Pooling {
            kind,
            kernel,
            stride,
            padding,
        })
    }
}

/// A complete model: its input, its layer tree and how to initialise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Catalogue name (with overrides applied, e.g. `cnn_baseline`).
    pub name: String,
    /// Input channels (1 or 3).
    pub channels: usize,
    /// Input height and width.
    pub image_size: usize,
    /// Number of classes (the last layer's width).
    pub classes: usize,
    /// The layers in forward order; the last one produces `[N, classes]`.
    pub layers: Vec<Layer>,
    /// Initialisation scheme.
    pub init: InitScheme,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convolution_and_pooling_serialise_as_the_struct_variants_they_were() {
        for (layer, json) in [
            (
                Layer::conv(6, 5, 1, 2, true),
                r#"{"conv":{"out":6,"kernel":5,"stride":1,"padding":2,"bias":true}}"#,
            ),
            (
                Layer::pool(PoolKind::Avg, 3, 2, 1),
                r#"{"pool":{"kind":"avg","kernel":3,"stride":2,"padding":1}}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&layer).unwrap(), json);
            assert_eq!(serde_json::from_str::<Layer>(json).unwrap(), layer);
        }
    }
}
