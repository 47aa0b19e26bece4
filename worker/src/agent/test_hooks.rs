//! Test-only throttles and injections, off unless their environment variable is set: the
//! end-to-end tests use them to make a slow upload, a slow dataset preparation, a long
//! evaluation, a hung step or a worker held between epochs (`ABLATE_TEST_HOLD_DIR`: training
//! waits after each epoch while `DIR/hold` exists and `DIR/<run id>` does not) happen by
//! construction instead of by racing a timer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds to sleep in the dataset preparation.
pub(crate) const PREPARE_DELAY_MS: &str = "ABLATE_TEST_PREPARE_DELAY_MS";
/// Milliseconds to sleep before each checkpoint chunk sent.
pub(crate) const UPLOAD_CHUNK_DELAY_MS: &str = "ABLATE_TEST_UPLOAD_CHUNK_DELAY_MS";
/// Milliseconds to sleep after each evaluation batch.
pub(crate) const EVAL_BATCH_DELAY_MS: &str = "ABLATE_TEST_EVAL_BATCH_DELAY_MS";
/// The training step (1-based, in its epoch) that hangs in a run's first attempt until the
/// attempt is stopped.
pub(crate) const HANG_AT_STEP: &str = "ABLATE_TEST_HANG_AT_STEP";

/// The number in `name`, when set.
pub(crate) fn number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The delay in milliseconds in `name`, when set.
pub(crate) fn delay(name: &str) -> Option<Duration> {
    number(name).map(Duration::from_millis)
}

/// Sleeps `duration` on this thread, waking early when `stop` is set.
pub(crate) fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
    }
}

/// Blocks this thread until `stop` is set (a hung step).
pub(crate) fn hang_until_stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The environment variable naming the hold directory.
pub const HOLD_DIR_ENV: &str = "ABLATE_TEST_HOLD_DIR";

/// How often a held run looks at the files again.
const POLL: Duration = Duration::from_millis(100);

/// The hold of one run, if the environment asks for one.
#[derive(Debug, Clone)]
pub(crate) struct TestHold {
    hold: PathBuf,
    pass: PathBuf,
}

impl TestHold {
    /// From `ABLATE_TEST_HOLD_DIR`, for `run_id`.
    pub(crate) fn from_env(run_id: &str) -> Option<TestHold> {
        let dir = PathBuf::from(std::env::var_os(HOLD_DIR_ENV)?);
        Some(TestHold {
            hold: dir.join("hold"),
            pass: dir.join(run_id),
        })
    }

    /// Blocks while the hold applies to this run and `stop` is not set.
    pub(crate) fn wait(&self, stop: &AtomicBool) {
        let mut logged = false;
        while self.hold.exists() && !self.pass.exists() && !stop.load(Ordering::SeqCst) {
            if !logged {
                tracing::info!(hold = %self.hold.display(), "test hold: waiting before the next epoch");
                logged = true;
            }
            std::thread::sleep(POLL);
        }
    }
}
