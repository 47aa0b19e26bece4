//! The catalogue: model names, descriptions, accepted factors, and building an
//! [`Architecture`] for an input size and class count.

use std::sync::OnceLock;

use super::classic::{alexnet, googlenet, lenet, vgg};
use super::cnn_family::{self, cnn, CnnConfig, CONCAT_STAGES, PADDLE_LEAKY_SLOPE, STAGES};
use super::error::ZooError;
use super::factors::{set_keys, FACTOR_KEYS};
use super::resnet::{resnet, RESNET18, RESNET34};
use crate::arch::{analyse, Activation, Architecture, DropoutImpl, InitScheme};
use crate::spec::{ActivationName, ModelFactors};

/// The largest image size [`min_image_size`] tries.
pub const MAX_IMAGE_SIZE: usize = 1024;

/// Factors of the classic models and the ResNets.
const FIXED_MODEL_FACTORS: &[&str] = &["dropout_impl", "init", "leaky_slope"];

/// How a catalogue entry builds its layers.
#[derive(Debug, Clone, Copy)]
enum Kind {
    LeNet,
    AlexNet,
    Vgg { depth: usize, seed_bn: bool },
    GoogLeNet { seed_bn: bool },
    Family(CnnConfig),
    ResNet([usize; 4]),
}

#[derive(Debug)]
struct Entry {
    name: &'static str,
    description: &'static str,
    kind: Kind,
}

const fn entry(name: &'static str, description: &'static str, kind: Kind) -> Entry {
    Entry {
        name,
        description,
        kind,
    }
}

/// The catalogue, in listing order.
const CATALOGUE: &[Entry] = &[
    entry(
        "lenet",
        "LeNet-5 as in the seed: sigmoid, 3 convs, 2 fc",
        Kind::LeNet,
    ),
    entry(
        "alexnet",
        "AlexNet as in the seed (its last fc keeps the seed's relu)",
        Kind::AlexNet,
    ),
    entry(
        "vgg13",
        "VGG-13: 10 3×3 convs in 5 blocks, 3 fc",
        Kind::Vgg {
            depth: 13,
            seed_bn: false,
        },
    ),
    entry(
        "vgg16",
        "VGG-16: 13 3×3 convs in 5 blocks, 3 fc",
        Kind::Vgg {
            depth: 16,
            seed_bn: false,
        },
    ),
    entry(
        "vgg19",
        "VGG-19: 16 3×3 convs in 5 blocks, 3 fc",
        Kind::Vgg {
            depth: 19,
            seed_bn: false,
        },
    ),
    entry(
        "vgg13_bn",
        "the seed's VGG_BN: VGG-13 with BN after conv4 and conv9 only",
        Kind::Vgg {
            depth: 13,
            seed_bn: true,
        },
    ),
    entry(
        "googlenet",
        "GoogLeNet (Inception v1) without auxiliary heads",
        Kind::GoogLeNet { seed_bn: false },
    ),
    entry(
        "googlenet_bn",
        "the seed's GoogLeNet_BN: BN after pool1, pool3 and the global pool",
        Kind::GoogLeNet { seed_bn: true },
    ),
    entry(
        "cnn_sigmoid",
        "the seed's CNN: 6 k5 conv stages, sigmoid, no BN, fc head",
        Kind::Family(cnn_family::SIGMOID),
    ),
    entry(
        "cnn_baseline",
        "CNN_BaseLine: the sigmoid CNN with BN after every conv",
        Kind::Family(cnn_family::BASELINE),
    ),
    entry(
        "cnn_leakyrelu",
        "CNN_LeakyRelu: baseline with leaky relu (slope 0.02)",
        Kind::Family(cnn_family::LEAKYRELU),
    ),
    entry(
        "cnn_poolreplacefc",
        "CNN_PoolReplaceFC: baseline with a global-average-pool head",
        Kind::Family(cnn_family::POOLREPLACEFC),
    ),
    entry(
        "cnn_dropout",
        "CNN_DropOut: baseline with dropout 0.5 after the hidden fc",
        Kind::Family(cnn_family::DROPOUT),
    ),
    entry(
        "cnn_coresize3",
        "CNN_CoreSize3: baseline with two 3×3 convs for every 5×5",
        Kind::Family(cnn_family::CORESIZE3),
    ),
    entry(
        "cnn_concatconv",
        "CNN_ConcatConv: baseline with a ConcatConv stage 5 and dropout 0.5",
        Kind::Family(cnn_family::CONCATCONV),
    ),
    entry(
        "cnn_alltricks",
        "CNN_AllTricks: k3, leaky relu, BN, ConcatConv stages 5-6, GAP head, dropout",
        Kind::Family(cnn_family::ALLTRICKS),
    ),
    entry(
        "cnn",
        "the configurable CNN family (defaults: cnn_baseline) for factorial grids",
        Kind::Family(cnn_family::BASELINE),
    ),
    entry(
        "resnet18",
        "ResNet-18: basic blocks [2, 2, 2, 2], BN, torch init",
        Kind::ResNet(RESNET18),
    ),
    entry(
        "resnet34",
        "ResNet-34: basic blocks [3, 4, 6, 3], BN, torch init",
        Kind::ResNet(RESNET34),
    ),
];

/// Every model name, in listing order.
pub fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| CATALOGUE.iter().map(|e| e.name).collect())
}

/// A one-line description of `model`, or `None` for an unknown name.
pub fn describe(model: &str) -> Option<&'static str> {
    lookup(model).ok().map(|e| e.description)
}

/// The factor keys `model` accepts: all of them for the CNN family (`cnn*`), only
/// `dropout_impl`, `init` and `leaky_slope` for the classic models and the ResNets.
///
/// # Errors
/// [`ZooError::UnknownModel`].
pub fn accepted_factors(model: &str) -> Result<&'static [&'static str], ZooError> {
    Ok(accepted(&lookup(model)?.kind))
}

/// Builds `model` with `factors` for `channels`×`image_size`×`image_size` inputs and
/// `classes` outputs, and checks that it runs at that size.
///
/// # Errors
/// An unknown model, a factor the model does not have or a value out of range, no channels
/// or classes, or an image size the model cannot take ([`ZooError::TooSmall`] names the
/// smallest size that works).
pub fn build(
    model: &str,
    factors: &ModelFactors,
    channels: usize,
    image_size: usize,
    classes: usize,
) -> Result<Architecture, ZooError> {
    let mut arch = architecture(model, factors, channels, classes)?;
    arch.image_size = image_size;
    match analyse(&arch) {
        Ok(_) => Ok(arch),
        Err(cause) => {
            let cause = Box::new(cause);
            Err(match smallest(&mut arch) {
                Some(min) if min > image_size => ZooError::TooSmall {
                    model: model.to_owned(),
                    size: image_size,
                    min,
                    cause,
                },
                _ => ZooError::Arch {
                    model: model.to_owned(),
                    size: image_size,
                    cause,
                },
            })
        }
    }
}

/// The smallest square image size (from 1 up to [`MAX_IMAGE_SIZE`]) at which `model` with
/// `factors` runs.
///
/// # Errors
/// As [`build`] for the model and factors; [`ZooError::NoValidSize`] when no size up to
/// the limit works.
pub fn min_image_size(
    model: &str,
    factors: &ModelFactors,
    channels: usize,
    classes: usize,
) -> Result<usize, ZooError> {
    let mut arch = architecture(model, factors, channels, classes)?;
    smallest(&mut arch).ok_or_else(|| {
        arch.image_size = MAX_IMAGE_SIZE;
        ZooError::NoValidSize {
            model: model.to_owned(),
            limit: MAX_IMAGE_SIZE,
            cause: Box::new(analyse(&arch).expect_err("no size up to the limit passed")),
        }
    })
}

/// The smallest size at which `arch` (its layers do not depend on the size) analyses.
fn smallest(arch: &mut Architecture) -> Option<usize> {
    (1..=MAX_IMAGE_SIZE).find(|&size| {
        arch.image_size = size;
        analyse(arch).is_ok()
    })
}

fn lookup(model: &str) -> Result<&'static Entry, ZooError> {
    CATALOGUE
        .iter()
        .find(|e| e.name == model)
        .ok_or_else(|| ZooError::UnknownModel {
            name: model.to_owned(),
            known: names().join(", "),
        })
}

fn accepted(kind: &Kind) -> &'static [&'static str] {
    match kind {
        Kind::Family(_) => FACTOR_KEYS,
        _ => FIXED_MODEL_FACTORS,
    }
}

/// The architecture of `model` with `factors` applied; `image_size` is left at 0.
fn architecture(
    model: &str,
    factors: &ModelFactors,
    channels: usize,
    classes: usize,
) -> Result<Architecture, ZooError> {
    let entry = lookup(model)?;
    let allowed = accepted(&entry.kind);
    if let Some(factor) = set_keys(factors).into_iter().find(|k| !allowed.contains(k)) {
        return Err(ZooError::UnsupportedFactor {
            model: model.to_owned(),
            factor,
            allowed: allowed.join(", "),
        });
    }
    if channels == 0 || classes == 0 {
        return Err(ZooError::InvalidInput {
            model: model.to_owned(),
            channels,
            classes,
        });
    }
    let invalid = |factor: &'static str, reason: String| ZooError::InvalidFactor {
        model: model.to_owned(),
        factor,
        reason,
    };
    if let Some(slope) = factors.leaky_slope.filter(|s| !s.is_finite()) {
        return Err(invalid(
            "leaky_slope",
            format!("must be finite, not {slope}"),
        ));
    }
    // The seed presets use Paddle's dropout; ResNets have no dropout.
    let drop = factors.dropout_impl.unwrap_or(DropoutImpl::Paddle);
    let (layers, default_init) = match entry.kind {
        Kind::LeNet => (lenet(classes), InitScheme::Paddle),
        Kind::AlexNet => (alexnet(classes, drop), InitScheme::Paddle),
        Kind::Vgg { depth, seed_bn } => (vgg(depth, seed_bn, classes, drop), InitScheme::Paddle),
        Kind::GoogLeNet { seed_bn } => (googlenet(seed_bn, classes, drop), InitScheme::Paddle),
        Kind::Family(preset) => {
            let config = family_config(preset, factors).map_err(|(f, r)| invalid(f, r))?;
            (cnn(&config, classes), InitScheme::Paddle)
        }
        Kind::ResNet(blocks) => (resnet(blocks, classes), InitScheme::Torch),
    };
    Ok(Architecture {
        name: model.to_owned(),
        channels,
        image_size: 0,
        classes,
        layers,
        init: factors.init.unwrap_or(default_init),
    })
}

/// A family preset with `factors` applied, or the factor and why its value is refused.
fn family_config(
    preset: CnnConfig,
    factors: &ModelFactors,
) -> Result<CnnConfig, (&'static str, String)> {
    let preset_slope = match preset.activation {
        Activation::LeakyRelu { slope } => slope,
        _ => PADDLE_LEAKY_SLOPE,
    };
    let slope = factors.leaky_slope.unwrap_or(preset_slope);
    let activation = match factors.activation {
        None => match preset.activation {
            Activation::LeakyRelu { .. } => Activation::LeakyRelu { slope },
            other => other,
        },
        Some(ActivationName::Sigmoid) => Activation::Sigmoid,
        Some(ActivationName::Tanh) => Activation::Tanh,
        Some(ActivationName::Relu) => Activation::Relu,
        Some(ActivationName::LeakyRelu) => Activation::LeakyRelu { slope },
    };
    let concat = match &factors.concat_stages {
        None => preset.concat,
        Some(stages) => {
            let mut concat = [false; STAGES];
            for &stage in stages {
                if !CONCAT_STAGES.contains(&stage) {
                    return Err((
                        "concat_stages",
                        format!(
                            "cannot make stage {stage} a ConcatConv block: the block's 1024 \
                             output channels fit only stages 5 and 6"
                        ),
                    ));
                }
                concat[stage as usize - 1] = true;
            }
            concat
        }
    };
    let dropout = factors.dropout.unwrap_or(preset.dropout);
    if !(0.0..1.0).contains(&dropout) {
        return Err(("dropout", format!("must be in [0, 1), not {dropout}")));
    }
    Ok(CnnConfig {
        activation,
        batch_norm: factors.batch_norm.unwrap_or(preset.batch_norm),
        kernel: factors.kernel.unwrap_or(preset.kernel),
        concat,
        head: factors.head.unwrap_or(preset.head),
        dropout,
        dropout_impl: factors.dropout_impl.unwrap_or(preset.dropout_impl),
    })
}

/// The CNN family's factor values of `model` with `factors` applied, by factor key
/// (`activation`, `batch_norm`, `kernel`, `concat_stages`, `head`, `dropout`): what a seed
/// preset such as `cnn_leakyrelu` is made of. `None` for a model outside the family or
/// factors it refuses.
pub fn family_factor_values(
    model: &str,
    factors: &ModelFactors,
) -> Option<Vec<(&'static str, serde_json::Value)>> {
    let Kind::Family(preset) = &lookup(model).ok()?.kind else {
        return None;
    };
    let c = family_config(*preset, factors).ok()?;
    let activation = match c.activation {
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
        Activation::Relu => "relu",
        Activation::LeakyRelu { .. } => "leaky_relu",
    };
    let concat: Vec<u32> = (1..=STAGES as u32)
        .filter(|s| c.concat[*s as usize - 1])
        .collect();
    Some(vec![
        ("activation", activation.into()),
        ("batch_norm", c.batch_norm.into()),
        ("kernel", serde_json::to_value(c.kernel).ok()?),
        ("concat_stages", concat.into()),
        ("head", serde_json::to_value(c.head).ok()?),
        ("dropout", c.dropout.into()),
    ])
}
