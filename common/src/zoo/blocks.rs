//! Small layer builders shared by the catalogue's models.
//!
//! Convolutions here have a bias, as every Paddle `Conv2D` of the seed does; ResNet builds
//! its bias-free convolutions itself.

use crate::arch::{Activation, DropoutImpl, Layer, PoolKind};

/// A Paddle-style convolution with bias.
pub(super) fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> Layer {
    Layer::conv(out, kernel, stride, padding, true)
}

/// Paddle's `Conv2D(…, act=act)`: conv → act.
pub(super) fn conv_act(
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    act: Activation,
) -> [Layer; 2] {
    [conv(out, kernel, stride, padding), Layer::Act(act)]
}

/// Max pooling (floor rounding).
pub(super) fn max_pool(kernel: usize, stride: usize, padding: usize) -> Layer {
    Layer::pool(PoolKind::Max, kernel, stride, padding)
}

/// Dropout with probability `p`.
pub(super) fn dropout(p: f64, implementation: DropoutImpl) -> Layer {
    Layer::Dropout { p, implementation }
}

/// Channel widths of an Inception-v1 block, named as in torchvision's `Inception`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InceptionWidths {
    /// The 1×1 branch.
    pub(super) ch1x1: usize,
    /// The 1×1 reduction before the 3×3 conv.
    pub(super) ch3x3red: usize,
    /// The 3×3 conv.
    pub(super) ch3x3: usize,
    /// The 1×1 reduction before the 5×5 conv.
    pub(super) ch5x5red: usize,
    /// The 5×5 conv.
    pub(super) ch5x5: usize,
    /// The 1×1 projection after the 3×3 max pool.
    pub(super) pool_proj: usize,
}

impl InceptionWidths {
    /// Widths in the seed's argument order: `Inception(c1=(in, ch1x1), c2=(ch3x3red, ch3x3),
    /// c3=(ch5x5red, ch5x5), c4=pool_proj)`; the input width is inferred.
    pub(super) const fn seed(
        ch1x1: usize,
        (ch3x3red, ch3x3): (usize, usize),
        (ch5x5red, ch5x5): (usize, usize),
        pool_proj: usize,
    ) -> InceptionWidths {
        InceptionWidths {
            ch1x1,
            ch3x3red,
            ch3x3,
            ch5x5red,
            ch5x5,
            pool_proj,
        }
    }

    /// Output channels: the sum of the four branches.
    pub(super) const fn out(&self) -> usize {
        self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj
    }
}

/// The seed's `Inception` (GoogLeNet, relu) and `ConcatConv` (CNN family, configurable
/// activation) block: four branches on the same input, concatenated on channels:
/// `[1×1]`, `[1×1 → 3×3 p1]`, `[1×1 → 5×5 p2]`, `[max pool 3/1 p1 → 1×1]`, every conv
/// followed by `act` (no BN inside, as in the seed).
pub(super) fn inception(w: InceptionWidths, act: Activation) -> Layer {
    Layer::Concat(vec![
        conv_act(w.ch1x1, 1, 1, 0, act).to_vec(),
        [
            conv_act(w.ch3x3red, 1, 1, 0, act),
            conv_act(w.ch3x3, 3, 1, 1, act),
        ]
        .concat(),
        [
            conv_act(w.ch5x5red, 1, 1, 0, act),
            conv_act(w.ch5x5, 5, 1, 2, act),
        ]
        .concat(),
        [
            vec![max_pool(3, 1, 1)],
            conv_act(w.pool_proj, 1, 1, 0, act).to_vec(),
        ]
        .concat(),
    ])
}
