//! What the coordinator state offers a launcher: a view of the queue and the workers, a
//! place to publish what it did, and workers that leave for good.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;

use super::{CoordError, Coordinator};
use crate::launcher::{Board, QueueView, QueuedRun, WorkerSupply};
use crate::scheduling::scheduler::{gpu_count, SchedError};
use crate::state::store::NewEvent;

/// Appends the launcher's note on a queued run to its pending reason.
pub(super) fn add_note(reason: &mut Option<String>, notes: &BTreeMap<String, String>, run: &str) {
    if let (Some(reason), Some(note)) = (reason.as_mut(), notes.get(run)) {
        reason.push_str("; ");
        reason.push_str(note);
    }
}

impl Coordinator {
    /// The queued runs (in queue order) and what each registered worker has free.
    pub fn launcher_view(&self) -> QueueView {
        let now = self.now();
        let inner = self.lock();
        let sched = &inner.sched;
        QueueView {
            queued: sched
                .queued()
                .map(|r| QueuedRun {
                    id: r.id.clone(),
                    gpus: r.demand.gpus(),
                })
                .collect(),
            workers: sched
                .workers()
                .map(|w| {
                    let busy = sched.busy_devices(&w.id);
                    let free = |d: &&String| !busy.contains(*d);
                    WorkerSupply {
                        id: w.id.clone(),
                        name: w.name.clone(),
                        connected: sched.is_connected(&w.id, now),
                        cpu_free: w.devices.iter().filter(free).any(|d| d == "cpu"),
                        free_gpus: gpu_count(w.devices.iter().filter(free)),
                    }
                })
                .collect(),
        }
    }

    /// Publishes what the launcher did; watchers hear of it when it changed.
    pub fn publish_launcher(&self, board: Board) {
        let mut current = self.launcher.lock().unwrap_or_else(|e| e.into_inner());
        if **current != board {
            *current = Arc::new(board);
            drop(current);
            self.notify();
        }
    }

    /// What the launcher last did (empty without a launcher).
    pub fn launcher_board(&self) -> Arc<Board> {
        self.launcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A worker leaves for good: it is forgotten. Refused while it holds a run's lease.
    pub fn leave(&self, worker_id: &str, reason: &str) -> Result<(), CoordError> {
        let now = self.now();
        let mut inner = self.lock();
        let Some(worker) = inner.sched.worker(worker_id).cloned() else {
            return Err(SchedError::UnknownWorker(worker_id.to_string()).into());
        };
        let held = inner.sched.leases_of(worker_id);
        if !held.is_empty() {
            return Err(CoordError::invalid(
                "worker_id",
                format!(
                    "worker {} still holds run(s) {}: release them before leaving",
                    worker.name,
                    held.join(", ")
                ),
            ));
        }
        let message = format!("worker {} ({worker_id}) left: {reason}", worker.name);
        inner.store.write(|tx| {
            tx.remove_worker(worker_id)?;
            tx.event(&NewEvent::cluster("worker", &message), now)
        })?;
        inner.sched.remove_worker(worker_id);
        drop(inner);
        info!("{message}");
        self.notify();
        Ok(())
    }
}
