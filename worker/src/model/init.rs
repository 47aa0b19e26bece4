//! Layer configurations for the two initialisation schemes.
//!
//! - Paddle 1.x: conv weights Normal(0, √(2 / (k²·C_in))), linear weights Xavier-uniform
//!   (±√(6 / (in + out))), biases 0.
//! - PyTorch: `kaiming_uniform_(a = √5)` weights, which is Uniform(±1/√fan_in), and
//!   Uniform(±1/√fan_in) biases (`nn.Conv2d` / `nn.Linear` `reset_parameters`). tch's own
//!   defaults differ (Kaiming-uniform with the ReLU gain, zero conv biases), so they are
//!   spelled out here.
//!
//! Batch norm starts at weight 1, bias 0 in both (tch's default weight is Uniform(0, 1)),
//! with eps 1e-5 and momentum 0.1 (Paddle's `r = 0.9·r + 0.1·batch`).

use ablate_common::arch::InitScheme;
use tch::nn::{BatchNormConfig, ConvConfig, Init, LinearConfig};

/// Uniform(±bound).
fn uniform(bound: f64) -> Init {
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A square convolution from `in_channels` with this kernel, stride, padding and bias.
pub(super) fn conv(
    init: InitScheme,
    in_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> ConvConfig {
    let fan_in = (in_channels * kernel * kernel) as f64;
    let (ws_init, bs_init) = match init {
        InitScheme::Paddle => (
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_in).sqrt(),
            },
            Init::Const(0.0),
        ),
        InitScheme::Torch => (uniform(1.0 / fan_in.sqrt()), uniform(1.0 / fan_in.sqrt())),
    };
    ConvConfig {
        stride: stride as i64,
        padding: padding as i64,
        bias,
        ws_init,
        bs_init,
        ..Default::default()
    }
}

/// A linear layer from `input` to `output` features.
pub(super) fn linear(init: InitScheme, input: usize, output: usize) -> LinearConfig {
    let (ws_init, bs_init) = match init {
        InitScheme::Paddle => (
            uniform((6.0 / (input + output) as f64).sqrt()),
            Init::Const(0.0),
        ),
        InitScheme::Torch => (
            uniform(1.0 / (input as f64).sqrt()),
            uniform(1.0 / (input as f64).sqrt()),
        ),
    };
    LinearConfig {
        ws_init,
        bs_init: Some(bs_init),
        bias: true,
    }
}

/// Batch norm, the same in both schemes.
pub(super) fn batch_norm() -> BatchNormConfig {
    BatchNormConfig {
        eps: 1e-5,
        momentum: 0.1,
        ws_init: Init::Const(1.0),
        bs_init: Init::Const(0.0),
        ..Default::default()
    }
}
