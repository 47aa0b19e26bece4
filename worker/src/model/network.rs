//! The tch module of an architecture and its forward pass.

use ablate_common::arch::{Activation, DropoutImpl, PoolKind};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::leaky_relu::{leaky_relu, leaky_relu_};
use super::rng::ReplicaRng;

/// One built layer; containers hold built sub-sequences.
#[derive(Debug)]
pub(super) enum Node {
    /// `[N, C_in, H, W]` → `[N, C_out, H', W']`.
    Conv(nn::Conv2D),
    /// Batch norm over channels (`[N, C, H, W]`, 2-d) or features (`[N, F]`, 1-d).
    BatchNorm(nn::BatchNorm),
    /// Element-wise.
    Act(Activation),
    /// `[N, C, H, W]` → `[N, C, H', W']`, floor rounding.
    Pool {
        kind: PoolKind,
        kernel: i64,
        stride: i64,
        padding: i64,
    },
    /// `[N, C, H, W]` → `[N, C, 1, 1]`.
    GlobalAvgPool,
    /// `[N, C, H, W]` → `[N, C·H·W]`.
    Flatten,
    /// `[N, F_in]` → `[N, F_out]`.
    Linear(nn::Linear),
    /// Same shape.
    Dropout { p: f64, implementation: DropoutImpl },
    /// `[N, C_i, H, W]` per branch → `[N, ΣC_i, H, W]`.
    Concat(Vec<Vec<Node>>),
    /// `body(x) + shortcut(x)`, the shortcut empty for identity.
    Residual {
        body: Vec<Node>,
        shortcut: Vec<Node>,
    },
}

/// A model built from an [`Architecture`](ablate_common::arch::Architecture) by
/// [`try_build`](super::try_build).
///
/// # Shapes
/// Input `[N, channels, image_size, image_size]`, output `[N, classes]` logits.
/// `forward_t(xs, train)`: `train` switches batch norm (batch statistics, running averages
/// updated) and dropout on; BN needs more than one value per channel while training, so a
/// batch of one fails where a BN follows a global pool (GoogLeNet_BN).
///
/// Dropout draws its masks from the generator given to [`Network::set_rng`] (a training
/// replica's own), else from torch's global generator.
#[derive(Debug)]
pub struct Network {
    pub(super) layers: Vec<Node>,
    pub(super) rng: Option<ReplicaRng>,
}

impl Network {
    /// Dropout masks come from `rng` from now on (it must be on the model's device).
    pub fn set_rng(&mut self, rng: ReplicaRng) {
        self.rng = Some(rng);
    }
}

impl ModuleT for Network {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let pass = Pass {
            train,
            rng: self.rng.as_ref(),
        };
        forward_sequence(&self.layers, xs, pass)
    }
}

/// What a forward pass needs besides its input.
#[derive(Debug, Clone, Copy)]
struct Pass<'a> {
    /// Training mode (batch statistics, dropout on).
    train: bool,
    /// The replica's generator for dropout, else torch's global one.
    rng: Option<&'a ReplicaRng>,
}

/// Runs `nodes` in order on `xs`.
///
/// An activation overwrites its input in place when that input was made in this sequence by
/// a layer whose backward pass does not read its own output (conv, linear, BN, concat,
/// residual add): the input tensor, a branch's shared input, and outputs that autograd keeps
/// (activations, pooling, views, eval-mode dropout's identity) are never written.
fn forward_sequence(nodes: &[Node], xs: &Tensor, pass: Pass<'_>) -> Tensor {
    let mut out: Option<Tensor> = None;
    let mut writable = false;
    for node in nodes {
        if let (Node::Act(act), Some(t), true) = (node, out.as_mut(), writable) {
            if activate_in_place(t, *act) {
                writable = false;
                continue;
            }
        }
        let input = out.as_ref().unwrap_or(xs);
        let y = node.forward(input, pass);
        writable = matches!(
            node,
            Node::Conv(_)
                | Node::Linear(_)
                | Node::BatchNorm(_)
                | Node::Concat(_)
                | Node::Residual { .. }
        );
        out = Some(y);
    }
    out.unwrap_or_else(|| xs.shallow_clone())
}

impl Node {
    fn forward(&self, xs: &Tensor, pass: Pass<'_>) -> Tensor {
        let train = pass.train;
        match self {
            Node::Conv(conv) => conv.forward(xs),
            Node::BatchNorm(bn) => bn.forward_t(xs, train),
            Node::Act(act) => activate(xs, *act),
            Node::Pool {
                kind,
                kernel,
                stride,
                padding,
            } => {
                let (k, s, p) = ([*kernel; 2], [*stride; 2], [*padding; 2]);
                match kind {
                    PoolKind::Max => max_pool(xs, k, s, p),
                    // Padding excluded from the average (Paddle's `exclusive=True`).
                    PoolKind::Avg => xs.avg_pool2d(k, s, p, false, false, None::<i64>),
                }
            }
            Node::GlobalAvgPool => xs.adaptive_avg_pool2d([1, 1]),
            Node::Flatten => xs.flatten(1, -1),
            Node::Linear(linear) => linear.forward(xs),
            Node::Dropout { p, implementation } => dropout(xs, *p, *implementation, pass),
            Node::Concat(branches) => {
                let outs: Vec<Tensor> = branches
                    .iter()
                    .map(|branch| forward_sequence(branch, xs, pass))
                    .collect();
                Tensor::cat(&outs, 1)
            }
            Node::Residual { body, shortcut } => {
                let main = forward_sequence(body, xs, pass);
                if shortcut.is_empty() {
                    main + xs
                } else {
                    main + forward_sequence(shortcut, xs, pass)
                }
            }
        }
    }
}

/// Max pooling with floor rounding and no dilation.
///
/// On the CPU, PyTorch's NCHW max-pool kernel is several times slower than its channels-last
/// one (15 ms against 1.4 ms for ResNet's stem pool at 64², batch 32), and its backward is
/// slower still. So the arg-max comes from the channels-last kernel, outside autograd, and the
/// values are gathered from `xs` at those positions. Gather's backward scatters each gradient
/// to the same position max-pool's backward does, so values and gradients are bit-for-bit
/// those of `max_pool2d` (a test checks ties and padding), at 1.4–2.4× the speed of forward
/// plus backward. Other devices use the plain kernel.
fn max_pool(xs: &Tensor, kernel: [i64; 2], stride: [i64; 2], padding: [i64; 2]) -> Tensor {
    if xs.device() != tch::Device::Cpu || xs.dim() != 4 {
        return xs.max_pool2d(kernel, stride, padding, [1, 1], false);
    }
    let (values, indices) = tch::no_grad(|| {
        // An NCHW-shaped tensor with NHWC strides: the channels-last layout.
        let channels_last = xs.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
        channels_last.max_pool2d_with_indices(kernel, stride, padding, [1, 1], false)
    });
    if !xs.requires_grad() {
        return values.contiguous();
    }
    let out_shape = indices.size();
    let indices = indices.contiguous().flatten(2, -1);
    xs.flatten(2, -1)
        .gather(2, &indices, false)
        .view(out_shape.as_slice())
}

/// `act(xs)` into a new tensor.
fn activate(xs: &Tensor, act: Activation) -> Tensor {
    match act {
        Activation::Sigmoid => xs.sigmoid(),
        Activation::Tanh => xs.tanh(),
        Activation::Relu => xs.relu(),
        Activation::LeakyRelu { slope } => leaky_relu(xs, slope),
    }
}

/// `act` applied to `xs` in place where tch has an in-place kernel; false otherwise.
fn activate_in_place(xs: &mut Tensor, act: Activation) -> bool {
    match act {
        Activation::Sigmoid => {
            let _ = xs.sigmoid_();
        }
        Activation::Tanh => {
            let _ = xs.tanh_();
        }
        Activation::Relu => {
            let _ = xs.relu_();
        }
        // Backward from the output needs the output's sign to be the input's.
        Activation::LeakyRelu { slope } if slope >= 0.0 => leaky_relu_(xs, slope),
        Activation::LeakyRelu { .. } => return false,
    }
    true
}

/// Dropout with probability `p`.
///
/// Paddle 1.x (`downgrade_in_infer`): training keeps each value with probability 1 − p and
/// does not rescale; eval multiplies by 1 − p. PyTorch: inverted dropout (kept values scaled
/// by 1/(1 − p)), identity at eval. The mask comes from the pass's generator when there is
/// one, else from torch's global generator (`tch::manual_seed`).
fn dropout(xs: &Tensor, p: f64, implementation: DropoutImpl, pass: Pass<'_>) -> Tensor {
    if p == 0.0 {
        return xs.shallow_clone();
    }
    let keep_mask = || {
        let mut keep = xs.empty_like();
        match pass.rng {
            Some(rng) => rng.bernoulli_(&mut keep, 1.0 - p),
            None => {
                let _ = keep.bernoulli_float_(1.0 - p);
            }
        }
        keep
    };
    match (implementation, pass.train) {
        (DropoutImpl::Paddle, true) => xs * keep_mask(),
        (DropoutImpl::Paddle, false) => xs * (1.0 - p),
        (DropoutImpl::Torch, true) if pass.rng.is_some() => xs * (keep_mask() / (1.0 - p)),
        (DropoutImpl::Torch, _) => xs.dropout(p, pass.train),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// The gathered max pool equals `max_pool2d` bit for bit, in values and in gradients,
    /// with ties (ReLU zeros, repeated values) and with padding.
    #[test]
    fn gathered_max_pool_equals_torch_max_pool() {
        tch::manual_seed(7);
        let cases = [
            ([2, 3, 9, 9], 3, 2, 1),
            ([2, 4, 8, 8], 2, 2, 0),
            ([1, 5, 11, 7], 3, 2, 0),
            ([3, 2, 6, 6], 3, 1, 1),
        ];
        for (shape, k, s, p) in cases {
            // Rounded and rectified: many equal values, so tie-breaking is exercised.
            let base = (Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)) * 2.0)
                .round()
                .relu();
            let ours_in = base.copy().set_requires_grad(true);
            let torch_in = base.copy().set_requires_grad(true);
            let ours = max_pool(&ours_in, [k; 2], [s; 2], [p; 2]);
            let theirs = torch_in.max_pool2d([k; 2], [s; 2], [p; 2], [1, 1], false);
            assert_eq!(ours.size(), theirs.size(), "{shape:?} k{k} s{s} p{p}");
            assert!(
                ours.equal(&theirs),
                "values differ for {shape:?} k{k} s{s} p{p}"
            );
            let upstream = Tensor::randn(ours.size(), (Kind::Float, tch::Device::Cpu));
            let g_ours = Tensor::run_backward(
                &[(&ours * &upstream).sum(Kind::Float)],
                &[&ours_in],
                false,
                false,
            );
            let g_theirs = Tensor::run_backward(
                &[(&theirs * &upstream).sum(Kind::Float)],
                &[&torch_in],
                false,
                false,
            );
            assert!(
                g_ours[0].equal(&g_theirs[0]),
                "gradients differ for {shape:?} k{k} s{s} p{p}"
            );
            let eval = tch::no_grad(|| max_pool(&base, [k; 2], [s; 2], [p; 2]));
            assert!(
                eval.equal(&theirs.detach()),
                "no-grad values differ for {shape:?}"
            );
        }
    }
}
