//! Live updates by long polling: every JSON document carries the state's `version` (a
//! counter bumped on every committed change, progress messages included); a request with
//! `?since=VERSION` is answered once the version differs, or after [`MAX_WAIT`] with the
//! same document, or at shutdown. A page thus sees a change within a moment of it, and
//! an idle page costs one request per [`MAX_WAIT`].

use std::time::Duration;

use serde::Deserialize;

use crate::state::Coordinator;

/// The longest a request waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// The query of a JSON endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct Since {
    /// The version the client already shows.
    pub since: Option<u64>,
}

/// Waits until the state's version differs from `since` (at once when `since` is
/// `None`), at most [`MAX_WAIT`] or until the coordinator closes; returns the version to
/// read the state at.
pub async fn wait_for_change(coord: &Coordinator, since: Option<u64>) -> u64 {
    let sub = coord.subscribe();
    let (mut changes, mut closing) = (sub.changes, sub.closing);
    if let Some(since) = since {
        let _ = tokio::time::timeout(MAX_WAIT, async {
            tokio::select! {
                _ = changes.wait_for(|v| *v != since) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        })
        .await;
    }
    let version = *changes.borrow();
    version
}
