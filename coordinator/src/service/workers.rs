//! The worker-facing service: register, acquire, progress, complete, fail, release and
//! checkpoint transfer. Every message about a run is fenced on (worker, run, attempt).

use std::sync::Arc;

use ablate_common::proto::{self, workers_server::Workers};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::convert::{attempt_ref, blocking};
use crate::checkpoints::CHUNK_BYTES;
use crate::state::{Coordinator, Progress, Registration};

/// The `Workers` service.
#[derive(Debug, Clone)]
pub struct WorkersService {
    coord: Arc<Coordinator>,
}

impl WorkersService {
    /// A service over the coordinator state.
    pub fn new(coord: Arc<Coordinator>) -> WorkersService {
        WorkersService { coord }
    }
}

#[tonic::async_trait]
impl Workers for WorkersService {
    async fn register(
        &self,
        request: Request<proto::RegisterRequest>,
    ) -> Result<Response<proto::RegisterResponse>, Status> {
        let registration = Registration::try_from(request.into_inner())?;
        let coord = self.coord.clone();
        let (worker_id, held) = blocking(move || Ok(coord.register(registration)?)).await?;
        Ok(Response::new(proto::RegisterResponse {
            worker_id,
            lease_ttl_ms: self.coord.lease_ttl_ms(),
            held: held.into_iter().map(Into::into).collect(),
        }))
    }

    async fn acquire(
        &self,
        request: Request<proto::AcquireRequest>,
    ) -> Result<Response<proto::AcquireResponse>, Status> {
        let r = request.into_inner();
        if r.worker_id.trim().is_empty() {
            return Err(Status::invalid_argument("worker_id: required"));
        }
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
        let progress = Progress::try_from(request.into_inner())?;
        let coord = self.coord.clone();
        let cancel = blocking(move || Ok(coord.progress(progress)?)).await?;
        Ok(Response::new(proto::ProgressResponse { cancel }))
    }

    async fn complete(
        &self,
        request: Request<proto::CompleteRequest>,
    ) -> Result<Response<proto::Ack>, Status> {
        let r = request.into_inner();
        let a = attempt_ref(r.worker_id, r.run_id, r.attempt)?;
        let coord = self.coord.clone();
        blocking(move || Ok(coord.complete(&a, r.params)?)).await?;
        Ok(Response::new(proto::Ack {}))
    }

    async fn fail(
        &self,
        request: Request<proto::FailRequest>,
    ) -> Result<Response<proto::Ack>, Status> {
        let r = request.into_inner();
        let a = attempt_ref(r.worker_id, r.run_id, r.attempt)?;
        let reason = match r.reason.trim() {
            "" => "no reason given".to_string(),
            reason => reason.to_string(),
        };
        let coord = self.coord.clone();
        blocking(move || Ok(coord.fail(&a, &reason, r.permanent)?)).await?;
        Ok(Response::new(proto::Ack {}))
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::Ack>, Status> {
        let r = request.into_inner();
        let a = attempt_ref(r.worker_id, r.run_id, r.attempt)?;
        let coord = self.coord.clone();
        blocking(move || Ok(coord.release(&a, r.reason.trim())?)).await?;
        Ok(Response::new(proto::Ack {}))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<Streaming<proto::CheckpointChunk>>,
    ) -> Result<Response<proto::Ack>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an upload needs at least one chunk"))?;
        let a = attempt_ref(first.worker_id.clone(), first.run_id.clone(), first.attempt)?;
        if first.epoch == 0 {
            return Err(Status::invalid_argument(
                "epoch: epochs are numbered from 1",
            ));
        }
        let epoch = first.epoch;
        self.coord.check_lease(&a)?;
        let mut upload = self.coord.begin_upload(&a, epoch).await?;
        upload
            .write(&first.data)
            .await
            .map_err(crate::state::CoordError::from)?;
        while let Some(chunk) = stream.message().await? {
            if chunk.run_id != first.run_id
                || chunk.attempt != first.attempt
                || chunk.epoch != epoch
                || chunk.worker_id != first.worker_id
            {
                return Err(Status::invalid_argument(
                    "every chunk of an upload must carry the same worker_id, run_id, attempt and epoch",
                ));
            }
            upload
                .write(&chunk.data)
                .await
                .map_err(crate::state::CoordError::from)?;
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
        let r = request.into_inner();
        let a = attempt_ref(r.worker_id, r.run_id, r.attempt)?;
        let found = self.coord.checkpoint_file(&a)?;
        let (tx, rx) = mpsc::channel(4);
        if let Some((epoch, path)) = found {
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Status::internal(format!("checkpoint {}: {e}", path.display())))?;
            tokio::spawn(async move {
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
                            };
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
