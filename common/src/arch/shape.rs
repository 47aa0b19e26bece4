//! Shape inference, parameter and FLOP counting over a [`Layer`] tree.
//!
//! Every rule here mirrors what the worker's tch module does with the same layer, so a model
//! that passes [`analyse`] builds and runs, and the counts shown by `ablate models` are the
//! counts of the trained model.

use std::fmt;

use thiserror::Error;

use super::layer::{Activation, Architecture, Layer, PoolKind};

/// The shape of one example's activations (the batch dimension is left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A feature map `[C, H, W]`.
    Spatial {
        /// Channels.
        channels: usize,
        /// Height.
        height: usize,
        /// Width.
        width: usize,
    },
    /// A feature vector `[F]`.
    Flat {
        /// Features.
        features: usize,
    },
}

impl Shape {
    /// The input shape of `arch`: `[channels, image_size, image_size]`.
    pub fn input(arch: &Architecture) -> Shape {
        Shape::Spatial {
            channels: arch.channels,
            height: arch.image_size,
            width: arch.image_size,
        }
    }

    /// Number of values in one example.
    pub fn numel(&self) -> usize {
        match *self {
            Shape::Spatial {
                channels,
                height,
                width,
            } => channels.saturating_mul(height).saturating_mul(width),
            Shape::Flat { features } => features,
        }
    }

    /// The channels of a feature map or the features of a vector: the dimension that batch
    /// norm normalises over.
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Spatial { channels, .. } => channels,
            Shape::Flat { features } => features,
        }
    }

    /// The shape that `layer` (a container included) produces from `self`.
    ///
    /// Builders that walk a tree one layer at a time (the worker's tch module) use this to
    /// know each layer's input; errors name the layer as `layer`.
    pub fn after(&self, layer: &Layer) -> Result<Shape, ArchError> {
        Walker::default().layer(layer, *self, "layer")
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Spatial {
                channels,
                height,
                width,
            } => write!(f, "{channels}×{height}×{width}"),
            Shape::Flat { features } => write!(f, "{features}"),
        }
    }
}

/// What [`analyse`] finds out about an architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Analysis {
    /// The shape of the last layer's output (`Flat { features: classes }`).
    pub output: Shape,
    /// Trainable parameters: conv weights and biases, linear weights and biases, batch-norm
    /// weights and biases. Batch-norm running statistics are buffers and are not counted.
    pub params: u64,
    /// Forward FLOPs for one image: two per multiply-accumulate of the convolutions and the
    /// linear layers (`2·H_out·W_out·C_out·C_in·k²` and `2·in·out`). Biases, batch norm,
    /// activations, pooling, dropout, concatenation and residual additions are not counted,
    /// as is usual for CNN FLOP tables (they add well under 1 % for the catalogue).
    pub flops: u64,
    /// Number of leaf layers (every layer except the `Concat` and `Residual` containers).
    pub layers: usize,
}

/// Why an architecture cannot run. `path` names the layer, e.g. `layers[12]` or
/// `layers[9].branch[3][1]` (layer 1 of the fourth branch of the concat at index 9) or
/// `layers[5].body[0]`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ArchError {
    /// The input itself is empty.
    #[error("the input has no values: {channels} channels of {size}×{size} pixels")]
    EmptyInput {
        /// Input channels.
        channels: usize,
        /// Input height and width.
        size: usize,
    },
    /// A convolution or pooling window no longer fits: the feature map would be smaller than
    /// 1×1.
    #[error(
        "the feature map vanishes at {path} ({layer}): a {height}×{width} input \
         gives no output"
    )]
    Vanished {
        /// Where in the tree.
        path: String,
        /// The layer, in words.
        layer: String,
        /// Input height at that layer.
        height: usize,
        /// Input width at that layer.
        width: usize,
    },
    /// A layer that needs a `[C, H, W]` feature map got a flat vector.
    #[error("{path} ({layer}) needs a feature map [C, H, W] but gets a vector of {features}")]
    NeedsSpatial {
        /// Where in the tree.
        path: String,
        /// The layer, in words.
        layer: String,
        /// The features it gets.
        features: usize,
    },
    /// A linear layer got a feature map (a `Flatten` is missing).
    #[error("{path} ({layer}) needs a flat vector but gets a feature map {shape}; flatten first")]
    NeedsFlat {
        /// Where in the tree.
        path: String,
        /// The layer, in words.
        layer: String,
        /// The feature map it gets.
        shape: Shape,
    },
    /// Concatenated branches disagree on height and width.
    #[error(
        "{path}: concat branch {branch} gives {got} but branch 0 gives {expected}; \
         branches must agree on height and width"
    )]
    ConcatMismatch {
        /// Where in the tree.
        path: String,
        /// The branch that disagrees.
        branch: usize,
        /// Branch 0's output.
        expected: Shape,
        /// This branch's output.
        got: Shape,
    },
    /// A residual's body and shortcut give different shapes.
    #[error("{path}: the residual body gives {body} but the shortcut gives {shortcut}")]
    ResidualMismatch {
        /// Where in the tree.
        path: String,
        /// The body's output.
        body: Shape,
        /// The shortcut's output (the input, for an identity shortcut).
        shortcut: Shape,
    },
    /// A layer's own settings are impossible (zero sizes, too much padding, p ∉ [0, 1)).
    #[error("{path} ({layer}) is invalid: {reason}")]
    InvalidLayer {
        /// Where in the tree.
        path: String,
        /// The layer, in words.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// The architecture has no layers.
    #[error("the architecture has no layers")]
    NoLayers,
    /// The last layer does not produce one logit per class.
    #[error("the model ends in {got}, not in a vector of {classes} class logits")]
    OutputMismatch {
        /// The architecture's class count.
        classes: usize,
        /// What the last layer produces.
        got: Shape,
    },
}

/// Infers every layer's shape, checks that `arch` can run, and counts its parameters and
/// FLOPs.
///
/// # Errors
/// The first layer (in forward order) that cannot take what reaches it, or an output that
/// is not `[classes]`.
pub fn analyse(arch: &Architecture) -> Result<Analysis, ArchError> {
    let input = Shape::input(arch);
    if input.numel() == 0 {
        return Err(ArchError::EmptyInput {
            channels: arch.channels,
            size: arch.image_size,
        });
    }
    if arch.layers.is_empty() {
        return Err(ArchError::NoLayers);
    }
    let mut walker = Walker::default();
    let output = walker.sequence(&arch.layers, input, "layers")?;
    if output
        != (Shape::Flat {
            features: arch.classes,
        })
    {
        return Err(ArchError::OutputMismatch {
            classes: arch.classes,
            got: output,
        });
    }
    Ok(Analysis {
        output,
        params: walker.params,
        flops: walker.flops,
        layers: walker.layers,
    })
}

/// Accumulates counts while walking the tree.
#[derive(Debug, Default)]
struct Walker {
    params: u64,
    flops: u64,
    layers: usize,
}

impl Walker {
    /// Runs `layers` in order from `input`; `prefix` names the list (`layers`, `…body`).
    fn sequence(
        &mut self,
        layers: &[Layer],
        input: Shape,
        prefix: &str,
    ) -> Result<Shape, ArchError> {
        layers
            .iter()
            .enumerate()
            .try_fold(input, |shape, (i, layer)| {
                self.layer(layer, shape, &format!("{prefix}[{i}]"))
            })
    }

    /// The output of one layer (recursing into containers) from `input`.
    fn layer(&mut self, layer: &Layer, input: Shape, path: &str) -> Result<Shape, ArchError> {
        let invalid = |reason: String| ArchError::InvalidLayer {
            path: path.to_owned(),
            layer: describe(layer),
            reason,
        };
        if !matches!(layer, Layer::Concat(_) | Layer::Residual { .. }) {
            self.layers += 1;
        }
        match *layer {
            Layer::Conv(c) => {
                if c.out == 0 || c.kernel == 0 || c.stride == 0 {
                    return Err(invalid(
                        "output channels, kernel and stride must be ≥ 1".into(),
                    ));
                }
                let (channels, height, width) = spatial(layer, input, path)?;
                let (oh, ow) = window(layer, path, (height, width), c.kernel, c.stride, c.padding)?;
                let weights = mul(&[c.out, channels, c.kernel, c.kernel]);
                let bias = if c.bias { c.out as u64 } else { 0 };
                self.params = self.params.saturating_add(weights).saturating_add(bias);
                self.flops = self
                    .flops
                    .saturating_add(mul(&[2, oh, ow]).saturating_mul(weights));
                Ok(Shape::Spatial {
                    channels: c.out,
                    height: oh,
                    width: ow,
                })
            }
            Layer::BatchNorm => {
                self.params = self.params.saturating_add(2 * input.channels() as u64);
                Ok(input)
            }
            Layer::Act(activation) => {
                if let Activation::LeakyRelu { slope } = activation {
                    if !slope.is_finite() {
                        return Err(invalid(format!("leaky slope {slope} is not finite")));
                    }
                }
                Ok(input)
            }
            Layer::Pool(p) => {
                if p.kernel == 0 || p.stride == 0 {
                    return Err(invalid("kernel and stride must be ≥ 1".into()));
                }
                // PyTorch's pooling kernels refuse more padding than half the window.
                if 2 * p.padding > p.kernel {
                    return Err(invalid(format!(
                        "padding {} is more than half the {k}×{k} window",
                        p.padding,
                        k = p.kernel
                    )));
                }
                let (channels, height, width) = spatial(layer, input, path)?;
                let (height, width) =
                    window(layer, path, (height, width), p.kernel, p.stride, p.padding)?;
                Ok(Shape::Spatial {
                    channels,
                    height,
                    width,
                })
            }
            Layer::GlobalAvgPool => {
                let (channels, _, _) = spatial(layer, input, path)?;
                Ok(Shape::Spatial {
                    channels,
                    height: 1,
                    width: 1,
                })
            }
            Layer::Flatten => {
                spatial(layer, input, path)?;
                Ok(Shape::Flat {
                    features: input.numel(),
                })
            }
            Layer::Linear { out } => {
                if out == 0 {
                    return Err(invalid("output features must be ≥ 1".into()));
                }
                let Shape::Flat { features } = input else {
                    return Err(ArchError::NeedsFlat {
                        path: path.to_owned(),
                        layer: describe(layer),
                        shape: input,
                    });
                };
                let weights = mul(&[out, features]);
                self.params = self
                    .params
                    .saturating_add(weights)
                    .saturating_add(out as u64);
                self.flops = self.flops.saturating_add(weights.saturating_mul(2));
                Ok(Shape::Flat { features: out })
            }
            Layer::Dropout { p, .. } => {
                if !(0.0..1.0).contains(&p) {
                    return Err(invalid(format!("drop probability {p} is not in [0, 1)")));
                }
                Ok(input)
            }
            Layer::Concat(ref branches) => self.concat(branches, input, path),
            Layer::Residual {
                ref body,
                ref shortcut,
            } => {
                let body_out = self.sequence(body, input, &format!("{path}.body"))?;
                let shortcut_out = self.sequence(shortcut, input, &format!("{path}.shortcut"))?;
                if body_out != shortcut_out {
                    return Err(ArchError::ResidualMismatch {
                        path: path.to_owned(),
                        body: body_out,
                        shortcut: shortcut_out,
                    });
                }
                Ok(body_out)
            }
        }
    }

    /// Branches from the same input, concatenated on channels.
    fn concat(
        &mut self,
        branches: &[Vec<Layer>],
        input: Shape,
        path: &str,
    ) -> Result<Shape, ArchError> {
        if branches.is_empty() {
            return Err(ArchError::InvalidLayer {
                path: path.to_owned(),
                layer: "concat".into(),
                reason: "it has no branches".into(),
            });
        }
        let mut total = 0usize;
        let mut first: Option<Shape> = None;
        for (b, branch) in branches.iter().enumerate() {
            let out = self.sequence(branch, input, &format!("{path}.branch[{b}]"))?;
            let Shape::Spatial {
                channels,
                height,
                width,
            } = out
            else {
                return Err(ArchError::NeedsSpatial {
                    path: format!("{path}.branch[{b}]"),
                    layer: "concat input".into(),
                    features: out.numel(),
                });
            };
            match first {
                None => first = Some(out),
                Some(Shape::Spatial {
                    height: h0,
                    width: w0,
                    ..
                }) if (h0, w0) == (height, width) => {}
                Some(expected) => {
                    return Err(ArchError::ConcatMismatch {
                        path: path.to_owned(),
                        branch: b,
                        expected,
                        got: out,
                    })
                }
            }
            total = total.saturating_add(channels);
        }
        let Some(Shape::Spatial { height, width, .. }) = first else {
            unreachable!("branches is not empty and every branch output is spatial")
        };
        Ok(Shape::Spatial {
            channels: total,
            height,
            width,
        })
    }
}

/// `[C, H, W]` of a spatial input, or the error for `layer`.
fn spatial(layer: &Layer, input: Shape, path: &str) -> Result<(usize, usize, usize), ArchError> {
    match input {
        Shape::Spatial {
            channels,
            height,
            width,
        } => Ok((channels, height, width)),
        Shape::Flat { features } => Err(ArchError::NeedsSpatial {
            path: path.to_owned(),
            layer: describe(layer),
            features,
        }),
    }
}

/// Output height and width of a sliding window (floor rounding), or `Vanished`.
fn window(
    layer: &Layer,
    path: &str,
    (height, width): (usize, usize),
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<(usize, usize), ArchError> {
    let out = |n: usize| {
        (n + 2 * padding)
            .checked_sub(kernel)
            .map(|span| span / stride + 1)
    };
    match (out(height), out(width)) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => Err(ArchError::Vanished {
            path: path.to_owned(),
            layer: describe(layer),
            height,
            width,
        }),
    }
}

/// Product of sizes as a u64, saturating.
fn mul(factors: &[usize]) -> u64 {
    factors
        .iter()
        .fold(1u64, |acc, &f| acc.saturating_mul(f as u64))
}

/// One layer in words, for error messages (`conv 5×5/1 p2 → 64`).
fn describe(layer: &Layer) -> String {
    match *layer {
        Layer::Conv(c) => format!(
            "conv {k}×{k}/{s} p{p} → {o}",
            k = c.kernel,
            s = c.stride,
            p = c.padding,
            o = c.out
        ),
        Layer::BatchNorm => "batch norm".into(),
        Layer::Act(Activation::Sigmoid) => "sigmoid".into(),
        Layer::Act(Activation::Tanh) => "tanh".into(),
        Layer::Act(Activation::Relu) => "relu".into(),
        Layer::Act(Activation::LeakyRelu { slope }) => format!("leaky relu {slope}"),
        Layer::Pool(p) => {
            let kind = match p.kind {
                PoolKind::Max => "max",
                PoolKind::Avg => "avg",
            };
            format!(
                "{kind} pool {k}×{k}/{s} p{pad}",
                k = p.kernel,
                s = p.stride,
                pad = p.padding
            )
        }
        Layer::GlobalAvgPool => "global avg pool".into(),
        Layer::Flatten => "flatten".into(),
        Layer::Linear { out } => format!("linear → {out}"),
        Layer::Dropout { p, .. } => format!("dropout {p}"),
        Layer::Concat(ref branches) => format!("concat of {} branches", branches.len()),
        Layer::Residual { .. } => "residual".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{DropoutImpl, InitScheme};

    fn arch(image_size: usize, layers: Vec<Layer>) -> Architecture {
        Architecture {
            name: "test".into(),
            channels: 3,
            image_size,
            classes: 10,
            layers,
            init: InitScheme::Paddle,
        }
    }

    fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> Layer {
        Layer::conv(out, kernel, stride, padding, true)
    }

    fn max_pool(kernel: usize, stride: usize, padding: usize) -> Layer {
        Layer::pool(PoolKind::Max, kernel, stride, padding)
    }

    #[test]
    fn counts_a_small_network() {
        // conv 3→8 k3 p1 on 8×8: 8·3·9 + 8 = 224 params, 2·8·8·(8·3·9) = 27 648 FLOPs;
        // BN(8): 16; pool → 8×4×4; flatten 128; linear 128→10: 1290 params, 2560 FLOPs.
        let a = analyse(&arch(
            8,
            vec![
                conv(8, 3, 1, 1),
                Layer::BatchNorm,
                Layer::Act(Activation::Relu),
                max_pool(2, 2, 0),
                Layer::Flatten,
                Layer::Linear { out: 10 },
            ],
        ))
        .unwrap();
        assert_eq!(a.output, Shape::Flat { features: 10 });
        assert_eq!(a.params, 224 + 16 + 1290);
        assert_eq!(a.flops, 27_648 + 2_560);
        assert_eq!(a.layers, 6);
    }

    #[test]
    fn batch_norm_on_vectors_counts_features() {
        let a = analyse(&arch(
            2,
            vec![Layer::Flatten, Layer::BatchNorm, Layer::Linear { out: 10 }],
        ))
        .unwrap();
        // flatten 3·2·2 = 12; BN(12): 24; linear 12·10 + 10 = 130.
        assert_eq!(a.params, 24 + 130);
    }

    #[test]
    fn pooling_rounds_down_and_vanishing_names_the_layer() {
        // 7 → conv k3 → 5 → pool 2/2 → 2 → conv k3 → vanishes.
        let layers = vec![
            conv(4, 3, 1, 0),
            max_pool(2, 2, 0),
            conv(4, 3, 1, 0),
            Layer::Flatten,
            Layer::Linear { out: 10 },
        ];
        let err = analyse(&arch(7, layers.clone())).unwrap_err();
        assert_eq!(
            err,
            ArchError::Vanished {
                path: "layers[2]".into(),
                layer: "conv 3×3/1 p0 → 4".into(),
                height: 2,
                width: 2,
            }
        );
        assert!(err.to_string().contains("layers[2]"), "{err}");
        // 8 → 6 → 3 → 1: fits.
        assert_eq!(
            analyse(&arch(8, layers)).unwrap().params,
            (4 * 27 + 4) + (4 * 36 + 4) + (4 * 10 + 10)
        );
    }

    #[test]
    fn concat_adds_channels_and_checks_sizes() {
        let ok = Layer::Concat(vec![
            vec![conv(2, 1, 1, 0)],
            vec![conv(3, 3, 1, 1)],
            vec![max_pool(3, 1, 1)],
        ]);
        let shape = Shape::Spatial {
            channels: 3,
            height: 5,
            width: 5,
        };
        assert_eq!(
            shape.after(&ok).unwrap(),
            Shape::Spatial {
                channels: 2 + 3 + 3,
                height: 5,
                width: 5
            }
        );
        let bad = Layer::Concat(vec![vec![conv(2, 1, 1, 0)], vec![conv(3, 3, 1, 0)]]);
        let err = analyse(&arch(
            5,
            vec![bad, Layer::Flatten, Layer::Linear { out: 10 }],
        ))
        .unwrap_err();
        assert!(
            matches!(err, ArchError::ConcatMismatch { branch: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn residual_needs_equal_shapes() {
        let body = vec![conv(3, 3, 1, 1), Layer::BatchNorm];
        let identity = Layer::Residual {
            body: body.clone(),
            shortcut: vec![],
        };
        let input = Shape::Spatial {
            channels: 3,
            height: 4,
            width: 4,
        };
        assert_eq!(input.after(&identity).unwrap(), input);
        let strided = Layer::Residual {
            body: vec![conv(6, 3, 2, 1)],
            shortcut: vec![],
        };
        let err = analyse(&arch(
            4,
            vec![strided, Layer::Flatten, Layer::Linear { out: 10 }],
        ))
        .unwrap_err();
        assert!(matches!(err, ArchError::ResidualMismatch { .. }), "{err}");
        let projected = Layer::Residual {
            body: vec![conv(6, 3, 2, 1)],
            shortcut: vec![conv(6, 1, 2, 0)],
        };
        assert_eq!(
            input.after(&projected).unwrap(),
            Shape::Spatial {
                channels: 6,
                height: 2,
                width: 2
            }
        );
    }

    #[test]
    fn layer_kinds_check_their_input() {
        let flat_then_conv = vec![Layer::Flatten, conv(4, 1, 1, 0)];
        assert!(matches!(
            analyse(&arch(4, flat_then_conv)).unwrap_err(),
            ArchError::NeedsSpatial { .. }
        ));
        let linear_on_map = vec![Layer::GlobalAvgPool, Layer::Linear { out: 10 }];
        let err = analyse(&arch(4, linear_on_map)).unwrap_err();
        assert!(matches!(err, ArchError::NeedsFlat { .. }), "{err}");
        assert!(err.to_string().contains("flatten first"));
        let no_classes = vec![Layer::Flatten, Layer::Linear { out: 9 }];
        assert!(matches!(
            analyse(&arch(4, no_classes)).unwrap_err(),
            ArchError::OutputMismatch { classes: 10, .. }
        ));
        let bad_dropout = vec![
            Layer::Flatten,
            Layer::Dropout {
                p: 1.0,
                implementation: DropoutImpl::Paddle,
            },
            Layer::Linear { out: 10 },
        ];
        assert!(matches!(
            analyse(&arch(4, bad_dropout)).unwrap_err(),
            ArchError::InvalidLayer { .. }
        ));
        let over_padded = vec![max_pool(2, 2, 2), Layer::Flatten, Layer::Linear { out: 10 }];
        assert!(matches!(
            analyse(&arch(4, over_padded)).unwrap_err(),
            ArchError::InvalidLayer { .. }
        ));
        assert_eq!(analyse(&arch(4, vec![])).unwrap_err(), ArchError::NoLayers);
        assert!(matches!(
            analyse(&arch(0, vec![Layer::Flatten])).unwrap_err(),
            ArchError::EmptyInput { .. }
        ));
    }

    #[test]
    fn global_pool_gives_one_by_one() {
        let a = analyse(&arch(
            9,
            vec![conv(10, 3, 1, 1), Layer::GlobalAvgPool, Layer::Flatten],
        ))
        .unwrap();
        assert_eq!(a.output, Shape::Flat { features: 10 });
        assert_eq!(a.params, 10 * 27 + 10);
    }
}
