//! Checkpoint transfers with the coordinator, streamed between files and the wire in
//! chunks (a checkpoint is never whole in memory), each with its size and SHA-256.
//!
//! Uploads run in the background, one at a time, while the next epoch trains: a newer
//! checkpoint replaces one still waiting (only the newest matters for a resume). A
//! download is verified against the coordinator's SHA-256 before training may resume from
//! it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ablate_common::proto::{CheckpointChunk, CheckpointRequest};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tonic::Code;

use super::connection::{is_transient, Client};
use super::liveness::AttemptIds;
use super::test_hooks;

/// Size of one checkpoint chunk on the wire.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Tries of one upload while the coordinator is away.
const UPLOAD_TRIES: u32 = 5;

/// Lower-case hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and SHA-256 of a file, read in chunks.
fn size_and_sha256(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

/// Reads the checkpoint at `path` and writes it, verified, to `target` (through a
/// temporary file, renamed only once size and SHA-256 match). Returns the bytes written.
pub(crate) async fn download(
    client: &Client,
    ids: &AttemptIds,
    target: &Path,
) -> Result<u64, String> {
    let request = CheckpointRequest {
        worker_id: ids.worker_id.clone(),
        run_id: ids.run_id.clone(),
        attempt: ids.attempt,
    };
    let mut client = client.clone();
    let mut stream = client
        .download_checkpoint(request)
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let tmp = target.with_extension("download.tmp");
    let io = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut announced: Option<(u64, String)> = None;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        if announced.is_none() {
            announced = Some((chunk.total_bytes, chunk.sha256.clone()));
        }
        hasher.update(&chunk.data);
        file.write_all(&chunk.data).await.map_err(io)?;
        received += chunk.data.len() as u64;
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    drop(file);
    let Some((total, sha256)) = announced else {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err("the coordinator sent no checkpoint although it has one".into());
    };
    let actual = hex(&hasher.finalize());
    if received != total || actual != sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(format!(
            "checkpoint download corrupt: {received} bytes with sha256 {actual}, the \
             coordinator announced {total} bytes with sha256 {sha256}"
        ));
    }
    tokio::fs::rename(&tmp, target).await.map_err(io)?;
    Ok(received)
}

/// What the uploader is doing.
#[derive(Debug, Default)]
struct Slot {
    /// The checkpoint waiting to be sent (epoch, file).
    queued: Option<(u32, PathBuf)>,
    /// An upload is on the wire.
    busy: bool,
}

/// The background uploader of one attempt; stops when dropped.
pub(crate) struct Uploader {
    slot: Arc<Mutex<Slot>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Uploader {
    /// Starts an idle uploader sending on `client`.
    pub(crate) fn start(client: Client, ids: AttemptIds) -> Uploader {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(upload_loop(client, ids, slot.clone(), wake.clone()));
        Uploader { slot, wake, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the checkpoint written after `epoch` (its own file, removed once sent),
    /// replacing one still waiting.
    pub(crate) fn offer(&self, epoch: u32, file: PathBuf) {
        let replaced = self.lock().queued.replace((epoch, file));
        if let Some((old_epoch, old_file)) = replaced {
            tracing::info!(
                "checkpoint of epoch {old_epoch} superseded by epoch {epoch} before its upload"
            );
            let _ = std::fs::remove_file(old_file);
        }
        self.wake.notify_one();
    }

    /// Waits until nothing is queued or on the wire (or `limit` passed); returns whether
    /// the uploader is idle.
    pub(crate) async fn idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            {
                let slot = self.lock();
                if slot.queued.is_none() && !slot.busy {
                    return true;
                }
            }
            if Instant::now() > deadline || self.task.is_finished() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn upload_loop(client: Client, ids: AttemptIds, slot: Arc<Mutex<Slot>>, wake: Arc<Notify>) {
    loop {
        let next = {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            let next = s.queued.take();
            s.busy = next.is_some();
            next
        };
        let Some((epoch, file)) = next else {
            wake.notified().await;
            continue;
        };
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            match upload_file(&client, &ids, epoch, &file).await {
                Err(status) if is_transient(&status) && tries < UPLOAD_TRIES => {
                    let superseded = slot
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .queued
                        .is_some();
                    if superseded {
                        break Err(status);
                    }
                    tracing::warn!(
                        "checkpoint of epoch {epoch} not uploaded ({}); trying again",
                        status.message()
                    );
                    tokio::time::sleep(Duration::from_secs(1 << tries.min(4))).await;
                }
                other => break other,
            }
        };
        let _ = std::fs::remove_file(&file);
        let stale = match outcome {
            Ok((bytes, seconds)) => {
                tracing::info!(
                    run = %ids.run_id,
                    "uploaded checkpoint of epoch {epoch}: {bytes} bytes in {seconds:.2} s"
                );
                false
            }
            Err(status) => {
                // Not fatal: training goes on, and the next epoch's checkpoint is tried.
                tracing::warn!(
                    run = %ids.run_id,
                    "checkpoint of epoch {epoch} not stored by the coordinator: {}",
                    status.message()
                );
                matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::NotFound | Code::Aborted
                )
            }
        };
        slot.lock().unwrap_or_else(|e| e.into_inner()).busy = false;
        if stale {
            // The attempt is fenced off; the heartbeat reports it to the session.
            return;
        }
    }
}

/// Streams one checkpoint file; returns its size and the seconds the upload took.
async fn upload_file(
    client: &Client,
    ids: &AttemptIds,
    epoch: u32,
    file: &Path,
) -> Result<(u64, f64), tonic::Status> {
    let started = Instant::now();
    let path = file.to_path_buf();
    let (total_bytes, sha256) = tokio::task::spawn_blocking(move || size_and_sha256(&path))
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .map_err(|e| tonic::Status::internal(format!("{}: {e}", file.display())))?;
    let (tx, rx) = mpsc::channel::<CheckpointChunk>(2);
    let path = file.to_path_buf();
    let ids_for_reader = ids.clone();
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let delay = test_hooks::delay(test_hooks::UPLOAD_CHUNK_DELAY_MS);
        let mut file = std::fs::File::open(&path)?;
        let mut first = true;
        loop {
            let mut data = vec![0u8; CHUNK_BYTES];
            let mut filled = 0;
            while filled < CHUNK_BYTES {
                let n = file.read(&mut data[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 && !first {
                return Ok(());
            }
            data.truncate(filled);
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            let chunk = CheckpointChunk {
                run_id: ids_for_reader.run_id.clone(),
                attempt: ids_for_reader.attempt,
                epoch,
                data,
                worker_id: ids_for_reader.worker_id.clone(),
                total_bytes: if first { total_bytes } else { 0 },
                sha256: if first { sha256.clone() } else { String::new() },
            };
            first = false;
            if tx.blocking_send(chunk).is_err() || filled < CHUNK_BYTES {
                return Ok(());
            }
        }
    });
    let mut client = client.clone();
    let sent = client
        .upload_checkpoint(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let read = reader
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    sent?;
    read.map_err(|e| tonic::Status::internal(format!("{}: {e}", file.display())))?;
    Ok((total_bytes, started.elapsed().as_secs_f64()))
}
