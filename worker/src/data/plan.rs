//! An epoch's order and its division into global batches and replica shards.
//!
//! The order is a permutation drawn from (seed, epoch) when shuffling; global batch `k` is
//! `order[k·B .. (k+1)·B]`; replica `rank` of `world` takes its contiguous share of each
//! global batch (`[rank·m/world, (rank+1)·m/world)` of a batch of `m`, so shares differ by
//! at most one). Every replica therefore takes the same number of steps, and the shares of
//! all replicas cover the epoch exactly once. Only the splitmix64 generator below is used,
//! so orders and jitter are the same on every machine and every build.

use super::error::DataError;
use super::transform::Jitter;

/// What one replica's stream of one epoch looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// 0-based epoch: with `seed`, it picks the order and the jitter.
    pub epoch: u32,
    /// The run's seed.
    pub seed: u64,
    /// Global batch size (all replicas together).
    pub batch_size: usize,
    /// This replica, `0..world`.
    pub rank: usize,
    /// Number of data-parallel replicas.
    pub world: usize,
    /// Shuffle the order (train); else the split's order (eval).
    pub shuffle: bool,
    /// Apply the spec's augmentation (train only).
    pub augment: bool,
    /// A final global batch with fewer samples is dropped; the effective minimum is at
    /// least `world`, so that no replica ever gets an empty batch.
    pub min_last_batch: usize,
}

impl BatchOptions {
    /// One replica, the split's order, no augmentation, no sample dropped.
    pub fn sequential(batch_size: usize) -> BatchOptions {
        BatchOptions {
            epoch: 0,
            seed: 0,
            batch_size,
            rank: 0,
            world: 1,
            shuffle: false,
            augment: false,
            min_last_batch: 1,
        }
    }

    fn check(&self) -> Result<(), DataError> {
        if self.world == 0 || self.rank >= self.world {
            return Err(DataError::Options(format!(
                "rank {} of world {}",
                self.rank, self.world
            )));
        }
        if self.batch_size < self.world {
            return Err(DataError::Options(format!(
                "global batch {} is smaller than the {} replicas",
                self.batch_size, self.world
            )));
        }
        Ok(())
    }

    /// Global batches of an epoch over `len` samples.
    fn global_batches(&self, len: usize) -> usize {
        let full = len / self.batch_size;
        let rest = len % self.batch_size;
        let minimum = self.min_last_batch.max(self.world).max(1);
        full + usize::from(rest > 0 && rest >= minimum)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed, portable generator.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of several words (each mixed through splitmix64).
fn mix(words: &[u64]) -> u64 {
    let mut state = 0x6A09_E667_F3BC_C909; // √2's fraction: any fixed start does.
    for &w in words {
        state ^= w;
        splitmix64(&mut state);
    }
    splitmix64(&mut state)
}

const SHUFFLE: u64 = 0x5348_5546; // "SHUF"
const AUGMENT: u64 = 0x4155_474D; // "AUGM"

/// The epoch's permutation of `0..len` (Fisher–Yates on splitmix64 from (seed, epoch)).
pub fn permutation(len: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut state = mix(&[SHUFFLE, seed, epoch as u64]);
    for i in (1..len).rev() {
        // Multiply-shift: j uniform in 0..=i (bias below 2^-40 for any split we hold).
        let j = ((splitmix64(&mut state) as u128 * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

/// The jitter of sample `index` in `epoch`: a function of (seed, epoch, index) only, so
/// batches do not depend on which thread prepared them.
pub(crate) fn jitter(seed: u64, epoch: u32, index: usize, pad: usize, hflip: bool) -> Jitter {
    let h = mix(&[AUGMENT, seed, epoch as u64, index as u64]);
    let span = 2 * pad as u64 + 1;
    Jitter {
        pad,
        top: ((h & 0xFFFF_FFFF) % span) as usize,
        left: (((h >> 32) & 0x7FFF_FFFF) % span) as usize,
        flip: hflip && (h >> 63) == 1,
    }
}

/// One replica's view of one epoch.
#[derive(Debug, Clone)]
pub struct EpochPlan {
    order: Vec<usize>,
    batch_size: usize,
    rank: usize,
    world: usize,
    steps: usize,
}

impl EpochPlan {
    /// The plan over a split of `len` samples.
    pub fn new(len: usize, opts: &BatchOptions) -> Result<EpochPlan, DataError> {
        opts.check()?;
        let order = if opts.shuffle {
            permutation(len, opts.seed, opts.epoch)
        } else {
            (0..len).collect()
        };
        Ok(EpochPlan {
            order,
            batch_size: opts.batch_size,
            rank: opts.rank,
            world: opts.world,
            steps: opts.global_batches(len),
        })
    }

    /// Steps (batches) of every replica, without drawing the order; 0 for invalid options.
    pub fn steps_for(len: usize, opts: &BatchOptions) -> usize {
        match opts.check() {
            Ok(()) => opts.global_batches(len),
            Err(_) => 0,
        }
    }

    /// Number of batches each replica gets.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The epoch's order of sample indices.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Global batch `k` (all replicas).
    pub fn global_batch(&self, k: usize) -> &[usize] {
        let start = (k * self.batch_size).min(self.order.len());
        let end = ((k + 1) * self.batch_size).min(self.order.len());
        &self.order[start..end]
    }

    /// This replica's share of global batch `k`.
    pub fn batch(&self, k: usize) -> &[usize] {
        let global = self.global_batch(k);
        let m = global.len();
        &global[self.rank * m / self.world..(self.rank + 1) * m / self.world]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(batch_size: usize, rank: usize, world: usize) -> BatchOptions {
        BatchOptions {
            rank,
            world,
            shuffle: true,
            seed: 7,
            epoch: 3,
            ..BatchOptions::sequential(batch_size)
        }
    }

    #[test]
    fn permutations_are_reproducible_and_differ_by_epoch() {
        let a = permutation(1000, 1, 0);
        assert_eq!(a, permutation(1000, 1, 0));
        assert_ne!(a, permutation(1000, 1, 1));
        assert_ne!(a, permutation(1000, 2, 0));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn shards_cover_the_epoch_exactly_once() {
        for (len, batch, world) in [
            (103, 10, 3),
            (100, 10, 4),
            (7, 7, 7),
            (64, 32, 2),
            (5, 8, 2),
        ] {
            let mut seen = Vec::new();
            let mut steps = None;
            for rank in 0..world {
                let plan = EpochPlan::new(len, &opts(batch, rank, world)).unwrap();
                assert_eq!(
                    plan.steps(),
                    EpochPlan::steps_for(len, &opts(batch, rank, world))
                );
                steps.get_or_insert(plan.steps());
                assert_eq!(
                    Some(plan.steps()),
                    steps,
                    "every replica takes the same steps"
                );
                for k in 0..plan.steps() {
                    let share = plan.batch(k);
                    let m = plan.global_batch(k).len();
                    assert!(share.len() == m / world || share.len() == m.div_ceil(world));
                    assert!(!share.is_empty());
                    seen.extend_from_slice(share);
                }
            }
            seen.sort();
            let kept = EpochPlan::new(len, &opts(batch, 0, world)).unwrap();
            let mut expected: Vec<usize> = (0..kept.steps())
                .flat_map(|k| kept.global_batch(k).to_vec())
                .collect();
            expected.sort();
            assert_eq!(seen, expected, "len {len} batch {batch} world {world}");
            if len % batch >= world || len % batch == 0 {
                assert_eq!(seen, (0..len).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn small_last_batches_are_dropped() {
        let o = |min| BatchOptions {
            min_last_batch: min,
            ..BatchOptions::sequential(10)
        };
        assert_eq!(EpochPlan::steps_for(21, &o(1)), 3);
        assert_eq!(EpochPlan::steps_for(21, &o(2)), 2);
        assert_eq!(EpochPlan::steps_for(20, &o(10)), 2);
        // Two replicas never share a last batch of one.
        assert_eq!(
            EpochPlan::steps_for(21, &BatchOptions { world: 2, ..o(1) }),
            2
        );
        assert!(EpochPlan::new(
            10,
            &BatchOptions {
                rank: 2,
                world: 2,
                ..o(1)
            }
        )
        .is_err());
        assert!(EpochPlan::new(
            10,
            &BatchOptions {
                world: 11,
                ..BatchOptions::sequential(10)
            }
        )
        .is_err());
    }

    #[test]
    fn jitter_is_a_function_of_seed_epoch_index() {
        let a = jitter(1, 2, 3, 4, true);
        assert_eq!(a, jitter(1, 2, 3, 4, true));
        assert!(a.top <= 8 && a.left <= 8);
        let flips = (0..1000).filter(|&i| jitter(1, 0, i, 4, true).flip).count();
        assert!((400..600).contains(&flips), "{flips}");
        assert!((0..100).all(|i| !jitter(1, 0, i, 4, false).flip));
        let tops: std::collections::BTreeSet<_> =
            (0..1000).map(|i| jitter(1, 0, i, 2, false).top).collect();
        assert_eq!(tops.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    }
}
