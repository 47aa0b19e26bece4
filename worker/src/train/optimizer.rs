//! Optimizers we own, so that their state goes into checkpoints.

use ablate_common::spec::OptimizerKind;
use tch::Tensor;

/// Adam's fixed hyper-parameters (PyTorch's and Paddle's defaults).
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

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
        Optimizer {
            kind,
            momentum,
            weight_decay,
            params,
            slots,
            steps: 0,
        }
    }

    /// The parameters, in the optimizer's order.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Sets every parameter's gradient to zero.
    pub fn zero_grad(&mut self) {
        for (_, p) in self.params.iter_mut() {
            p.zero_grad();
        }
    }

    /// One update with learning rate `lr` from the parameters' current gradients.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        // A 0-dim CPU scalar broadcasts on any device: `p += v·(−lr)` in one fused pass.
        let neg_lr = Tensor::from(-lr as f32);
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter().enumerate() {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if self.weight_decay != 0.0 {
                    g = &g + p * self.weight_decay;
                }
                match self.kind {
                    OptimizerKind::Momentum => {
                        let v = &mut self.slots[0][i];
                        let _ = v.g_mul_scalar_(self.momentum);
                        let _ = v.g_add_(&g);
                        let mut p = p.shallow_clone();
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
                        let mut p = p.shallow_clone();
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
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<(), String> {
        let find = |key: &str| named.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        for (k, slot) in self.slots.iter_mut().enumerate() {
            for ((name, _), t) in self.params.iter().zip(slot.iter_mut()) {
                let key = format!("slot{k}.{name}");
                let saved = find(&key).ok_or_else(|| format!("missing optimizer state `{key}`"))?;
                if saved.size() != t.size() {
                    return Err(format!(
                        "optimizer state `{key}` has shape {:?}, the model needs {:?}",
                        saved.size(),
                        t.size()
                    ));
                }
                tch::no_grad(|| t.copy_(saved));
            }
        }
        let steps = find("steps").ok_or("missing optimizer state `steps`")?;
        self.steps = steps.int64_value(&[0]) as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            OptimizerKind::Momentum,
            0.9,
            0.01,
            vec![("p".into(), p.shallow_clone())],
        );
        for _ in 0..3 {
            opt.zero_grad();
            (&p * &p).sum(tch::Kind::Float).backward();
            opt.step(0.1);
        }
        let v = Vec::<f32>::try_from(&p).unwrap();
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
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = Optimizer::new(
            OptimizerKind::Adam,
            0.9,
            0.0,
            vec![("p".into(), p.shallow_clone())],
        );
        for _ in 0..3 {
            opt.zero_grad();
            (&p * &p).sum(tch::Kind::Float).backward();
            opt.step(0.1);
        }
        let v = Vec::<f32>::try_from(&p).unwrap();
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
        a.zero_grad();
        (&p * &p).sum(tch::Kind::Float).backward();
        a.step(0.1);
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
