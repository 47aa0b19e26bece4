//! Metric records shared by the worker (which produces them) and the coordinator (which
//! stores and reports them).

use serde::{Deserialize, Serialize};

/// Metrics of one finished epoch. Accuracies are fractions in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean cross-entropy over the epoch's training batches.
    pub train_loss: f64,
    /// Training accuracy over the epoch (train mode, as the batches went by).
    pub train_acc: f64,
    /// Mean cross-entropy on the eval split (eval mode).
    pub eval_loss: f64,
    /// Accuracy on the eval split (eval mode).
    pub eval_acc: f64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Wall time of the epoch (train and eval), seconds.
    pub seconds: f64,
    /// Training throughput, images per second.
    pub images_per_sec: f64,
}

/// One sampled training step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Global step counter since the run began (0-based).
    pub step: u64,
    /// Mini-batch loss.
    pub loss: f64,
}
