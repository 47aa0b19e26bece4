//! Checkpoints of SQLite's write-ahead log on a thread of their own.
//!
//! A checkpoint copies the log into the database file and syncs both. Left to SQLite's
//! automatic checkpoint it runs inside whichever commit crosses the threshold, i.e. inside
//! a placement or a heartbeat while the coordinator's state lock is held, and that request
//! then takes tens of milliseconds. Here a second connection checkpoints in the background
//! (a `PASSIVE` checkpoint never blocks the writer); the writer's own automatic checkpoint
//! stays on with a high threshold, as a backstop should this thread fall behind.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tracing::warn;

/// How often the background thread checkpoints.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Log pages after which the writer checkpoints itself (SQLite's default is 1,000): only
/// reached when the background thread cannot keep up.
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 20_000;

/// The background checkpoint thread; stops (after one last checkpoint) when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to the store file (already in WAL mode) and starts the
    /// thread; the error says why it could not.
    pub(crate) fn spawn(path: &Path, every: Duration) -> Result<Checkpointer, String> {
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
        // The checkpoint syncs the log before copying it and the database after: a crash
        // in the middle loses nothing.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .and_then(|()| conn.busy_timeout(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let name = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || loop {
                let (lock, wake) = &*flag;
                let stopping = {
                    let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (guard, _) = wake
                        .wait_timeout_while(guard, every, |stop| !*stop)
                        .unwrap_or_else(|e| e.into_inner());
                    *guard
                };
                if let Err(e) = checkpoint(&conn) {
                    warn!(store = %name, "background checkpoint of the write-ahead log failed: {e}");
                }
                if stopping {
                    return;
                }
            })
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

/// One passive checkpoint: copies what no reader still needs, never waits for a writer.
fn checkpoint(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
