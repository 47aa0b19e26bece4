//! When an epoch's checkpoint is written. Writing one stops training for as long as the
//! write takes (about 2 s for VGG-16's 1 GB), which on a GPU can be longer than the epoch
//! itself. A checkpoint is therefore written at the first epoch (to learn what one costs),
//! at the last, and otherwise once training has run for at least [`TRAIN_PER_SAVE`] times
//! the last write's duration since the last one: checkpointing then takes at most 1 part in
//! `TRAIN_PER_SAVE + 1` (5 %) of the run, and a lost attempt repeats at most that much
//! training. Where writes are cheap against epochs (the CPU), every epoch is checkpointed.

use std::time::Duration;

/// Training time per unit of checkpoint-writing time, at least, between two checkpoints.
pub const TRAIN_PER_SAVE: u32 = 19;

/// Decides, epoch by epoch, whether to write a checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointPacer {
    last_epoch: u32,
    saved_epoch: u32,
    last_write: Option<Duration>,
    trained_since: Duration,
}

impl CheckpointPacer {
    /// A pacer for a run of `epochs` epochs that (re)starts with `start_epoch` epochs
    /// already in its checkpoint.
    pub fn new(epochs: u32, start_epoch: u32) -> CheckpointPacer {
        CheckpointPacer {
            last_epoch: epochs,
            saved_epoch: start_epoch,
            last_write: None,
            trained_since: Duration::ZERO,
        }
    }

    /// Epoch `epoch` (1-based) finished after `took` of training and evaluation: whether
    /// its checkpoint is due.
    pub fn due(&mut self, epoch: u32, took: Duration) -> bool {
        self.trained_since += took;
        match self.last_write {
            _ if epoch >= self.last_epoch => true,
            None => true,
            Some(write) => self.trained_since >= write * TRAIN_PER_SAVE,
        }
    }

    /// The checkpoint of `epoch` was written in `took`.
    pub fn written(&mut self, epoch: u32, took: Duration) {
        self.saved_epoch = epoch;
        self.last_write = Some(took);
        self.trained_since = Duration::ZERO;
    }

    /// Epochs in the newest checkpoint.
    pub fn saved_epoch(&self) -> u32 {
        self.saved_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn cheap_writes_checkpoint_every_epoch() {
        let mut p = CheckpointPacer::new(5, 0);
        for epoch in 1..=5 {
            assert!(p.due(epoch, 60 * S), "epoch {epoch}");
            p.written(epoch, S);
        }
        assert_eq!(p.saved_epoch(), 5);
    }

    #[test]
    fn costly_writes_are_spaced_to_a_twentieth_of_the_time() {
        // Epochs of 1 s, writes of 2 s: a checkpoint every 38 s of training.
        let mut p = CheckpointPacer::new(100, 0);
        let mut written = Vec::new();
        for epoch in 1..=100 {
            if p.due(epoch, S) {
                p.written(epoch, 2 * S);
                written.push(epoch);
            }
        }
        assert_eq!(written, vec![1, 39, 77, 100]);
        assert_eq!(p.saved_epoch(), 100);
    }

    #[test]
    fn the_last_epoch_is_always_written_and_a_resume_keeps_its_epoch() {
        let mut p = CheckpointPacer::new(3, 2);
        assert_eq!(p.saved_epoch(), 2);
        assert!(p.due(3, Duration::ZERO));
        let mut p = CheckpointPacer::new(10, 0);
        assert!(p.due(1, S));
        p.written(1, 100 * S);
        assert!(!p.due(2, S));
        assert_eq!(p.saved_epoch(), 1, "a stop now resumes from epoch 1");
    }
}
