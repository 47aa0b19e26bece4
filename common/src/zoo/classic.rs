//! The seed's classic models: LeNet, AlexNet, VGG-13/16/19, VGG_BN, GoogLeNet(_BN).
//!
//! Each follows the seed's `forward()` line by line (Paddle: conv → act → BN); layers the
//! seed defines but never calls are left out. Flatten sizes are inferred, so the seed's
//! hard-coded `reshape` sizes (`120*50*50`, `256*6*6`, `512*7*7`) hold at 224 and follow
//! the input elsewhere.

use super::blocks::{conv_act, dropout, inception, max_pool, InceptionWidths};
use crate::arch::{Activation, DropoutImpl, Layer};

const RELU: Activation = Activation::Relu;
const SIGMOID: Activation = Activation::Sigmoid;

/// LeNet as in the seed (sigmoid everywhere, a 4×4 third conv).
pub(super) fn lenet(classes: usize) -> Vec<Layer> {
    [
        conv_act(6, 5, 1, 0, SIGMOID).to_vec(),
        vec![max_pool(2, 2, 0)],
        conv_act(16, 5, 1, 0, SIGMOID).to_vec(),
        vec![max_pool(2, 2, 0)],
        conv_act(120, 4, 1, 0, SIGMOID).to_vec(),
        // [120, 50, 50] at 224.
        vec![
            Layer::Flatten,
            Layer::Linear { out: 84 },
            Layer::Act(SIGMOID),
            Layer::Linear { out: classes },
        ],
    ]
    .concat()
}

/// AlexNet as in the seed.
pub(super) fn alexnet(classes: usize, drop: DropoutImpl) -> Vec<Layer> {
    [
        conv_act(96, 11, 4, 2, RELU).to_vec(),
        vec![max_pool(3, 2, 0)],
        conv_act(256, 5, 1, 2, RELU).to_vec(),
        vec![max_pool(3, 2, 0)],
        conv_act(384, 3, 1, 1, RELU).to_vec(),
        conv_act(384, 3, 1, 1, RELU).to_vec(),
        conv_act(256, 3, 1, 1, RELU).to_vec(),
        // [256, 6, 6] at 224.
        vec![max_pool(3, 2, 0)],
        fc4096_head(classes, drop),
        // Seed quirk: the last Linear has `act='relu'`, so logits are never negative.
        vec![Layer::Act(RELU)],
    ]
    .concat()
}

/// AlexNet's and VGG's classifier: flatten → (fc 4096, relu, dropout 0.5) × 2 → fc C.
fn fc4096_head(classes: usize, drop: DropoutImpl) -> Vec<Layer> {
    vec![
        Layer::Flatten,
        Layer::Linear { out: 4096 },
        Layer::Act(RELU),
        dropout(0.5, drop),
        Layer::Linear { out: 4096 },
        Layer::Act(RELU),
        dropout(0.5, drop),
        Layer::Linear { out: classes },
    ]
}

/// VGG-13/16/19 (`depth`); with `seed_bn`, the seed's VGG_BN (VGG-13 only in the catalogue).
///
/// The seed's VGG owns conv1…conv16 and calls conv7/8/11/12/15/16 only for depth ≥ 16 or
/// ≥ 19: blocks 3–5 have 2, 3 or 4 convs.
pub(super) fn vgg(depth: usize, seed_bn: bool, classes: usize, drop: DropoutImpl) -> Vec<Layer> {
    let deep = match depth {
        13 => 2,
        16 => 3,
        _ => 4,
    };
    let blocks = [(64, 2), (128, 2), (256, deep), (512, deep), (512, deep)];
    let mut layers = Vec::new();
    for (b, &(width, convs)) in blocks.iter().enumerate() {
        for c in 0..convs {
            layers.extend(conv_act(width, 3, 1, 1, RELU));
            // Seed quirk (VGG_BN): of the BN layers it defines, forward() uses only two:
            // bn128 after conv4 (block 2's second conv) and bn512 after conv9 (block 4's
            // first conv, 256 → 512). The others are commented out in the seed.
            if seed_bn && ((b, c) == (1, 1) || (b, c) == (3, 0)) {
                layers.push(Layer::BatchNorm);
            }
        }
        layers.push(max_pool(2, 2, 0));
    }
    // [512, 7, 7] at 224.
    layers.extend(fc4096_head(classes, drop));
    layers
}

/// GoogLeNet's Inception blocks (3a, 3b | 4a … 4e | 5a, 5b) in the seed's argument order.
const STAGE3: [InceptionWidths; 2] = [
    InceptionWidths::seed(64, (96, 128), (16, 32), 32),
    InceptionWidths::seed(128, (128, 192), (32, 96), 64),
];
const STAGE4: [InceptionWidths; 5] = [
    InceptionWidths::seed(192, (96, 208), (16, 48), 64),
    InceptionWidths::seed(160, (112, 224), (24, 64), 64),
    InceptionWidths::seed(128, (128, 256), (24, 64), 64),
    InceptionWidths::seed(112, (144, 288), (32, 64), 64),
    InceptionWidths::seed(256, (160, 320), (32, 128), 128),
];
const STAGE5: [InceptionWidths; 2] = [
    InceptionWidths::seed(256, (160, 320), (32, 128), 128),
    InceptionWidths::seed(384, (192, 384), (48, 128), 128),
];

/// GoogLeNet (Inception v1, no auxiliary heads); with `seed_bn`, the seed's GoogLeNet_BN.
pub(super) fn googlenet(seed_bn: bool, classes: usize, drop: DropoutImpl) -> Vec<Layer> {
    // Seed quirk (GoogLeNet_BN): it defines eight BN layers but forward() uses three:
    // bn64 after pool1, bn480 after pool3, bn1024 after the global pool.
    let bn = |layers: &mut Vec<Layer>| {
        if seed_bn {
            layers.push(Layer::BatchNorm);
        }
    };
    let mut layers = conv_act(64, 7, 2, 3, RELU).to_vec();
    layers.push(max_pool(3, 2, 1)); // [64, 56, 56] at 224
    bn(&mut layers);
    layers.extend(conv_act(64, 1, 1, 0, RELU));
    layers.extend(conv_act(192, 3, 1, 1, RELU));
    layers.push(max_pool(3, 2, 1)); // [192, 28, 28]
    layers.extend(STAGE3.map(|w| inception(w, RELU)));
    layers.push(max_pool(3, 2, 1)); // [480, 14, 14]
    bn(&mut layers);
    layers.extend(STAGE4.map(|w| inception(w, RELU)));
    layers.push(max_pool(3, 2, 1)); // [832, 7, 7]
    layers.extend(STAGE5.map(|w| inception(w, RELU)));
    // The seed's `Pool2D(pool_size=7, global_pooling=True)`: global pooling ignores the size.
    layers.push(Layer::GlobalAvgPool); // [1024, 1, 1]
    bn(&mut layers);
    // As in the seed: dropout on [1024, 1, 1], then the reshape to [1024].
    layers.extend([
        dropout(0.4, drop),
        Layer::Flatten,
        Layer::Linear { out: classes },
    ]);
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inception_widths_chain() {
        // Each block's output is the next block's input, as the seed's c1[0] arguments say.
        let outs: Vec<usize> = STAGE3
            .iter()
            .chain(&STAGE4)
            .chain(&STAGE5)
            .map(InceptionWidths::out)
            .collect();
        assert_eq!(outs, [256, 480, 512, 512, 512, 528, 832, 832, 1024]);
    }

    #[test]
    fn vgg_depths_count_convs() {
        for (depth, convs) in [(13, 10), (16, 13), (19, 16)] {
            let layers = vgg(depth, false, 16, DropoutImpl::Paddle);
            let n = layers
                .iter()
                .filter(|l| matches!(l, Layer::Conv(_)))
                .count();
            assert_eq!(n, convs, "vgg{depth}");
            assert_eq!(n + 3, depth, "vgg{depth}: convs + 3 fc");
        }
    }
}
