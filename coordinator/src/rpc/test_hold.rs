//! A test-only hold on the coordinator's blocking work, so that an end-to-end test can
//! make "many slow requests in flight at once" happen by construction rather than by
//! timing (`ABLATE_TEST_COORD_HOLD_DIR`).
//!
//! With the variable set, an operation that calls [`pause`] while `DIR/hold-OPERATION`
//! exists first writes a marker `DIR/held-OPERATION-N` (so the test knows it has arrived),
//! then waits until the hold file is removed. Without the variable, [`pause`] returns at
//! once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable naming the hold directory.
pub const HOLD_DIR_ENV: &str = "ABLATE_TEST_COORD_HOLD_DIR";

/// How often a held operation looks at the hold file again.
const POLL: Duration = Duration::from_millis(20);

/// Numbers the markers, so that concurrent holds of one operation leave one each.
static ARRIVALS: AtomicU64 = AtomicU64::new(0);

/// Waits while the test hold for `operation` is in place (no-op unless the hold directory
/// is set). Call it only from blocking threads.
pub(crate) fn pause(operation: &str) {
    let Some(dir) = std::env::var_os(HOLD_DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let hold = dir.join(format!("hold-{operation}"));
    if !hold.exists() {
        return;
    }
    let n = ARRIVALS.fetch_add(1, Ordering::SeqCst);
    let marker = dir.join(format!("held-{operation}-{n}"));
    if let Err(e) = std::fs::write(&marker, b"") {
        tracing::warn!(marker = %marker.display(), "test hold: cannot write the marker: {e}");
    }
    tracing::info!(operation, "test hold: waiting");
    while hold.exists() {
        std::thread::sleep(POLL);
    }
}
