//! How an attempt ends: completed, failed (retried until `max_attempts`), released by a
//! worker that shuts down, or cancelled by a user.

use super::*;

impl Scheduler {
    /// The attempt finished every epoch. A cancelled run stays cancelled (its devices are
    /// freed).
    pub fn complete(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        let mut after = run.clone();
        after.lease = None;
        let (kind, message) = if run.state == RunState::Cancelled {
            (
                EventKind::Freed,
                format!("attempt {attempt} completed after cancellation"),
            )
        } else {
            after.state = RunState::Finished;
            after.error = None;
            (EventKind::Finished, format!("attempt {attempt} finished"))
        };
        Ok(Change {
            before: run.clone(),
            after,
            kind,
            message,
        })
    }

    /// The attempt failed: retry (queued) until `max_attempts` failures, then `failed`.
    /// A permanent failure fails the run at once.
    pub fn fail(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
        reason: &str,
        permanent: bool,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        Ok(self.failure(run, reason, permanent))
    }

    pub(super) fn failure(&self, run: &RunSched, reason: &str, permanent: bool) -> Change {
        let mut after = run.clone();
        after.lease = None;
        if run.state == RunState::Cancelled {
            return Change {
                before: run.clone(),
                after,
                kind: EventKind::Freed,
                message: format!("attempt {} ended after cancellation: {reason}", run.attempt),
            };
        }
        after.failures += 1;
        after.error = Some(reason.to_string());
        let (kind, message) = if permanent || after.failures >= after.max_attempts {
            after.state = RunState::Failed;
            let why = if permanent {
                "a permanent failure".to_string()
            } else {
                format!(
                    "{} of {} attempts failed",
                    after.failures, after.max_attempts
                )
            };
            (
                EventKind::Failed,
                format!("attempt {}: {reason} ({why}: run failed)", run.attempt),
            )
        } else {
            after.state = RunState::Queued;
            (
                EventKind::Retry,
                format!(
                    "attempt {}: {reason} (failure {} of {}: re-queued)",
                    run.attempt, after.failures, after.max_attempts
                ),
            )
        };
        Change {
            before: run.clone(),
            after,
            kind,
            message,
        }
    }

    /// The worker gives the run back: re-queued at once (not counted as a failure); a
    /// cancelled run's devices are freed.
    pub fn release(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
        reason: &str,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        let mut after = run.clone();
        after.lease = None;
        let kind = if run.state == RunState::Cancelled {
            EventKind::Freed
        } else {
            after.state = RunState::Queued;
            EventKind::Released
        };
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        Ok(Change {
            before: run.clone(),
            after,
            kind,
            message: format!("attempt {attempt} released: {reason}"),
        })
    }

    /// Cancels runs: queued ones at once, running ones on their worker's next message
    /// (their lease and devices are kept until the worker releases or the lease lapses).
    /// Terminal runs are left alone.
    pub fn cancel(&self, run_ids: &[String]) -> Vec<Change> {
        run_ids
            .iter()
            .filter_map(|id| self.runs.get(id))
            .filter(|r| !r.state.is_terminal())
            .map(|run| {
                let mut after = run.clone();
                after.state = RunState::Cancelled;
                let message = match &run.lease {
                    Some(l) => format!("cancelled while running on worker {}", l.worker_id),
                    None => "cancelled while queued".to_string(),
                };
                Change {
                    before: run.clone(),
                    after,
                    kind: EventKind::Cancelled,
                    message,
                }
            })
            .collect()
    }
}
