//! The attempt's heartbeat: from the moment a run is acquired until its session ends, a
//! task of its own sends `Progress` every heartbeat period on a connection of its own, so
//! the lease is renewed whatever the session is busy with (downloading a checkpoint,
//! preparing data, training, evaluating, saving or uploading). The same messages carry the
//! sampled steps and finished epochs the session queues, and bring back cancellation and
//! early stopping.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ablate_common::proto::{EpochMetrics, ProgressRequest, StepMetrics};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tonic::Code;

use super::connection::{is_transient, Client};

/// What the coordinator (or the worker itself) decided about the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep going.
    Running,
    /// The run was cancelled: stop and release it.
    Cancelled,
    /// The grid's early-stopping rule stopped the run (why): stop; the coordinator has
    /// already ended the attempt, so nothing is released.
    Stopped(String),
    /// The worker is shutting down: stop and release the run.
    ShuttingDown,
    /// The coordinator no longer counts this attempt (fenced off): abandon it.
    Stale(String),
}

/// Progress not yet accepted by the coordinator, and where the run is.
#[derive(Debug, Default)]
struct Pending {
    steps: Vec<StepMetrics>,
    epochs: VecDeque<EpochMetrics>,
    current_epoch: u32,
    current_step: u64,
    steps_per_epoch: u64,
}

/// Which attempt the heartbeat is about.
#[derive(Debug, Clone)]
pub(crate) struct AttemptIds {
    /// This worker.
    pub worker_id: String,
    /// The run.
    pub run_id: String,
    /// The attempt (fencing token).
    pub attempt: u32,
}

/// The running heartbeat of one attempt; aborted when dropped.
pub(crate) struct Liveness {
    run_id: String,
    pending: Arc<Mutex<Pending>>,
    verdict: watch::Receiver<Verdict>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Liveness {
    /// Starts beating every `period` on `client`. A verdict other than `Running` also sets
    /// `stop`, the flag the training loop checks.
    pub(crate) fn start(
        client: Client,
        ids: AttemptIds,
        first_epoch: u32,
        period: Duration,
        stop: Arc<AtomicBool>,
        shutdown: Arc<AtomicBool>,
    ) -> Liveness {
        let pending = Arc::new(Mutex::new(Pending {
            current_epoch: first_epoch,
            ..Pending::default()
        }));
        let (tx, verdict) = watch::channel(Verdict::Running);
        let wake = Arc::new(Notify::new());
        let run_id = ids.run_id.clone();
        let task = tokio::spawn(beat(Beat {
            client,
            ids,
            period,
            pending: pending.clone(),
            verdict: tx,
            wake: wake.clone(),
            stop,
            shutdown,
        }));
        Liveness {
            run_id,
            pending,
            verdict,
            wake,
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run this heartbeat is about.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Training starts (or resumes) with this many steps an epoch.
    pub(crate) fn started(&self, steps_per_epoch: u64) {
        self.lock().steps_per_epoch = steps_per_epoch;
    }

    /// A training step finished; `loss` is the sampled loss, if this step was sampled.
    pub(crate) fn step(&self, epoch: u32, step: u64, loss: Option<f64>) {
        let mut p = self.lock();
        p.current_epoch = epoch;
        p.current_step = step;
        if let Some(loss) = loss {
            let global = u64::from(epoch.saturating_sub(1)) * p.steps_per_epoch + step;
            p.steps.push(StepMetrics {
                epoch,
                step: global,
                loss,
            });
        }
    }

    /// An epoch finished: its metrics go with the next heartbeat.
    pub(crate) fn epoch(&self, metrics: EpochMetrics) {
        self.lock().epochs.push_back(metrics);
        self.wake.notify_one();
    }

    /// The verdict so far.
    pub(crate) fn verdict(&self) -> Verdict {
        self.verdict.borrow().clone()
    }

    /// Completes once the verdict is no longer `Running`.
    pub(crate) async fn decided(&self) -> Verdict {
        let mut rx = self.verdict.clone();
        let decided = rx
            .wait_for(|v| *v != Verdict::Running)
            .await
            .map(|v| v.clone());
        // An error means the task ended, which it does only after a stale refusal.
        decided.unwrap_or_else(|_| self.verdict())
    }

    /// Waits until every queued step and epoch was accepted (or the attempt turned stale,
    /// or `limit` passed); returns whether everything was delivered.
    pub(crate) async fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            {
                let p = self.lock();
                if p.steps.is_empty() && p.epochs.is_empty() {
                    return true;
                }
            }
            if matches!(self.verdict(), Verdict::Stale(_)) || Instant::now() > deadline {
                return false;
            }
            self.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

struct Beat {
    client: Client,
    ids: AttemptIds,
    period: Duration,
    pending: Arc<Mutex<Pending>>,
    verdict: watch::Sender<Verdict>,
    wake: Arc<Notify>,
    stop: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
}

impl Beat {
    fn decide(&self, verdict: Verdict) {
        self.stop.store(true, Ordering::SeqCst);
        self.verdict.send_if_modified(|v| {
            // Stale overrides everything; otherwise the first decision stays.
            let replace = *v == Verdict::Running || matches!(verdict, Verdict::Stale(_));
            if replace {
                *v = verdict.clone();
            }
            replace
        });
    }
}

async fn beat(b: Beat) {
    // A heartbeat that takes longer than this is given up and sent again.
    let call_limit = (b.period * 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
    loop {
        if b.shutdown.load(Ordering::SeqCst) {
            b.decide(Verdict::ShuttingDown);
        }
        let (request, sent_steps, sent_epoch) = {
            let p = b.pending.lock().unwrap_or_else(|e| e.into_inner());
            let request = ProgressRequest {
                worker_id: b.ids.worker_id.clone(),
                run_id: b.ids.run_id.clone(),
                attempt: b.ids.attempt,
                steps: p.steps.clone(),
                epoch: p.epochs.front().cloned(),
                current_epoch: p.current_epoch,
                current_step: p.current_step,
                steps_per_epoch: p.steps_per_epoch,
            };
            (request, p.steps.len(), p.epochs.front().map(|e| e.epoch))
        };
        let mut client = b.client.clone();
        match tokio::time::timeout(call_limit, client.progress(request)).await {
            Ok(Ok(response)) => {
                {
                    let mut p = b.pending.lock().unwrap_or_else(|e| e.into_inner());
                    let delivered = sent_steps.min(p.steps.len());
                    p.steps.drain(..delivered);
                    if sent_epoch.is_some() && p.epochs.front().map(|e| e.epoch) == sent_epoch {
                        p.epochs.pop_front();
                    }
                }
                let response = response.into_inner();
                if response.stop {
                    b.decide(Verdict::Stopped(response.stop_reason));
                } else if response.cancel {
                    b.decide(Verdict::Cancelled);
                }
            }
            Ok(Err(status)) if is_transient(&status) => {
                tracing::debug!("heartbeat not delivered, will retry: {}", status.message());
            }
            Ok(Err(status))
                if matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::NotFound | Code::Aborted
                ) =>
            {
                b.decide(Verdict::Stale(status.message().to_string()));
                return;
            }
            Ok(Err(status)) => {
                tracing::warn!("coordinator refused progress: {}", status.message());
            }
            Err(_) => tracing::debug!("heartbeat took over {call_limit:?}; sending the next"),
        }
        tokio::select! {
            _ = tokio::time::sleep(b.period) => {}
            _ = b.wake.notified() => {}
        }
    }
}
