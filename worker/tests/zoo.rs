//! The whole catalogue as tch modules: parameter counts agree with the analysis, forward and
//! backward passes give `[N, classes]` logits in train and eval mode; dropout, leaky relu and
//! initialisation follow the Paddle / PyTorch semantics.

use ablate_common::arch::{
    analyse, Activation, Architecture, DropoutImpl, InitScheme, Layer, PoolKind,
};
use ablate_common::spec::ModelFactors;
use ablate_common::zoo;
use ablate_worker::model::{try_build, Network};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

const CLASSES: usize = 16;
const BATCH: i64 = 2;

/// The model of an architecture the test expects to run.
fn build(vs: &nn::Path, arch: &Architecture) -> Network {
    try_build(vs, arch).unwrap_or_else(|e| panic!("architecture `{}` cannot run: {e}", arch.name))
}

/// One intra-op thread per test: the tests run side by side on two shared cores, where
/// torch's thread pool spins and runs several times slower.
fn one_thread() {
    tch::set_num_threads(1);
}

fn trainable(vs: &nn::VarStore) -> u64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as u64)
        .sum()
}

/// Builds `arch`, compares the parameter count with the analysis, and runs a batch through
/// it in train mode (with a backward pass when `backward`) and in eval mode.
fn check(arch: &Architecture, backward: bool) {
    let what = format!("{} at {}", arch.name, arch.image_size);
    let analysis = analyse(arch).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), arch);
    assert_eq!(
        trainable(&vs),
        analysis.params,
        "{what}: trainable parameters"
    );
    let size = arch.image_size as i64;
    let xs = Tensor::randn(
        [BATCH, arch.channels as i64, size, size],
        (Kind::Float, Device::Cpu),
    );
    let expected = [BATCH, CLASSES as i64];

    let train = net.forward_t(&xs, true);
    assert_eq!(train.size(), expected, "{what}: train logits");
    assert!(
        bool::try_from(train.isfinite().all()).unwrap(),
        "{what}: train logits finite"
    );
    if backward {
        // Autograd refuses in-place writes to tensors it saved: this proves the forward
        // pass's in-place activations safe for every model.
        train.square().mean(Kind::Float).backward();
        let grads = vs
            .trainable_variables()
            .iter()
            .filter(|v| v.grad().defined())
            .count();
        assert_eq!(
            grads,
            vs.trainable_variables().len(),
            "{what}: every parameter has a gradient"
        );
    }
    let eval = tch::no_grad(|| net.forward_t(&xs, false));
    assert_eq!(eval.size(), expected, "{what}: eval logits");
    assert!(
        bool::try_from(eval.isfinite().all()).unwrap(),
        "{what}: eval logits finite"
    );
}

fn seed_model(name: &str, size: usize) -> Architecture {
    zoo::build(name, &ModelFactors::default(), 3, size, CLASSES).unwrap()
}

#[test]
fn every_model_at_its_smallest_size() {
    one_thread();
    tch::manual_seed(0);
    for name in zoo::names() {
        let min = zoo::min_image_size(name, &ModelFactors::default(), 3, CLASSES).unwrap();
        check(&seed_model(name, min), true);
    }
}

#[test]
fn cheap_models_at_224() {
    one_thread();
    tch::manual_seed(0);
    for name in [
        "lenet",
        "alexnet",
        "googlenet_bn",
        "cnn_alltricks",
        "resnet18",
    ] {
        check(&seed_model(name, 224), false);
    }
}

#[test]
fn grayscale_and_factor_overrides_build() {
    one_thread();
    let factors = ModelFactors {
        activation: Some(ablate_common::spec::ActivationName::Tanh),
        kernel: Some(ablate_common::spec::KernelKind::TwoK3),
        concat_stages: Some(vec![5, 6]),
        head: Some(ablate_common::spec::HeadKind::Gap),
        dropout: Some(0.2),
        dropout_impl: Some(DropoutImpl::Torch),
        init: Some(InitScheme::Torch),
        ..ModelFactors::default()
    };
    let arch = zoo::build("cnn", &factors, 1, 32, CLASSES).unwrap();
    check(&arch, true);
}

/// `[N, features]` → the same, through `layers` (classes = features, so it is a valid model).
fn vector_model(features: usize, layers: Vec<Layer>, init: InitScheme) -> Architecture {
    Architecture {
        name: "probe".into(),
        channels: 1,
        image_size: (features as f64).sqrt() as usize,
        classes: features,
        layers: [vec![Layer::Flatten], layers].concat(),
        init,
    }
}

fn dropout_model(p: f64, implementation: DropoutImpl) -> Architecture {
    vector_model(
        10_000,
        vec![Layer::Dropout { p, implementation }],
        InitScheme::Paddle,
    )
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

#[test]
fn paddle_dropout_keeps_scale_in_training_and_downgrades_at_eval() {
    one_thread();
    let p = 0.25;
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &dropout_model(p, DropoutImpl::Paddle));
    let ones = Tensor::ones([1, 1, 100, 100], (Kind::Float, Device::Cpu));

    tch::manual_seed(7);
    let a = values(&net.forward_t(&ones, true));
    // No rescaling while training: every value is 0 or 1, about p of them 0.
    assert!(a.iter().all(|&v| v == 0.0 || v == 1.0));
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
    assert!((dropped - p).abs() < 0.02, "dropped {dropped}");
    // The mask comes from torch's generator.
    tch::manual_seed(7);
    assert_eq!(values(&net.forward_t(&ones, true)), a);
    tch::manual_seed(8);
    assert_ne!(values(&net.forward_t(&ones, true)), a);
    // Eval: × (1 − p).
    let eval = values(&net.forward_t(&ones, false));
    assert!(eval.iter().all(|&v| (v - 0.75).abs() < 1e-6));
}

#[test]
fn torch_dropout_rescales_in_training_and_is_identity_at_eval() {
    one_thread();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &dropout_model(0.5, DropoutImpl::Torch));
    let ones = Tensor::ones([1, 1, 100, 100], (Kind::Float, Device::Cpu));
    tch::manual_seed(7);
    let train = values(&net.forward_t(&ones, true));
    assert!(train.iter().all(|&v| v == 0.0 || v == 2.0));
    assert!(train.contains(&0.0) && train.contains(&2.0));
    assert!(values(&net.forward_t(&ones, false))
        .iter()
        .all(|&v| v == 1.0));
}

#[test]
fn leaky_relu_uses_the_given_slope() {
    one_thread();
    for slope in [0.02, 1.5] {
        let arch = vector_model(
            4,
            vec![Layer::Act(Activation::LeakyRelu { slope })],
            InitScheme::Paddle,
        );
        let vs = nn::VarStore::new(Device::Cpu);
        let net = build(&vs.root(), &arch);
        let xs = Tensor::from_slice(&[-1.0f32, -0.5, 0.0, 2.0]).reshape([1, 1, 2, 2]);
        let expected = [-slope as f32, -0.5 * slope as f32, 0.0, 2.0];
        let got = values(&net.forward_t(&xs, false));
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "slope {slope}: {got:?}");
        }
    }
}

#[test]
fn in_place_activations_leave_the_input_alone() {
    one_thread();
    // An activation first, on the network input, and in two concat branches that share it.
    let arch = Architecture {
        name: "probe".into(),
        channels: 2,
        image_size: 3,
        classes: 4 * 9,
        layers: vec![
            Layer::Act(Activation::Relu),
            Layer::Concat(vec![
                vec![Layer::Act(Activation::Sigmoid)],
                vec![Layer::Act(Activation::Tanh)],
            ]),
            Layer::Flatten,
        ],
        init: InitScheme::Paddle,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &arch);
    let xs = Tensor::randn([1, 2, 3, 3], (Kind::Float, Device::Cpu));
    let before = xs.copy();
    let out = net.forward_t(&xs, true).reshape([1, 4, 3, 3]);
    assert!(xs.equal(&before));
    let relu = before.relu();
    assert!(out
        .narrow(1, 0, 2)
        .allclose(&relu.sigmoid(), 1e-6, 1e-6, false));
    assert!(out
        .narrow(1, 2, 2)
        .allclose(&relu.tanh(), 1e-6, 1e-6, false));
}

#[test]
fn invalid_architectures_are_refused_before_any_variable() {
    one_thread();
    let arch = Architecture {
        name: "broken".into(),
        channels: 3,
        image_size: 8,
        classes: 10,
        layers: vec![Layer::Linear { out: 10 }],
        init: InitScheme::Paddle,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let err = try_build(&vs.root(), &arch).unwrap_err();
    assert!(err.to_string().contains("flatten first"), "{err}");
    assert!(vs.variables().is_empty());
}

/// Mean and standard deviation of a tensor's values.
fn moments(t: &Tensor) -> (f64, f64) {
    let t = t.to_kind(Kind::Double);
    (
        t.mean(Kind::Double).double_value(&[]),
        t.std(true).double_value(&[]),
    )
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

/// A small family member with convs, BN and both kinds of linear layer.
fn init_probe(init: InitScheme) -> nn::VarStore {
    let factors = ModelFactors {
        init: Some(init),
        ..ModelFactors::default()
    };
    let arch = zoo::build("cnn", &factors, 3, 32, CLASSES).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(1);
    let _net = build(&vs.root(), &arch);
    vs
}

#[test]
fn paddle_init_statistics() {
    one_thread();
    let vs = init_probe(InitScheme::Paddle);
    let vars = vs.variables();
    let mut convs = 0;
    for (name, t) in &vars {
        let size = t.size();
        if name.ends_with(".weight") && size.len() == 4 {
            // Normal(0, √(2 / (k²·C_in))).
            let fan_in = (size[1] * size[2] * size[3]) as f64;
            let (mean, std) = moments(t);
            let want = (2.0 / fan_in).sqrt();
            assert!(
                (std / want - 1.0).abs() < 0.05,
                "{name}: std {std}, want {want}"
            );
            assert!(mean.abs() < 0.05 * want, "{name}: mean {mean}");
            convs += 1;
        } else if name.ends_with(".weight") && size.len() == 2 {
            // Xavier-uniform: ±√(6 / (in + out)), std bound/√3.
            let bound = (6.0 / (size[0] + size[1]) as f64).sqrt();
            let (_, std) = moments(t);
            assert!(max_abs(t) <= bound * (1.0 + 1e-6), "{name}");
            assert!(
                (std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.05,
                "{name}: std {std}"
            );
        } else if name.ends_with(".bias") {
            assert_eq!(max_abs(t), 0.0, "{name}: Paddle biases start at 0");
        }
    }
    assert_eq!(convs, 6);
    check_batch_norm(&vars);
}

#[test]
fn torch_init_statistics() {
    one_thread();
    let vs = init_probe(InitScheme::Torch);
    let vars = vs.variables();
    for (name, t) in &vars {
        let size = t.size();
        let fan_in = match size.len() {
            4 => (size[1] * size[2] * size[3]) as f64,
            2 => size[1] as f64,
            _ => continue,
        };
        // kaiming_uniform_(a = √5): Uniform(±1/√fan_in); biases the same bound.
        let bound = 1.0 / fan_in.sqrt();
        let (_, std) = moments(t);
        // Values are f32: allow the rounding of the bound.
        let bound = bound * (1.0 + 1e-6);
        assert!(max_abs(t) <= bound, "{name}");
        assert!(
            (std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.1,
            "{name}: std {std}"
        );
        let bias = &vars[&name.replace(".weight", ".bias")];
        assert!(
            max_abs(bias) <= bound && max_abs(bias) > 0.0,
            "{name}: bias"
        );
    }
    check_batch_norm(&vars);
}

/// BN starts at weight 1, bias 0, running mean 0, running variance 1; running statistics
/// are not trainable.
fn check_batch_norm(vars: &std::collections::HashMap<String, Tensor>) {
    let mut bns = 0;
    for (name, mean) in vars.iter().filter(|(n, _)| n.ends_with(".running_mean")) {
        let prefix = name.trim_end_matches("running_mean");
        let get = |s: &str| &vars[&format!("{prefix}{s}")];
        assert!(!mean.requires_grad() && !get("running_var").requires_grad());
        assert_eq!(max_abs(mean), 0.0);
        assert_eq!(max_abs(&(get("running_var") - 1.0)), 0.0);
        assert_eq!(max_abs(&(get("weight") - 1.0)), 0.0, "{prefix}weight");
        assert_eq!(max_abs(get("bias")), 0.0, "{prefix}bias");
        bns += 1;
    }
    assert_eq!(bns, 6);
}

#[test]
fn batch_norm_follows_paddle_momentum_and_the_input_rank() {
    one_thread();
    // BN on a vector (1-d) and on a map (2-d); one train step moves the running mean by
    // 0.1 of the batch mean.
    let arch = Architecture {
        name: "probe".into(),
        channels: 1,
        image_size: 2,
        classes: 4,
        layers: vec![
            Layer::BatchNorm,
            Layer::pool(PoolKind::Avg, 1, 1, 0),
            Layer::Flatten,
            Layer::BatchNorm,
        ],
        init: InitScheme::Paddle,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root(), &arch);
    let xs = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).reshape([2, 1, 2, 2]);
    let _ = net.forward_t(&xs, true);
    let vars = vs.variables();
    let mean2d = vars["0.running_mean"].double_value(&[0]);
    assert!((mean2d - 0.1 * 4.5).abs() < 1e-6, "{mean2d}");
    assert_eq!(vars["3.running_mean"].size(), [4]);
}
