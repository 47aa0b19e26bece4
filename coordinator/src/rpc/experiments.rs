//! The user-facing service: submit, list, get, watch, cancel, report, resume.

use std::sync::Arc;
use std::time::Duration;

use ablate_common::proto::{self, experiments_server::Experiments};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{blocking, launched_job, summary, worker_entry};
use crate::report::{self, Format};
use crate::state::Coordinator;

/// Watchers get at most one status per this interval (progress arrives many times a second).
const WATCH_THROTTLE: Duration = Duration::from_millis(250);

/// The `Experiments` service.
#[derive(Debug, Clone)]
pub struct ExperimentsService {
    coord: Arc<Coordinator>,
}

impl ExperimentsService {
    /// A service over the coordinator state.
    pub fn new(coord: Arc<Coordinator>) -> ExperimentsService {
        ExperimentsService { coord }
    }
}

/// The longest experiment id, name or run id a user may send.
const MAX_KEY_BYTES: usize = 256;

/// The submitting user's name from the `ablate-user` metadata (`""` when absent).
fn submitting_user(metadata: &tonic::metadata::MetadataMap) -> Result<String, Status> {
    use crate::scheduling::users::{check_user_name, USER_METADATA_KEY};
    let Some(value) = metadata.get(USER_METADATA_KEY) else {
        return Ok(String::new());
    };
    let name = value.to_str().map_err(|_| {
        Status::invalid_argument(format!("{USER_METADATA_KEY}: not printable ASCII"))
    })?;
    check_user_name(name)
        .map_err(|e| Status::invalid_argument(format!("{USER_METADATA_KEY}: {e}")))?;
    Ok(name.to_string())
}

fn experiment_key(value: String) -> Result<String, Status> {
    required_key(value, "experiment", "an id or a name")
}

/// A key field (experiment, run or target) checked: capped, trimmed, not empty; the
/// errors name `field` and say what it should be (`what`).
fn required_key(value: String, field: &str, what: &str) -> Result<String, Status> {
    if value.len() > MAX_KEY_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field}: {} bytes long; the limit is {MAX_KEY_BYTES}",
            value.len()
        )));
    }
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field}: required ({what})"
        )));
    }
    Ok(value)
}

#[tonic::async_trait]
impl Experiments for ExperimentsService {
    async fn submit(
        &self,
        request: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitResponse>, Status> {
        let user = submitting_user(request.metadata())?;
        let r = request.into_inner();
        if r.grid_toml.trim().is_empty() {
            return Err(Status::invalid_argument("grid_toml: the grid is empty"));
        }
        if r.grid_toml.len() > ablate_common::spec::grid::MAX_GRID_FILE_BYTES {
            return Err(Status::invalid_argument(format!(
                "grid_toml: the grid is {} bytes; the limit is {}",
                r.grid_toml.len(),
                ablate_common::spec::grid::MAX_GRID_FILE_BYTES
            )));
        }
        if r.file_name.len() > MAX_KEY_BYTES {
            return Err(Status::invalid_argument(format!(
                "file_name: {} bytes long; the limit is {MAX_KEY_BYTES}",
                r.file_name.len()
            )));
        }
        let file_name = match r.file_name.trim() {
            "" => "grid.toml".to_string(),
            name => name.to_string(),
        };
        let coord = self.coord.clone();
        let submitted = blocking(move || {
            super::test_hold::pause("submit");
            Ok(coord.submit_as(&r.grid_toml, &file_name, &user)?)
        })
        .await?;
        Ok(Response::new(proto::SubmitResponse {
            experiment_id: submitted.id,
            name: submitted.name,
            runs: submitted.runs,
            warnings: submitted.warnings,
        }))
    }

    async fn list(
        &self,
        _request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let coord = self.coord.clone();
        let experiments = blocking(move || Ok(coord.experiments()?)).await?;
        Ok(Response::new(proto::ListResponse {
            experiments: experiments.iter().map(summary).collect(),
        }))
    }

    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::ExperimentStatus>, Status> {
        let key = experiment_key(request.into_inner().experiment)?;
        let coord = self.coord.clone();
        let status =
            blocking(move || Ok(proto::ExperimentStatus::from(&coord.status(&key)?))).await?;
        Ok(Response::new(status))
    }

    type WatchStream = ReceiverStream<Result<proto::ExperimentStatus, Status>>;

    async fn watch(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let key = experiment_key(request.into_inner().experiment)?;
        // Resolve the name now: a later experiment with the same name is another one.
        let coord = self.coord.clone();
        let id = blocking(move || Ok(coord.status(&key)?.experiment.id)).await?;
        let coord = self.coord.clone();
        let mut subscription = coord.subscribe();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut last: Option<proto::ExperimentStatus> = None;
            loop {
                subscription.changes.borrow_and_update();
                let read = {
                    let (coord, id) = (coord.clone(), id.clone());
                    blocking(move || {
                        let status = coord.status(&id)?;
                        Ok((
                            status.experiment.is_done(),
                            proto::ExperimentStatus::from(&status),
                        ))
                    })
                    .await
                };
                let (done, message) = match read {
                    Ok(read) => read,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if last.as_ref() != Some(&message) {
                    if tx.send(Ok(message.clone())).await.is_err() {
                        return;
                    }
                    last = Some(message);
                }
                if done {
                    return;
                }
                tokio::select! {
                    changed = subscription.changes.changed() => if changed.is_err() { return },
                    _ = subscription.closing.wait_for(|closing| *closing) => return,
                    _ = tx.closed() => return,
                }
                tokio::time::sleep(WATCH_THROTTLE).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel(
        &self,
        request: Request<proto::CancelRequest>,
    ) -> Result<Response<proto::CancelResponse>, Status> {
        let target = required_key(
            request.into_inner().target,
            "target",
            "an experiment or a run",
        )?;
        let coord = self.coord.clone();
        let cancelled_runs = blocking(move || Ok(coord.cancel(&target)?)).await?;
        Ok(Response::new(proto::CancelResponse { cancelled_runs }))
    }

    async fn report(
        &self,
        request: Request<proto::ReportRequest>,
    ) -> Result<Response<proto::ReportResponse>, Status> {
        let r = request.into_inner();
        let key = experiment_key(r.experiment)?;
        let format: Format = match r.format.trim() {
            "" => Format::Markdown,
            f => f.parse().map_err(|e: report::UnknownFormat| {
                Status::invalid_argument(format!("format: {e}"))
            })?,
        };
        let coord = self.coord.clone();
        // Reading and rendering both block (SQLite, charts): off the async threads.
        let response = blocking(move || {
            super::test_hold::pause("report");
            let data = coord.report_data(&key)?;
            Ok(proto::ReportResponse {
                content: report::render(&data, format),
                experiment_id: data.experiment.id,
                experiment_name: data.experiment.name,
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn resume(
        &self,
        request: Request<proto::ResumeRequest>,
    ) -> Result<Response<proto::ResumeResponse>, Status> {
        let target = required_key(
            request.into_inner().target,
            "target",
            "a stopped run, or an experiment",
        )?;
        let coord = self.coord.clone();
        let run_ids = blocking(move || Ok(coord.resume(&target)?)).await?;
        Ok(Response::new(proto::ResumeResponse { run_ids }))
    }

    async fn list_workers(
        &self,
        _request: Request<proto::WorkerInfoRequest>,
    ) -> Result<Response<proto::WorkerInfoList>, Status> {
        // `workers` reads the scheduler under the state lock: off the async threads.
        let coord = self.coord.clone();
        let (workers, launched) =
            blocking(move || Ok((coord.workers(), coord.launcher_board()))).await?;
        Ok(Response::new(proto::WorkerInfoList {
            workers: workers.iter().map(worker_entry).collect(),
            jobs: launched.jobs.iter().map(launched_job).collect(),
            launcher: launched.engine.clone(),
        }))
    }
}
