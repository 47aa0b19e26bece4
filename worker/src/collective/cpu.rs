//! In-process all-reduce for replicas that are threads of one process (CPU workers, tests).

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use tch::Tensor;

use super::{Collective, CollectiveError};

/// All-reduce through shared memory: every rank deposits its tensor, the last one to arrive
/// sums them in rank order (so the result does not depend on arrival order and runs are
/// reproducible), and every rank copies the sum out.
#[derive(Debug)]
pub struct CpuCollective {
    world: usize,
    timeout: Duration,
    state: Mutex<Round>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Round {
    /// Completed rounds; a rank waits for the round it joined to finish.
    generation: u64,
    deposits: Vec<Option<Tensor>>,
    arrived: usize,
    result: Option<Tensor>,
    departed: usize,
    aborted: Option<String>,
}

impl CpuCollective {
    /// A group of `world` ranks whose calls fail after `timeout` without all peers.
    pub fn new(world: usize, timeout: Duration) -> Self {
        assert!(world > 0, "a collective needs at least one rank");
        CpuCollective {
            world,
            timeout,
            state: Mutex::new(Round {
                deposits: (0..world).map(|_| None).collect(),
                ..Round::default()
            }),
            changed: Condvar::new(),
        }
    }

    fn wait<'a>(
        &self,
        mut guard: std::sync::MutexGuard<'a, Round>,
        deadline: Instant,
        mut done: impl FnMut(&Round) -> bool,
    ) -> Result<std::sync::MutexGuard<'a, Round>, CollectiveError> {
        loop {
            if let Some(reason) = &guard.aborted {
                return Err(CollectiveError::Aborted(reason.clone()));
            }
            if done(&guard) {
                return Ok(guard);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CollectiveError::Timeout(self.timeout));
            }
            guard = self
                .changed
                .wait_timeout(guard, deadline - now)
                .map_err(|_| CollectiveError::Aborted("a replica panicked".into()))?
                .0;
        }
    }
}

impl Collective for CpuCollective {
    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&self, rank: usize, tensor: &mut Tensor) -> Result<(), CollectiveError> {
        if self.world == 1 {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        let guard = self
            .state
            .lock()
            .map_err(|_| CollectiveError::Aborted("a replica panicked".into()))?;
        // A fast rank may arrive while the previous round is still being read out.
        let mut guard = self.wait(guard, deadline, |r| r.result.is_none())?;
        let generation = guard.generation;
        guard.deposits[rank] = Some(tensor.shallow_clone());
        guard.arrived += 1;
        if guard.arrived == self.world {
            let mut sum = guard.deposits[0].as_ref().expect("rank 0 deposited").copy();
            for deposit in guard.deposits[1..].iter() {
                let _ = sum.g_add_(deposit.as_ref().expect("every rank deposited"));
            }
            guard.result = Some(sum);
            self.changed.notify_all();
        }
        let mut guard = self.wait(guard, deadline, |r| {
            r.result.is_some() && r.generation == generation
        })?;
        tensor.copy_(guard.result.as_ref().expect("result is set"));
        guard.departed += 1;
        if guard.departed == self.world {
            guard.result = None;
            guard.arrived = 0;
            guard.departed = 0;
            guard.deposits.iter_mut().for_each(|d| *d = None);
            guard.generation += 1;
            self.changed.notify_all();
        }
        Ok(())
    }

    fn abort(&self, reason: &str) {
        // A replica that panicked while holding the lock poisoned it: record the reason
        // anyway, so the peers' calls fail with it.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        guard.aborted.get_or_insert_with(|| reason.to_string());
        drop(guard);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sums_over_ranks_many_rounds() {
        let group = Arc::new(CpuCollective::new(3, Duration::from_secs(10)));
        let handles: Vec<_> = (0..3)
            .map(|rank| {
                let group = group.clone();
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    for round in 0..50 {
                        let mut t = Tensor::from_slice(&[(rank + round) as f32, 1.0]);
                        group.all_reduce_sum(rank, &mut t).unwrap();
                        out.push(Vec::<f32>::try_from(&t).unwrap());
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            for (round, v) in h.join().unwrap().into_iter().enumerate() {
                assert_eq!(v, vec![(3 + 3 * round) as f32, 3.0]);
            }
        }
    }

    #[test]
    fn missing_peer_times_out() {
        let group = CpuCollective::new(2, Duration::from_millis(200));
        let mut t = Tensor::from_slice(&[1.0f32]);
        let err = group.all_reduce_sum(0, &mut t).unwrap_err();
        assert!(matches!(err, CollectiveError::Timeout(_)), "{err}");
    }

    #[test]
    fn abort_wakes_waiters() {
        let group = Arc::new(CpuCollective::new(2, Duration::from_secs(30)));
        let g = group.clone();
        let waiter = std::thread::spawn(move || {
            let mut t = Tensor::from_slice(&[1.0f32]);
            g.all_reduce_sum(0, &mut t)
        });
        std::thread::sleep(Duration::from_millis(100));
        group.abort("replica 1 failed: out of memory");
        let err = waiter.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("replica 1 failed"), "{err}");
    }
}
