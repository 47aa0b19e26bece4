//! From a layer tree to tch layers.

use ablate_common::arch::{analyse, ArchError, Architecture, InitScheme, Layer, Shape};
use tch::nn;

use super::init;
use super::network::{Network, Node};

/// Builds the module of `arch` with its variables under `vs`, initialised by `arch.init`.
///
/// Variables are named by position: `3.weight` for the fourth layer, `9.branch1.2.bias`
/// inside a concat, `12.body.0.weight` / `12.shortcut.1.running_mean` inside a residual.
///
/// # Errors
/// The [`ArchError`] of [`analyse`] when `arch` cannot run (no variable is created then);
/// architectures from [`zoo::build`](ablate_common::zoo::build) have been checked.
pub fn try_build(vs: &nn::Path, arch: &Architecture) -> Result<Network, ArchError> {
    analyse(arch)?;
    let layers = sequence(vs, &arch.layers, Shape::input(arch), arch.init)?;
    Ok(Network { layers, rng: None })
}

/// The nodes of `layers` from `input`, variables under `vs / index`.
fn sequence(
    vs: &nn::Path,
    layers: &[Layer],
    input: Shape,
    init: InitScheme,
) -> Result<Vec<Node>, ArchError> {
    let mut shape = input;
    let mut nodes = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        nodes.push(node(&(vs / i), layer, shape, init)?);
        shape = shape.after(layer)?;
    }
    Ok(nodes)
}

/// One node taking `input`.
fn node(vs: &nn::Path, layer: &Layer, input: Shape, init: InitScheme) -> Result<Node, ArchError> {
    Ok(match *layer {
        Layer::Conv(c) => {
            let channels = input.channels();
            let config = init::conv(init, channels, c.kernel, c.stride, c.padding, c.bias);
            Node::Conv(nn::conv2d(
                vs,
                channels as i64,
                c.out as i64,
                c.kernel as i64,
                config,
            ))
        }
        Layer::BatchNorm => {
            let features = input.channels() as i64;
            Node::BatchNorm(match input {
                Shape::Spatial { .. } => nn::batch_norm2d(vs, features, init::batch_norm()),
                Shape::Flat { .. } => nn::batch_norm1d(vs, features, init::batch_norm()),
            })
        }
        Layer::Act(act) => Node::Act(act),
        Layer::Pool(p) => Node::Pool {
            kind: p.kind,
            kernel: p.kernel as i64,
            stride: p.stride as i64,
            padding: p.padding as i64,
        },
        Layer::GlobalAvgPool => Node::GlobalAvgPool,
        Layer::Flatten => Node::Flatten,
        Layer::Linear { out } => {
            let features = input.channels();
            Node::Linear(nn::linear(
                vs,
                features as i64,
                out as i64,
                init::linear(init, features, out),
            ))
        }
        Layer::Dropout { p, implementation } => Node::Dropout { p, implementation },
        Layer::Concat(ref branches) => Node::Concat(
            branches
                .iter()
                .enumerate()
                .map(|(b, branch)| sequence(&(vs / format!("branch{b}")), branch, input, init))
                .collect::<Result<_, _>>()?,
        ),
        Layer::Residual {
            ref body,
            ref shortcut,
        } => Node::Residual {
            body: sequence(&(vs / "body"), body, input, init)?,
            shortcut: sequence(&(vs / "shortcut"), shortcut, input, init)?,
        },
    })
}
