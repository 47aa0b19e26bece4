//! A test-only hold between epochs, so that fault tests make the moment they need (a worker
//! in the middle of a run, with an epoch stored and epochs left) happen by construction.
//!
//! With `ABLATE_TEST_HOLD_DIR=DIR` set, training waits after each epoch while the file
//! `DIR/hold` exists and `DIR/<run id>` does not (a pass for that run). Heartbeats, the
//! epoch's report and its checkpoint upload go on meanwhile; a stop (shutdown, cancel,
//! fencing) ends the wait. Unset (always, outside tests), nothing waits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
