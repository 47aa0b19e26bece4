//! The scheduler's indexes of the queue and of what is leased: queued runs by experiment
//! and by size, the devices each experiment and each user holds (their shares in use), and
//! the devices busy on each worker. Kept up to date run by run, so that a placement looks
//! at a handful of experiments and sizes instead of every queued run.
//!
//! The fair share is two-level: users first (the devices a user's experiments hold per
//! unit of the user's weight), then that user's experiments (devices per unit of the
//! experiment's weight, its grid's `priority`). An experiment's `priority` thus moves
//! devices between its own user's experiments, never away from other users.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::scheduling::scheduler::{Demand, RunSched, RunState};

/// The queued runs of one experiment.
#[derive(Debug, Clone, Default)]
struct ExperimentQueue {
    /// The experiment's submit sequence (ties between equal shares go to the oldest).
    seq: u64,
    /// Queued runs by the GPUs they need (0: CPU), each set in run-index order.
    by_gpus: BTreeMap<u32, BTreeSet<(u32, String)>>,
    /// Queued runs in all.
    len: usize,
}

/// The head of one size class of an experiment's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    /// Run index in its experiment.
    pub index: u32,
    /// Run id.
    pub id: &'a str,
    /// GPUs it needs (0: CPU).
    pub gpus: u32,
}

/// Queue and lease indexes; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct FairQueue {
    experiments: HashMap<String, ExperimentQueue>,
    /// Device units each experiment holds under leases (a GPU each; a CPU run counts 1).
    usage: HashMap<String, u64>,
    /// Share weight of each experiment (1 when unset).
    weights: HashMap<String, u32>,
    /// The user each experiment was submitted by (`""` when unset).
    users: HashMap<String, String>,
    /// Device units each user's experiments hold under leases.
    user_usage: HashMap<String, u64>,
    /// Share weight of each user (1 when unset).
    user_weights: HashMap<String, u32>,
    /// Devices under a lease, by worker.
    busy: HashMap<String, HashSet<String>>,
}

/// The device units a run holds while leased.
fn units(demand: Demand) -> u64 {
    u64::from(demand.gpus().max(1))
}

impl FairQueue {
    /// Forgets what `run` contributed (before it is replaced).
    pub fn remove(&mut self, run: &RunSched) {
        if run.state == RunState::Queued {
            if let Some(q) = self.experiments.get_mut(&run.experiment_id) {
                let gpus = run.demand.gpus();
                if let Some(set) = q.by_gpus.get_mut(&gpus) {
                    if set.remove(&(run.order.1, run.id.clone())) {
                        q.len -= 1;
                    }
                    if set.is_empty() {
                        q.by_gpus.remove(&gpus);
                    }
                }
                if q.len == 0 {
                    self.experiments.remove(&run.experiment_id);
                }
            }
        }
        if let Some(lease) = &run.lease {
            if let Some(u) = self.usage.get_mut(&run.experiment_id) {
                *u = u.saturating_sub(units(run.demand));
            }
            let user = self.user_of(&run.experiment_id).to_string();
            if let Some(u) = self.user_usage.get_mut(&user) {
                *u = u.saturating_sub(units(run.demand));
            }
            if let Some(busy) = self.busy.get_mut(&lease.worker_id) {
                for d in &lease.devices {
                    busy.remove(d);
                }
            }
        }
    }

    /// Adds what `run` contributes.
    pub fn add(&mut self, run: &RunSched) {
        if run.state == RunState::Queued {
            let q = self
                .experiments
                .entry(run.experiment_id.clone())
                .or_default();
            q.seq = run.order.0;
            if q.by_gpus
                .entry(run.demand.gpus())
                .or_default()
                .insert((run.order.1, run.id.clone()))
            {
                q.len += 1;
            }
        }
        if let Some(lease) = &run.lease {
            *self.usage.entry(run.experiment_id.clone()).or_default() += units(run.demand);
            let user = self.user_of(&run.experiment_id).to_string();
            *self.user_usage.entry(user).or_default() += units(run.demand);
            self.busy
                .entry(lease.worker_id.clone())
                .or_default()
                .extend(lease.devices.iter().cloned());
        }
    }

    /// Sets an experiment's share weight (at least 1).
    pub fn set_weight(&mut self, experiment_id: &str, weight: u32) {
        self.weights
            .insert(experiment_id.to_string(), weight.max(1));
    }

    /// An experiment's share weight.
    pub fn weight(&self, experiment_id: &str) -> u32 {
        self.weights.get(experiment_id).copied().unwrap_or(1)
    }

    /// Records who submitted an experiment; what its runs hold moves to that user's share.
    pub fn set_user(&mut self, experiment_id: &str, user: &str) {
        let held = self.usage(experiment_id);
        let before = self.user_of(experiment_id).to_string();
        if let Some(u) = self.user_usage.get_mut(&before) {
            *u = u.saturating_sub(held);
        }
        *self.user_usage.entry(user.to_string()).or_default() += held;
        self.users
            .insert(experiment_id.to_string(), user.to_string());
    }

    /// The user who submitted an experiment (`""` when unknown).
    pub fn user_of(&self, experiment_id: &str) -> &str {
        self.users.get(experiment_id).map_or("", String::as_str)
    }

    /// Sets a user's share weight (at least 1).
    pub fn set_user_weight(&mut self, user: &str, weight: u32) {
        self.user_weights.insert(user.to_string(), weight.max(1));
    }

    /// A user's share weight.
    pub fn user_weight(&self, user: &str) -> u32 {
        self.user_weights.get(user).copied().unwrap_or(1)
    }

    /// Device units a user's experiments hold.
    pub fn user_usage(&self, user: &str) -> u64 {
        self.user_usage.get(user).copied().unwrap_or(0)
    }

    /// Device units an experiment holds.
    pub fn usage(&self, experiment_id: &str) -> u64 {
        self.usage.get(experiment_id).copied().unwrap_or(0)
    }

    /// Devices under a lease on a worker.
    pub fn busy(&self, worker_id: &str) -> Option<&HashSet<String>> {
        self.busy.get(worker_id)
    }

    /// Experiments with queued runs, fairest first: the user with the smallest share in use
    /// per unit of the user's weight, then within a user the experiment with the smallest
    /// share per unit of its weight, then the oldest submission.
    pub fn fair_order(&self) -> Vec<&str> {
        // (id, (user usage, user weight), (usage, weight), seq)
        type Key<'a> = (&'a str, (u64, u64), (u64, u64), u64);
        let mut order: Vec<Key<'_>> = self
            .experiments
            .iter()
            .map(|(id, q)| {
                let user = self.user_of(id);
                (
                    id.as_str(),
                    (self.user_usage(user), u64::from(self.user_weight(user))),
                    (self.usage(id), u64::from(self.weight(id))),
                    q.seq,
                )
            })
            .collect();
        // usage_a / weight_a < usage_b / weight_b without division.
        let share = |a: (u64, u64), b: (u64, u64)| {
            (u128::from(a.0) * u128::from(b.1)).cmp(&(u128::from(b.0) * u128::from(a.1)))
        };
        order.sort_by(|a, b| {
            share(a.1, b.1)
                .then(share(a.2, b.2))
                .then(a.3.cmp(&b.3))
                .then(a.0.cmp(b.0))
        });
        order.into_iter().map(|(id, ..)| id).collect()
    }

    /// The first queued run (by index) of an experiment among the sizes `fits` accepts.
    pub fn first_fitting(
        &self,
        experiment_id: &str,
        fits: impl Fn(u32) -> bool,
    ) -> Option<Head<'_>> {
        let q = self.experiments.get(experiment_id)?;
        q.by_gpus
            .iter()
            .filter(|(gpus, _)| fits(**gpus))
            .filter_map(|(gpus, set)| {
                set.first().map(|(index, id)| Head {
                    index: *index,
                    id: id.as_str(),
                    gpus: *gpus,
                })
            })
            .min_by_key(|h| h.index)
    }

    /// The largest GPU demand among queued runs that `fits` accepts (0: none).
    pub fn largest_queued_gpus(&self, fits: impl Fn(u32) -> bool) -> u32 {
        self.experiments
            .values()
            .flat_map(|q| q.by_gpus.keys().copied())
            .filter(|g| *g > 0 && fits(*g))
            .max()
            .unwrap_or(0)
    }
}
