//! ResNet-18/34 with basic blocks (He et al. 2016, torchvision's layout), the seed article's
//! next chapter.

use crate::arch::{Activation, Layer, PoolKind};

/// Blocks per stage of ResNet-18.
pub(super) const RESNET18: [usize; 4] = [2, 2, 2, 2];
/// Blocks per stage of ResNet-34.
pub(super) const RESNET34: [usize; 4] = [3, 4, 6, 3];
/// Channels of the four stages.
const WIDTHS: [usize; 4] = [64, 128, 256, 512];

/// A bias-free convolution (every ResNet conv is followed by BN).
fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> Layer {
    Layer::conv(out, kernel, stride, padding, false)
}

/// A basic block from `input` to `out` channels: conv3×3/s → BN → relu → conv3×3 → BN, plus
/// the input (through a 1×1/s conv + BN projection when the shape changes), then relu.
fn basic_block(input: usize, out: usize, stride: usize) -> [Layer; 2] {
    let shortcut = if stride != 1 || input != out {
        vec![conv(out, 1, stride, 0), Layer::BatchNorm]
    } else {
        Vec::new()
    };
    [
        Layer::Residual {
            body: vec![
                conv(out, 3, stride, 1),
                Layer::BatchNorm,
                Layer::Act(Activation::Relu),
                conv(out, 3, 1, 1),
                Layer::BatchNorm,
            ],
            shortcut,
        },
        // The relu after the addition.
        Layer::Act(Activation::Relu),
    ]
}

/// A basic-block ResNet with `blocks` per stage.
pub(super) fn resnet(blocks: [usize; 4], classes: usize) -> Vec<Layer> {
    let mut layers = vec![
        conv(64, 7, 2, 3),
        Layer::BatchNorm,
        Layer::Act(Activation::Relu),
        // [64, 56, 56] at 224.
        Layer::pool(PoolKind::Max, 3, 2, 1),
    ];
    let mut channels = 64;
    for (stage, (&width, &count)) in WIDTHS.iter().zip(&blocks).enumerate() {
        for block in 0..count {
            // The first block of stages 2–4 halves the map: [128, 28, 28] … [512, 7, 7].
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            layers.extend(basic_block(channels, width, stride));
            channels = width;
        }
    }
    layers.extend([
        Layer::GlobalAvgPool,
        Layer::Flatten,
        Layer::Linear { out: classes },
    ]);
    layers
}
