//! The worker-facing service: register, acquire, progress, complete, fail, release and
//! checkpoint transfer. Every message about a run is fenced on (worker, run, attempt), and
//! every message after `Register` must carry that worker's session secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ablate_common::proto::{self, workers_server::Workers, SESSION_METADATA_KEY};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::convert::{
    attempt_ref, blocking, check_devices, check_len, truncate, MAX_ID_BYTES, MAX_REASON_BYTES,
};
use crate::rpc::session::Sessions;
use crate::state::checkpoints::CHUNK_BYTES;
use crate::state::{AttemptRef, Coordinator, Progress, Registration};

/// Checkpoint uploads one worker may have in flight at once.
pub(crate) const MAX_UPLOADS_PER_WORKER: usize = 2;

/// An upload with no chunk for this long is dropped.
pub(crate) const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The `Workers` service.
#[derive(Debug, Clone)]
pub struct WorkersService {
    coord: Arc<Coordinator>,
    sessions: Sessions,
    lease_ttl_ms: u64,
    in_flight: InFlight,
}

impl WorkersService {
    /// A service over the coordinator state, issuing and checking `sessions`.
    pub fn new(coord: Arc<Coordinator>, sessions: Sessions) -> WorkersService {
        let lease_ttl_ms = coord.lease_ttl_ms();
        WorkersService {
            coord,
            sessions,
            lease_ttl_ms,
            in_flight: InFlight::default(),
        }
    }
}

impl WorkersService {
    /// The attempt a worker's call names, once the call's session proves it comes from
    /// that worker.
    fn caller_attempt(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        worker_id: String,
        run_id: String,
        attempt: u32,
    ) -> Result<AttemptRef, Status> {
        let a = attempt_ref(worker_id, run_id, attempt)?;
        self.sessions.check(metadata, &a.worker_id)?;
        Ok(a)
    }
}

/// A worker's reason, trimmed and capped; "no reason given" when it sent none.
fn reason_or_default(reason: &str) -> String {
    match reason.trim() {
        "" => "no reason given".to_string(),
        reason => truncate(reason, MAX_REASON_BYTES),
    }
}

/// Uploads in flight per worker.
#[derive(Debug, Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<String, usize>>>);

/// One upload's place in [`InFlight`], given back when dropped.
struct InFlightSlot {
    counts: InFlight,
    worker: String,
}

impl InFlight {
    fn take(&self, worker: &str) -> Result<InFlightSlot, Status> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(worker.to_string()).or_insert(0);
        if *n >= MAX_UPLOADS_PER_WORKER {
            return Err(Status::resource_exhausted(format!(
                "worker {worker} already has {n} checkpoint uploads in flight (limit \
                 {MAX_UPLOADS_PER_WORKER} per worker)"
            )));
        }
        *n += 1;
        Ok(InFlightSlot {
            counts: self.clone(),
            worker: worker.to_string(),
        })
    }
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.worker) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.worker);
            }
        }
    }
}

/// The next chunk of an upload, or an error once none came for [`UPLOAD_IDLE_TIMEOUT`].
async fn next_chunk(
    stream: &mut Streaming<proto::CheckpointChunk>,
) -> Result<Option<proto::CheckpointChunk>, Status> {
    match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, stream.message()).await {
        Ok(message) => message,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "checkpoint upload idle: no chunk for {} s (idle upload timeout)",
            UPLOAD_IDLE_TIMEOUT.as_secs()
        ))),
    }
}

#[tonic::async_trait]
impl Workers for WorkersService {
    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let mut registration = Registration::try_from(r)?;
        if let Some(id) = registration.worker_id.clone() {
            if !self.sessions.verify(&metadata, &id) {
                let coord = self.coord.clone();
                let known = blocking(move || Ok(coord.has_worker(&id))).await?;
                if known {
                    // Someone else's id: no takeover of its leases.
                    self.sessions
                        .check(&metadata, registration.worker_id.as_deref().unwrap_or(""))?;
                }
                // An id this coordinator never issued (or forgot): a fresh registration.
                registration.worker_id = None;
            }
        }
        let coord = self.coord.clone();
        let (worker_id, held) = blocking(move || Ok(coord.register(registration)?)).await?;
        let secret = self.sessions.secret(&worker_id);
        let mut response = Response::new(proto::RegisterResponse {
            worker_id,
            lease_ttl_ms: self.lease_ttl_ms,
            held: held.into_iter().map(Into::into).collect(),
        });
        let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = secret
            .parse()
            .map_err(|_| Status::internal("session secret is not a header value"))?;
        value.set_sensitive(true);
        response.metadata_mut().insert(SESSION_METADATA_KEY, value);
        Ok(response)
    }

    async fn acquire(
        &self,
        request: Request<proto::AcquireRequest>,
    ) -> Result<Response<proto::AcquireResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        check_len("worker_id", &r.worker_id, MAX_ID_BYTES)?;
        check_devices("free_devices", r.free_devices.iter().map(String::as_str))?;
        if r.worker_id.trim().is_empty() {
            return Err(Status::invalid_argument("worker_id: required"));
        }
        self.sessions.check(&metadata, r.worker_id.trim())?;
        let coord = self.coord.clone();
        let assignment =
            blocking(move || Ok(coord.acquire(r.worker_id.trim(), &r.free_devices)?)).await?;
        Ok(Response::new(proto::AcquireResponse {
            assignment: assignment.map(Into::into),
        }))
    }

    async fn progress(
        &self,
        request: Request<proto::ProgressRequest>,
    ) -> Result<Response<proto::ProgressResponse>, Status> {
        let (metadata, _, r) = request.into_parts();
        let progress = Progress::try_from(r)?;
        self.sessions
            .check(&metadata, &progress.attempt.worker_id)?;
        let coord = self.coord.clone();
        let answer = blocking(move || Ok(coord.progress_answer(progress)?)).await?;
        Ok(Response::new(proto::ProgressResponse {
            cancel: answer.cancel,
            stop: answer.stop.is_some(),
            stop_reason: answer.stop.unwrap_or_default(),
        }))
    }

    async fn complete(
        &self,
        request: Request<proto::CompleteRequest>,
    ) -> Result<Response<proto::Ack>, Status> {
        let (metadata, _, r) = request.into_parts();
        let a = self.caller_attempt(&metadata, r.worker_id, r.run_id, r.attempt)?;
        let coord = self.coord.clone();
        blocking(move || Ok(coord.complete(&a, r.params)?)).await?;
        Ok(Response::new(proto::Ack {}))
    }

    async fn fail(
        &self,
        request: Request<proto::FailRequest>,
    ) -> Result<Response<proto::Ack>, Status> {
        let (metadata, _, r) = request.into_parts();
        let a = self.caller_attempt(&metadata, r.worker_id, r.run_id, r.attempt)?;
        let reason = reason_or_default(&r.reason);
        let coord = self.coord.clone();
        blocking(move || Ok(coord.fail(&a, &reason, r.permanent)?)).await?;
        Ok(Response::new(proto::Ack {}))
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::Ack>, Status> {
        let (metadata, _, r) = request.into_parts();
        let a = self.caller_attempt(&metadata, r.worker_id, r.run_id, r.attempt)?;
        let coord = self.coord.clone();
        let reason = truncate(r.reason.trim(), MAX_REASON_BYTES);
        blocking(move || Ok(coord.release(&a, &reason)?)).await?;
        Ok(Response::new(proto::Ack {}))
    }

    async fn leave(
        &self,
        request: Request<proto::LeaveRequest>,
    ) -> Result<Response<proto::Ack>, Status> {
        let (metadata, _, r) = request.into_parts();
        check_len("worker_id", &r.worker_id, MAX_ID_BYTES)?;
        self.sessions.check(&metadata, &r.worker_id)?;
        let reason = reason_or_default(&r.reason);
        let coord = self.coord.clone();
        blocking(move || Ok(coord.leave(&r.worker_id, &reason)?)).await?;
        Ok(Response::new(proto::Ack {}))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<Streaming<proto::CheckpointChunk>>,
    ) -> Result<Response<proto::Ack>, Status> {
        let (metadata, _, mut stream) = request.into_parts();
        let first = next_chunk(&mut stream)
            .await?
            .ok_or_else(|| Status::invalid_argument("an upload needs at least one chunk"))?;
        let a = self.caller_attempt(
            &metadata,
            first.worker_id.clone(),
            first.run_id.clone(),
            first.attempt,
        )?;
        if first.epoch == 0 {
            return Err(Status::invalid_argument(
                "epoch: epochs are numbered from 1",
            ));
        }
        if first.sha256.len() != 64 || !first.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Status::invalid_argument(
                "sha256: the first chunk must carry the checkpoint's SHA-256 as 64 hex digits",
            ));
        }
        let epoch = first.epoch;
        {
            let (coord, a) = (self.coord.clone(), a.clone());
            blocking(move || Ok(coord.check_lease(&a)?)).await?;
        }
        let _slot = self.in_flight.take(&a.worker_id)?;
        let mut upload = self
            .coord
            .begin_upload(&a, epoch, first.total_bytes, &first.sha256)
            .await?;
        let mut renewed = Instant::now();
        let renew_every = Duration::from_millis((self.lease_ttl_ms / 4).max(50));
        let mut chunk = first.clone();
        loop {
            upload
                .write(&chunk.data)
                .await
                .map_err(crate::state::CoordError::from)?;
            chunk = match next_chunk(&mut stream).await? {
                Some(c) => c,
                None => break,
            };
            if chunk.run_id != first.run_id
                || chunk.attempt != first.attempt
                || chunk.epoch != epoch
                || chunk.worker_id != first.worker_id
            {
                return Err(Status::invalid_argument(
                    "every chunk of an upload must carry the same worker_id, run_id, attempt and epoch",
                ));
            }
            // Every chunk is fenced (under the state lock: off the async threads); arriving
            // bytes also count as the worker being alive.
            {
                let (coord, a) = (self.coord.clone(), a.clone());
                blocking(move || Ok(coord.check_lease(&a)?)).await?;
            }
            if renewed.elapsed() >= renew_every {
                let coord = self.coord.clone();
                let attempt = a.clone();
                blocking(move || Ok(coord.renew_lease(&attempt)?)).await?;
                renewed = Instant::now();
            }
        }
        upload
            .finish()
            .await
            .map_err(crate::state::CoordError::from)?;
        let bytes = upload.bytes;
        let coord = self.coord.clone();
        blocking(move || Ok(coord.install_checkpoint(&a, epoch, upload)?)).await?;
        debug!(run = %first.run_id, epoch, bytes, "checkpoint stored");
        Ok(Response::new(proto::Ack {}))
    }

    type DownloadCheckpointStream = ReceiverStream<Result<proto::CheckpointChunk, Status>>;

    async fn download_checkpoint(
        &self,
        request: Request<proto::CheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        let (metadata, _, r) = request.into_parts();
        let a = self.caller_attempt(&metadata, r.worker_id, r.run_id, r.attempt)?;
        let found = {
            let (coord, a) = (self.coord.clone(), a.clone());
            blocking(move || Ok(coord.checkpoint_file(&a)?)).await?
        };
        let (tx, rx) = mpsc::channel(4);
        if let Some((epoch, path)) = found {
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Status::internal(format!("checkpoint {}: {e}", path.display())))?;
            let total_bytes = file
                .metadata()
                .await
                .map_err(|e| Status::internal(format!("checkpoint {}: {e}", path.display())))?
                .len();
            let sha256 = match self.coord.checkpoint_sha256(&a.run_id, &path) {
                Some(sha256) => sha256,
                None => {
                    let path = path.clone();
                    blocking(move || {
                        Ok(crate::state::checkpoints::sha256_of_file(&path)
                            .map_err(crate::state::CoordError::from)?)
                    })
                    .await?
                }
            };
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let mut data = Vec::with_capacity(CHUNK_BYTES);
                    match (&mut file)
                        .take(CHUNK_BYTES as u64)
                        .read_to_end(&mut data)
                        .await
                    {
                        Ok(0) => break,
                        Ok(_) => {
                            let chunk = proto::CheckpointChunk {
                                run_id: a.run_id.clone(),
                                attempt: a.attempt,
                                epoch,
                                data,
                                worker_id: a.worker_id.clone(),
                                total_bytes: if first { total_bytes } else { 0 },
                                sha256: if first { sha256.clone() } else { String::new() },
                            };
                            first = false;
                            if tx.send(Ok(chunk)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            warn!(path = %path.display(), "cannot read checkpoint: {e}");
                            let _ = tx
                                .send(Err(Status::internal(format!(
                                    "reading the checkpoint: {e}"
                                ))))
                                .await;
                            break;
                        }
                    }
                }
            });
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
