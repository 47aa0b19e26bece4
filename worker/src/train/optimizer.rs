//! Optimizers we own, so that their state goes into checkpoints.

use ablate_common::spec::OptimizerKind;
use tch::Tensor;

/// Adam's fixed hyper-parameters (PyTorch's and Paddle's defaults).
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// A checkpoint's optimizer state that does not fit the optimizer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptimizerStateError {
    /// A slot of a parameter, or the step count, is not in the state.
    #[error("missing optimizer state `{0}`")]
    Missing(String),
    /// A slot has another shape than its parameter.
    #[error("optimizer state `{key}` has shape {saved:?}, the model needs {needed:?}")]
    Shape {
        /// The slot's name (`slot<k>.<param>`).
        key: String,
        /// Its shape in the state.
        saved: Vec<i64>,
        /// The parameter's shape.
        needed: Vec<i64>,
    },
}

/// A first-order optimizer over a fixed, named list of parameters.
///
/// Momentum is Paddle's: `v = μ·v + g; p -= lr·v` (no dampening, no Nesterov), which equals
/// PyTorch's SGD with momentum. L2 weight decay is added to the gradient (`g + wd·p`), as
/// Paddle's `L2Decay` regularizer does.
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    momentum: f64,
    weight_decay: f64,
    params: Vec<(String, Tensor)>,
    /// The same tensors without names, as autograd takes them.
    tensors: Vec<Tensor>,
    /// Momentum: one velocity per parameter. Adam: first then second moments.
    slots: Vec<Vec<Tensor>>,
    steps: u64,
}

impl Optimizer {
    /// An optimizer over `params` (name, tensor), ordered by name for a stable layout.
    pub fn new(
        kind: OptimizerKind,
        momentum: f64,
        weight_decay: f64,
        mut params: Vec<(String, Tensor)>,
    ) -> Self {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let slot_count = match kind {
            OptimizerKind::Momentum => 1,
            OptimizerKind::Adam => 2,
        };
        let slots = (0..slot_count)
            .map(|_| params.iter().map(|(_, p)| p.zeros_like()).collect())
            .collect();
        let tensors = params.iter().map(|(_, p)| p.shallow_clone()).collect();
        Optimizer {
            kind,
            momentum,
            weight_decay,
            params,
            tensors,
            slots,
            steps: 0,
        }
    }

    /// The parameter tensors, in the optimizer's order: the order [`Optimizer::step`] takes
    /// gradients in.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// One update with learning rate `lr`; `grads[i]` is the gradient of `tensors()[i]`.
    ///
    /// The gradients are the caller's, so weight decay is added into them in place.
    pub fn step(&mut self, lr: f64, grads: &[Tensor]) {
        assert_eq!(
            grads.len(),
            self.tensors.len(),
            "one gradient per parameter"
        );
        self.steps += 1;
        // 0-dim CPU scalars broadcast on any device and let `addcmul` fuse a scaled add into
        // one pass: `out = a + b·s`.
        let neg_lr = Tensor::from(-lr as f32);
        let momentum = Tensor::from(self.momentum as f32);
        let weight_decay = Tensor::from(self.weight_decay as f32);
        tch::no_grad(|| {
            for (i, (p, g)) in self.tensors.iter().zip(grads).enumerate() {
                let mut p = p.shallow_clone();
                let mut g = g.shallow_clone();
                if self.weight_decay != 0.0 {
                    let _ = g.addcmul_(&p, &weight_decay);
                }
                match self.kind {
                    OptimizerKind::Momentum => {
                        // v = g + μ·v, then p += −lr·v: two passes where mul_, add_ and a
                        // scaled add take three.
                        let v = &self.slots[0][i];
                        let _ = g.addcmul_out(v, v, &momentum);
                        let _ = p.addcmul_(v, &neg_lr);
                    }
                    OptimizerKind::Adam => {
                        let t = self.steps as f64;
                        let (first, second) = self.slots.split_at_mut(1);
                        let m = &mut first[0][i];
                        let v = &mut second[0][i];
                        let _ = m.g_mul_scalar_(ADAM_BETA1);
                        let _ = m.g_add_(&(&g * (1.0 - ADAM_BETA1)));
                        let _ = v.g_mul_scalar_(ADAM_BETA2);
                        let _ = v.g_add_(&(&g * &g * (1.0 - ADAM_BETA2)));
                        let step = lr / (1.0 - ADAM_BETA1.powf(t));
                        let denom = (&*v / (1.0 - ADAM_BETA2.powf(t))).sqrt() + ADAM_EPS;
                        let _ = p.g_sub_(&(&*m / denom * step));
                    }
                }
            }
        });
    }

    /// The state as named tensors (for checkpoints): `slot<k>.<param>` and `steps`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (k, slot) in self.slots.iter().enumerate() {
            for ((name, _), t) in self.params.iter().zip(slot) {
                out.push((format!("slot{k}.{name}"), t.shallow_clone()));
            }
        }
        out.push(("steps".into(), Tensor::from_slice(&[self.steps as i64])));
        out
    }

    /// Restores [`Optimizer::state`] output; every slot of every parameter must be present.
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<(), OptimizerStateError> {
        let find = |key: &str| named.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        for (k, slot) in self.slots.iter_mut().enumerate() {
            for ((name, _), t) in self.params.iter().zip(slot.iter_mut()) {
                let key = format!("slot{k}.{name}");
                let Some(saved) = find(&key) else {
                    return Err(OptimizerStateError::Missing(key));
                };
                if saved.size() != t.size() {
                    return Err(OptimizerStateError::Shape {
                        key,
                        saved: saved.size(),
                        needed: t.size(),
                    });
                }
                tch::no_grad(|| t.copy_(saved));
            }
        }
        let steps = find("steps").ok_or_else(|| OptimizerStateError::Missing("steps".into()))?;
        self.steps = steps.int64_value(&[0]) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `p = [1, -2]` after three steps of lr 0.1 (momentum 0.9) on `sum(p * p)`.
    fn three_steps_on_p_squared(kind: OptimizerKind, weight_decay: f64) -> Vec<f32> {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            kind,
            0.9,
            weight_decay,
            vec![("p".into(), p.shallow_clone())],
        );
        for _ in 0..3 {
            let grads =
                Tensor::run_backward(&[(&p * &p).sum(tch::Kind::Float)], &[&p], false, false);
            opt.step(0.1, &grads);
        }
        Vec::<f32>::try_from(&p).unwrap()
    }

    /// Expected values from PyTorch 2.11:
    /// ```python
    /// p = torch.tensor([1.0, -2.0], requires_grad=True)
    /// opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    /// for _ in range(3):
    ///     opt.zero_grad(); (p * p).sum().backward(); opt.step()
    /// print(p)  # [ 0.05819422 -0.11638844]
    /// ```
    #[test]
    fn momentum_matches_torch_sgd() {
        let v = three_steps_on_p_squared(OptimizerKind::Momentum, 0.01);
        assert!(
            (v[0] - 0.058_194_22).abs() < 1e-6 && (v[1] + 0.116_388_44).abs() < 1e-6,
            "{v:?}"
        );
    }

    /// ```python
    /// p = torch.tensor([1.0, -2.0], requires_grad=True)
    /// opt = torch.optim.Adam([p], lr=0.1)
    /// for _ in range(3):
    ///     opt.zero_grad(); (p * p).sum().backward(); opt.step()
    /// print(p)  # [ 0.7015863 -1.7006234]
    /// ```
    #[test]
    fn adam_matches_torch() {
        let v = three_steps_on_p_squared(OptimizerKind::Adam, 0.0);
        assert!(
            (v[0] - 0.701_586_3).abs() < 1e-5 && (v[1] + 1.700_623_4).abs() < 1e-5,
            "{v:?}"
        );
    }

    #[test]
    fn state_round_trips() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut a = Optimizer::new(
            OptimizerKind::Adam,
            0.9,
            0.0,
            vec![("p".into(), p.shallow_clone())],
        );
        let grads = Tensor::run_backward(&[(&p * &p).sum(tch::Kind::Float)], &[&p], false, false);
        a.step(0.1, &grads);
        let q = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let mut b = Optimizer::new(OptimizerKind::Adam, 0.9, 0.0, vec![("p".into(), q)]);
        b.load_state(&a.state()).unwrap();
        assert_eq!(b.steps, 1);
        assert_eq!(
            Vec::<f32>::try_from(&b.slots[1][0]).unwrap(),
            Vec::<f32>::try_from(&a.slots[1][0]).unwrap()
        );
    }
}
