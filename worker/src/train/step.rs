//! One training step's forward and backward pass, shared by the epoch loop and
//! `ablate-worker bench`, so the benchmark times exactly the engine's step.

use tch::nn::ModuleT;
use tch::{Kind, Tensor};

use super::precision;
use crate::model::Network;

/// What a forward and backward pass on one batch leaves.
#[derive(Debug)]
pub struct StepOutput {
    /// `[N, classes]` logits, float32.
    pub logits: Tensor,
    /// The dtype the model computed its logits in (bfloat16 under autocast).
    pub compute_kind: Kind,
    /// The batch's mean cross-entropy (0-dim, still on the device).
    pub loss: Tensor,
    /// One gradient per parameter, in the order of the `params` given.
    pub grads: Vec<Tensor>,
}

/// Forward in train mode, mean cross-entropy, and the gradient of every parameter;
/// `autocast` is the CUDA autocast dtype ([`precision::autocast_kind`]), `None` for float32.
///
/// The gradients are returned by the autograd engine rather than accumulated into each
/// parameter's `.grad`: nothing has to be zeroed before the step and nothing is added into an
/// old buffer, which saves two passes over every gradient per step. A parameter the loss does
/// not reach gets a zero gradient, so every replica's gradient list has the same layout.
pub fn forward_backward(
    net: &Network,
    params: &[Tensor],
    images: &Tensor,
    labels: &Tensor,
    autocast: Option<Kind>,
) -> Result<StepOutput, tch::TchError> {
    let raw = precision::with_cuda_autocast(autocast, || net.forward_t(images, true));
    let compute_kind = raw.kind();
    let logits = raw.f_to_kind(Kind::Float)?;
    let loss = logits.cross_entropy_for_logits(labels);
    let grads = Tensor::f_run_backward(&[&loss], params, false, false)?
        .into_iter()
        .zip(params)
        .map(|(g, p)| if g.defined() { g } else { p.zeros_like() })
        .collect();
    Ok(StepOutput {
        logits,
        compute_kind,
        loss,
        grads,
    })
}
