//! Leases: their renewal (progress, a worker's heartbeat, a coordinator restart), the
//! fencing of stale attempts, and their expiry.

use super::*;

impl Scheduler {
    /// Lease renewals for every run a worker holds (when it registers again).
    pub fn renew_all_of(&self, worker_id: &str, now: Millis) -> Vec<Change> {
        let mut ids: Vec<&RunSched> = self
            .runs
            .values()
            .filter(|r| r.lease.as_ref().is_some_and(|l| l.worker_id == worker_id))
            .collect();
        ids.sort_by_key(|r| r.order);
        ids.into_iter().map(|run| self.renewal(run, now)).collect()
    }

    /// After a restart: every lease lasts at least one more TTL from `now`, so that workers
    /// that reconnect keep their runs.
    pub fn extend_leases(&self, now: Millis) -> Vec<Change> {
        let mut leased: Vec<&RunSched> = self.runs.values().filter(|r| r.lease.is_some()).collect();
        leased.sort_by_key(|r| r.order);
        leased
            .into_iter()
            .map(|run| self.renewal(run, now))
            .collect()
    }

    fn renewal(&self, run: &RunSched, now: Millis) -> Change {
        let mut after = run.clone();
        if let Some(lease) = &mut after.lease {
            lease.deadline_ms = lease.deadline_ms.max(now + self.lease_ttl_ms);
        }
        Change {
            before: run.clone(),
            after,
            kind: EventKind::Renewed,
            message: String::new(),
        }
    }

    /// The run, if `worker_id` holds its lease for `attempt` (fencing).
    pub fn fence(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
    ) -> Result<&RunSched, SchedError> {
        let run = self
            .runs
            .get(run_id)
            .ok_or_else(|| SchedError::UnknownRun(run_id.to_string()))?;
        if attempt != run.attempt {
            return Err(SchedError::Stale {
                run: run_id.to_string(),
                attempt,
                current: run.attempt,
            });
        }
        match &run.lease {
            Some(lease) if lease.worker_id == worker_id => Ok(run),
            _ => Err(SchedError::NotHolder {
                run: run_id.to_string(),
                attempt,
                worker: worker_id.to_string(),
                state: run.state,
            }),
        }
    }

    /// Progress or heartbeat: renews the lease. The change's `after.cancel_requested()`
    /// tells the worker to stop.
    pub fn renew(
        &self,
        worker_id: &str,
        run_id: &str,
        attempt: u32,
        now: Millis,
    ) -> Result<Change, SchedError> {
        let run = self.fence(worker_id, run_id, attempt)?;
        let mut after = run.clone();
        if let Some(lease) = &mut after.lease {
            lease.deadline_ms = now + self.lease_ttl_ms;
        }
        Ok(Change {
            before: run.clone(),
            after,
            kind: EventKind::Renewed,
            message: String::new(),
        })
    }

    /// Leases past their deadline: the run is re-queued (a failure of its attempt), or
    /// failed after `max_attempts`; a cancelled run's devices are freed.
    pub fn expire(&self, now: Millis) -> Vec<Change> {
        let mut expired: Vec<&RunSched> = self
            .runs
            .values()
            .filter(|r| r.lease.as_ref().is_some_and(|l| l.deadline_ms <= now))
            .collect();
        expired.sort_by_key(|r| r.order);
        expired
            .into_iter()
            .map(|run| {
                let lease = run.lease.as_ref().expect("filtered on a lease");
                let worker = self
                    .workers
                    .get(&lease.worker_id)
                    .map(|w| format!("{} ({})", w.name, w.id))
                    .unwrap_or_else(|| lease.worker_id.clone());
                let reason = format!(
                    "lease expired: worker {worker} stopped reporting for {} s",
                    self.lease_ttl_ms / 1000
                );
                let mut change = self.failure(run, &reason, false);
                if change.kind == EventKind::Retry {
                    change.kind = EventKind::Expired;
                }
                change
            })
            .collect()
    }
}
