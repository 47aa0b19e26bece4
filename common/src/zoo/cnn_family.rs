//! The seed's hand-made CNN family as one configurable model, and its eight presets.
//!
//! Six stages of 64, 128, 256, 512, 1024, 1024 channels, a 2/2 max pool after stages 1–5
//! (224 → 7), then a head. A stage is its convs (each conv → act → [BN], Paddle's order) or
//! a ConcatConv block (the seed's Inception-like block with the family's activation,
//! 1024 channels out) followed by [BN].

use super::blocks::{conv_act, dropout, inception, max_pool, InceptionWidths};
use crate::arch::{Activation, DropoutImpl, Layer};
use crate::spec::{HeadKind, KernelKind};

/// Number of stages.
pub(super) const STAGES: usize = 6;
/// Output channels of each stage.
const WIDTHS: [usize; STAGES] = [64, 128, 256, 512, 1024, 1024];
/// Width of the hidden fc of the `fc` head.
const HIDDEN: usize = 1024;
/// The seed's ConcatConv widths, `ConcatConv(c1=(in, 384), c2=(384, 256), c3=(256, 256),
/// c4=128)`: 384 + 256 + 256 + 128 = 1024 channels, the width of stages 5 and 6.
const CONCAT: InceptionWidths = InceptionWidths::seed(384, (384, 256), (256, 256), 128);
// The block replaces a stage only where the widths agree.
const _: () = assert!(CONCAT.out() == WIDTHS[4] && CONCAT.out() == WIDTHS[5]);
/// Stages that may be ConcatConv blocks: those whose width is the block's 1024.
pub(super) const CONCAT_STAGES: [u32; 2] = [5, 6];
/// Paddle 1.x's `leaky_relu` slope.
pub(super) const PADDLE_LEAKY_SLOPE: f64 = 0.02;

/// One member of the family: every factor a grid can vary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CnnConfig {
    /// Activation of every conv, every ConcatConv branch and the hidden fc.
    pub(super) activation: Activation,
    /// BN after every conv and every ConcatConv block.
    pub(super) batch_norm: bool,
    /// Stage convolutions (ignored for ConcatConv stages).
    pub(super) kernel: KernelKind,
    /// `concat[s]`: stage `s + 1` is a ConcatConv block.
    pub(super) concat: [bool; STAGES],
    /// The classifier head.
    pub(super) head: HeadKind,
    /// Head dropout probability; 0 leaves the dropout layer out.
    pub(super) dropout: f64,
    /// Dropout scaling.
    pub(super) dropout_impl: DropoutImpl,
}

const LEAKY: Activation = Activation::LeakyRelu {
    slope: PADDLE_LEAKY_SLOPE,
};
const NO_CONCAT: [bool; STAGES] = [false; STAGES];

/// `CNN_BaseLine`: the sigmoid CNN with BN after every conv. Also the defaults of `cnn`.
pub(super) const BASELINE: CnnConfig = CnnConfig {
    activation: Activation::Sigmoid,
    batch_norm: true,
    kernel: KernelKind::K5,
    concat: NO_CONCAT,
    head: HeadKind::Fc,
    dropout: 0.0,
    dropout_impl: DropoutImpl::Paddle,
};
/// The seed's `CNN`: k5 convs, sigmoid, no BN.
pub(super) const SIGMOID: CnnConfig = CnnConfig {
    batch_norm: false,
    ..BASELINE
};
/// `CNN_LeakyRelu`: leaky relu in every conv and in the hidden fc.
pub(super) const LEAKYRELU: CnnConfig = CnnConfig {
    activation: LEAKY,
    ..BASELINE
};
/// `CNN_PoolReplaceFC`: global average pool → fc C.
pub(super) const POOLREPLACEFC: CnnConfig = CnnConfig {
    head: HeadKind::Gap,
    ..BASELINE
};
/// `CNN_DropOut`: dropout 0.5 after the hidden fc.
pub(super) const DROPOUT: CnnConfig = CnnConfig {
    dropout: 0.5,
    ..BASELINE
};
/// `CNN_CoreSize3`: two 3×3 convs (each with its BN) for every 5×5.
pub(super) const CORESIZE3: CnnConfig = CnnConfig {
    kernel: KernelKind::TwoK3,
    ..BASELINE
};
/// `CNN_ConcatConv`: stage 5 is a ConcatConv block (sigmoid inside, the family's
/// activation here), and dropout 0.5 after the hidden fc.
pub(super) const CONCATCONV: CnnConfig = CnnConfig {
    concat: [false, false, false, false, true, false],
    // Seed quirk: CNN_ConcatConv also adds `Dropout(0.5)` after fc1, so it differs from the
    // baseline in two factors, not one.
    dropout: 0.5,
    ..BASELINE
};
/// `CNN_AllTricks`: one 3×3 conv a stage (not two), leaky relu, BN, ConcatConv stages 5 and
/// 6, global average pool head with dropout 0.5 before the fc.
pub(super) const ALLTRICKS: CnnConfig = CnnConfig {
    activation: LEAKY,
    batch_norm: true,
    kernel: KernelKind::K3,
    concat: [false, false, false, false, true, true],
    head: HeadKind::Gap,
    dropout: 0.5,
    dropout_impl: DropoutImpl::Paddle,
};

/// The layers of the family member `c` with `classes` outputs.
pub(super) fn cnn(c: &CnnConfig, classes: usize) -> Vec<Layer> {
    let mut layers = Vec::new();
    let act = c.activation;
    for (s, &width) in WIDTHS.iter().enumerate() {
        let stage_convs: &[(usize, usize)] = match c.kernel {
            KernelKind::K5 => &[(5, 2)],
            KernelKind::K3 => &[(3, 1)],
            KernelKind::TwoK3 => &[(3, 1), (3, 1)],
        };
        if c.concat[s] {
            layers.push(inception(CONCAT, act));
            // The seed follows each ConcatConv block with its own BatchNorm(1024).
            if c.batch_norm {
                layers.push(Layer::BatchNorm);
            }
        } else {
            // CNN_CoreSize3: c_{s-1} → c_s, then c_s → c_s, each conv → act → BN.
            for &(kernel, padding) in stage_convs {
                layers.extend(conv_act(width, kernel, 1, padding, act));
                if c.batch_norm {
                    layers.push(Layer::BatchNorm);
                }
            }
        }
        if s + 1 < STAGES {
            layers.push(max_pool(2, 2, 0));
        }
    }
    // [1024, 7, 7] at 224.
    match c.head {
        HeadKind::Fc => {
            layers.extend([
                Layer::Flatten,
                Layer::Linear { out: HIDDEN },
                Layer::Act(act),
            ]);
            // CNN_DropOut and CNN_ConcatConv: dropout after the hidden fc.
            if c.dropout > 0.0 {
                layers.push(dropout(c.dropout, c.dropout_impl));
            }
        }
        HeadKind::Gap => {
            layers.extend([Layer::GlobalAvgPool, Layer::Flatten]);
            // CNN_AllTricks: dropout after the global pool, before the only fc.
            if c.dropout > 0.0 {
                layers.push(dropout(c.dropout, c.dropout_impl));
            }
        }
    }
    layers.push(Layer::Linear { out: classes });
    layers
}
