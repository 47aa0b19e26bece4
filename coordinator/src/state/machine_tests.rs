//! The coordinator's state machine on the in-memory store, on a clock the test moves:
//! lease expiry, completion, failure and retry, cancellation, and an all-or-nothing write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ablate_common::metrics::EpochRecord;

use super::store::{MemoryStore, NewExperiment, Store};
use super::{Assignment, AttemptRef, Coordinator, CoordinatorConfig, Progress, Registration};
use crate::scheduling::scheduler::RunState;

const TTL: Duration = Duration::from_secs(10);

/// Two runs, two attempts each.
const GRID: &str = r#"name = "machine"
[base]
model = "lenet"
image_size = 28
channels = 1
classes = 10
epochs = 2
max_attempts = 2
[grid]
seed = [1, 2]
"#;

struct Fixture {
    coord: Arc<Coordinator>,
    time: Arc<AtomicU64>,
    worker: String,
    experiment: String,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A coordinator on a memory store with the grid submitted and one CPU worker.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let time = Arc::new(AtomicU64::new(1_000));
        let clock = {
            let time = time.clone();
            Arc::new(move || time.load(Ordering::SeqCst))
        };
        let config = CoordinatorConfig {
            data_dir: dir.path().to_path_buf(),
            lease_ttl: TTL,
            keep_checkpoints: 1,
        };
        let coord = Coordinator::with_store(&config, clock, Box::new(MemoryStore::new())).unwrap();
        let experiment = coord.submit(GRID, "machine.toml").unwrap().id;
        let (worker, held) = coord
            .register(Registration {
                protocol_version: ablate_common::proto::PROTOCOL_VERSION,
                name: "w".into(),
                devices: vec!["cpu".into()],
                threads: 2,
                worker_id: None,
                data_roots: Vec::new(),
            })
            .unwrap();
        assert!(held.is_empty());
        Fixture {
            coord,
            time,
            worker,
            experiment,
            _dir: dir,
        }
    }

    fn advance(&self, by: Duration) {
        self.time.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// The next run on the worker's CPU, if one is queued.
    fn try_acquire(&self) -> Option<Assignment> {
        self.coord
            .acquire(&self.worker, &["cpu".to_string()])
            .unwrap()
    }

    /// Whether no run is left for the worker's CPU.
    fn nothing_to_acquire(&self) -> bool {
        self.try_acquire().is_none()
    }

    /// Acquires the next run on the worker's CPU.
    fn acquire(&self) -> AttemptRef {
        let a = self.try_acquire().expect("a queued run");
        AttemptRef {
            worker_id: self.worker.clone(),
            run_id: a.run_id,
            attempt: a.attempt,
        }
    }

    fn epoch(&self, a: &AttemptRef, n: u32) -> bool {
        self.coord
            .progress(Progress {
                attempt: a.clone(),
                steps: Vec::new(),
                epoch: Some(EpochRecord {
                    epoch: n,
                    train_loss: 1.0,
                    train_acc: 0.5,
                    eval_loss: 1.0,
                    eval_acc: 0.25 * f64::from(n),
                    lr: 0.01,
                    seconds: 1.0,
                    images_per_sec: 10.0,
                }),
                current_epoch: n,
                current_step: 4,
                steps_per_epoch: 4,
            })
            .unwrap()
    }

    /// (state, attempt, error) of a run as `status` shows it.
    fn run(&self, run_id: &str) -> (RunState, u32, Option<String>) {
        let status = self.coord.status(&self.experiment).unwrap();
        let row = status.runs.iter().find(|r| r.id == run_id).unwrap();
        (row.state, row.attempt, row.error.clone())
    }

    fn experiment_state(&self) -> String {
        let status = self.coord.status(&self.experiment).unwrap();
        status.experiment.state().to_string()
    }
}

#[test]
fn a_lease_not_renewed_for_a_ttl_expires_and_the_run_is_queued_again() {
    let f = Fixture::new();
    let a = f.acquire();
    f.advance(TTL - Duration::from_millis(1));
    assert_eq!(f.coord.expire().unwrap(), 0, "not yet: one ms left");
    f.advance(Duration::from_millis(1));
    assert_eq!(f.coord.expire().unwrap(), 1);
    let (state, attempt, error) = f.run(&a.run_id);
    assert_eq!((state, attempt), (RunState::Queued, 1));
    assert!(error.unwrap().contains("lease expired"));

    // The expired attempt is fenced off; the next one carries a new token.
    assert!(f.coord.check_lease(&a).is_err());
    assert!(f.coord.complete(&a, 0).is_err());
    let b = f.acquire();
    assert_eq!(b.run_id, a.run_id, "the re-queued run keeps its place");
    assert_eq!(b.attempt, 2);
}

#[test]
fn a_completed_run_is_finished_with_its_epochs_and_the_experiment_with_it() {
    let f = Fixture::new();
    for _ in 0..2 {
        let a = f.acquire();
        assert!(!f.epoch(&a, 1));
        f.advance(Duration::from_secs(5));
        // A progress message renews the lease: no expiry at the old deadline.
        assert!(!f.epoch(&a, 2));
        f.advance(Duration::from_secs(6));
        assert_eq!(f.coord.expire().unwrap(), 0);
        // An epoch reported twice is stored once.
        assert!(!f.epoch(&a, 2));
        f.coord.complete(&a, 1234).unwrap();
        assert_eq!(f.run(&a.run_id).0, RunState::Finished);
    }
    assert_eq!(f.experiment_state(), "finished");
    let status = f.coord.status(&f.experiment).unwrap();
    assert!(status.runs.iter().all(|r| r.stored_epochs == 2));
    assert_eq!(status.runs[0].best_eval_acc, Some(0.5));
    let report = f.coord.report_data(&f.experiment).unwrap();
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.runs[0].params, 1234);
    assert_eq!(report.runs[0].epochs.len(), 2);
    assert!(f.nothing_to_acquire());
}

#[test]
fn a_failure_retries_until_the_attempts_run_out_and_a_permanent_one_at_once() {
    let f = Fixture::new();
    let a = f.acquire();
    f.coord.fail(&a, "out of memory", false).unwrap();
    let (state, attempt, error) = f.run(&a.run_id);
    assert_eq!((state, attempt), (RunState::Queued, 1));
    assert_eq!(error.as_deref(), Some("out of memory"));

    let b = f.acquire();
    assert_eq!((b.run_id.as_str(), b.attempt), (a.run_id.as_str(), 2));
    f.coord.fail(&b, "out of memory again", false).unwrap();
    assert_eq!(
        f.run(&a.run_id).0,
        RunState::Failed,
        "2 of 2 attempts failed"
    );

    let c = f.acquire();
    assert_ne!(c.run_id, a.run_id);
    f.coord.fail(&c, "the dataset is missing", true).unwrap();
    assert_eq!(f.run(&c.run_id).0, RunState::Failed, "permanent: no retry");
    assert_eq!(f.experiment_state(), "failed");
    assert!(f.nothing_to_acquire());
}

#[test]
fn cancelling_stops_queued_runs_at_once_and_running_ones_at_their_next_message() {
    let f = Fixture::new();
    let running = f.acquire();
    assert_eq!(f.coord.cancel(&f.experiment).unwrap(), 2);
    let status = f.coord.status(&f.experiment).unwrap();
    assert!(status.runs.iter().all(|r| r.state == RunState::Cancelled));
    assert!(f.nothing_to_acquire());

    // The running attempt learns it from the answer to its progress, then lets go.
    assert!(f.epoch(&running, 1), "the answer says: cancelled");
    f.coord.release(&running, "cancelled").unwrap();
    assert!(f.coord.check_lease(&running).is_err());
    assert_eq!(f.experiment_state(), "cancelled");
    assert_eq!(
        f.coord.cancel(&f.experiment).unwrap(),
        0,
        "nothing left to cancel"
    );
}

#[test]
fn a_failing_transaction_writes_nothing() {
    let mut store: Box<dyn Store> = Box::new(MemoryStore::new());
    let experiment = |id: &str| NewExperiment {
        id: id.into(),
        name: "x".into(),
        description: None,
        file_name: "x.toml".into(),
        grid_toml: String::new(),
        submitted_ms: 1,
    };
    let result = store.write(|tx| {
        tx.insert_experiment(&experiment("e1"))?;
        tx.insert_experiment(&experiment("e1"))
    });
    assert!(result.is_err());
    assert!(store.experiments().unwrap().is_empty());
    assert_eq!(
        store
            .write(|tx| tx.insert_experiment(&experiment("e1")))
            .unwrap(),
        1
    );
    assert_eq!(store.experiments().unwrap().len(), 1);
}
