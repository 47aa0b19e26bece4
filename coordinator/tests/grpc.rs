//! The coordinator through the wire: a real tonic server on 127.0.0.1:0, real clients.
//! Auth, the worker protocol with fencing, lease expiry, cancellation, checkpoints, and a
//! restart on the same data directory.

use std::path::PathBuf;
use std::time::Duration;

use ablate_common::proto::{self, workers_client::WorkersClient, PROTOCOL_VERSION};
use ablate_common::proto::{ExperimentState, RunState, SESSION_METADATA_KEY};
use ablate_coordinator::rpc::auth::{ClientAuth, RoleTokens, Token};
use ablate_coordinator::rpc::client::{self, Client};
use ablate_coordinator::rpc::server::{serve, ServerConfig, ServerError};
use sha2::Digest;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

/// A worker's client and its interceptor (which keeps the session secret).
struct Workers {
    client: WorkersClient<InterceptedService<Channel, ClientAuth>>,
    auth: ClientAuth,
}

impl std::ops::Deref for Workers {
    type Target = WorkersClient<InterceptedService<Channel, ClientAuth>>;
    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl std::ops::DerefMut for Workers {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
    }
}

const GRID: &str = r#"name = "wire"

[base]
image_size = 32
channels = 1
classes = 10
epochs = 2
max_attempts = 2

[grid]
model = ["lenet"]
seed = [1, 2]
"#;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ablate-grpc-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Server {
    async fn start(dir: &std::path::Path, tokens: &RoleTokens, ttl: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = ServerConfig::new(dir.to_path_buf(), Some(tokens.clone()));
        config.lease_ttl = ttl;
        let task = tokio::spawn(serve(config, listener, async {
            let _ = stopped.await;
        }));
        Server {
            url,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops in time")
            .unwrap()
            .unwrap();
    }

    async fn users(&self, token: Option<&Token>) -> Client {
        client::connect(&self.url, token, &Default::default())
            .await
            .unwrap()
    }

    async fn workers(&self, token: Option<&Token>) -> Workers {
        self.workers_with(ClientAuth::with_token(token)).await
    }

    async fn workers_with(&self, auth: ClientAuth) -> Workers {
        let channel = Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Workers {
            client: WorkersClient::with_interceptor(channel, auth.clone()),
            auth,
        }
    }
}

/// A server on a fresh directory with [`GRID`] submitted, and a registered worker that
/// holds the grid's first run.
struct Leased {
    dir: PathBuf,
    tokens: RoleTokens,
    server: Server,
    users: Client,
    w: Workers,
    id: String,
    a: proto::Assignment,
}

impl Leased {
    async fn start(tag: &str) -> Leased {
        let dir = temp_dir(tag);
        let tokens = RoleTokens::generate();
        let server = Server::start(&dir, &tokens, Duration::from_secs(15)).await;
        let mut users = server.users(Some(&tokens.user)).await;
        users
            .submit(proto::SubmitRequest {
                grid_toml: GRID.into(),
                file_name: "g.toml".into(),
            })
            .await
            .unwrap();
        let mut w = server.workers(Some(&tokens.worker)).await;
        let id = register(&mut w, "").await.worker_id;
        let a = acquire(&mut w, &id).await.unwrap();
        Leased {
            dir,
            tokens,
            server,
            users,
            w,
            id,
            a,
        }
    }
}

async fn try_register(
    w: &mut Workers,
    worker_id: &str,
) -> Result<proto::RegisterResponse, tonic::Status> {
    let response = w
        .client
        .register(proto::RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: "test-host".into(),
            devices: vec![proto::Device { name: "cpu".into() }],
            threads: 2,
            worker_id: worker_id.into(),
            data_roots: Vec::new(),
        })
        .await?;
    let secret = response
        .metadata()
        .get(SESSION_METADATA_KEY)
        .expect("Register answers with a session secret");
    w.auth.set_session(secret.to_str().unwrap()).unwrap();
    Ok(response.into_inner())
}

async fn register(w: &mut Workers, worker_id: &str) -> proto::RegisterResponse {
    try_register(w, worker_id).await.unwrap()
}

async fn acquire(w: &mut Workers, worker_id: &str) -> Option<proto::Assignment> {
    w.acquire(proto::AcquireRequest {
        worker_id: worker_id.into(),
        free_devices: vec!["cpu".into()],
    })
    .await
    .unwrap()
    .into_inner()
    .assignment
}

fn epoch(n: u32, acc: f64) -> proto::EpochMetrics {
    proto::EpochMetrics {
        epoch: n,
        train_loss: 1.0 / n as f64,
        train_acc: acc - 0.05,
        eval_loss: 1.1 / n as f64,
        eval_acc: acc,
        lr: 0.001,
        seconds: 1.5,
        images_per_sec: 1000.0,
    }
}

fn progress(
    worker: &str,
    a: &proto::Assignment,
    e: Option<proto::EpochMetrics>,
) -> proto::ProgressRequest {
    proto::ProgressRequest {
        worker_id: worker.into(),
        run_id: a.run_id.clone(),
        attempt: a.attempt,
        steps: vec![proto::StepMetrics {
            epoch: 1,
            step: 3,
            loss: 0.7,
        }],
        epoch: e,
        current_epoch: 1,
        current_step: 3,
        steps_per_epoch: 10,
    }
}

#[tokio::test]
async fn every_rpc_needs_the_token_of_its_role() {
    let dir = temp_dir("auth");
    let tokens = RoleTokens::new(
        Token::new("right-user-token").unwrap(),
        Token::new("right-worker-token").unwrap(),
    )
    .unwrap();
    let server = Server::start(&dir, &tokens, Duration::from_secs(15)).await;

    let wrong = Token::new("wrong-token").unwrap();
    for t in [None, Some(&wrong)] {
        let mut users = server.users(t).await;
        let err = users.list(proto::ListRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(!err.message().contains("right-"));
        let err = users
            .submit(proto::SubmitRequest {
                grid_toml: GRID.into(),
                file_name: "g.toml".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let mut workers = server.workers(t).await;
        let err = try_register(&mut workers, "").await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        let err = workers
            .acquire(proto::AcquireRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    // Each role's token opens its own service only.
    let mut as_user = server.workers(Some(&tokens.user)).await;
    let err = try_register(&mut as_user, "").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("needs the worker token"),
        "{}",
        err.message()
    );
    let mut users_with_worker_token = server.users(Some(&tokens.worker)).await;
    let err = users_with_worker_token
        .list(proto::ListRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("needs the user token"),
        "{}",
        err.message()
    );

    let mut users = server.users(Some(&tokens.user)).await;
    assert!(users.list(proto::ListRequest {}).await.is_ok());
    let mut w = server.workers(Some(&tokens.worker)).await;
    assert!(try_register(&mut w, "").await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_token() {
    let dir = temp_dir("notoken");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServerConfig::new(dir, None);
    let err = serve(config, listener, async {}).await.unwrap_err();
    assert!(matches!(err, ServerError::NoToken), "{err}");
}

#[tokio::test]
async fn a_bad_grid_is_refused_with_its_position_and_the_server_keeps_serving() {
    let dir = temp_dir("badgrid");
    let tokens = RoleTokens::generate();
    let server = Server::start(&dir, &tokens, Duration::from_secs(15)).await;
    let mut users = server.users(Some(&tokens.user)).await;
    let err = users
        .submit(proto::SubmitRequest {
            grid_toml: GRID.replace("epochs = 2", "epochs = 2\nepochz = 3"),
            file_name: "bad.toml".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("bad.toml:8:1: "),
        "{}",
        err.message()
    );
    assert!(err.message().contains("epochz"), "{}", err.message());
    let submitted = users
        .submit(proto::SubmitRequest {
            grid_toml: GRID.into(),
            file_name: "g.toml".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(submitted.runs, 2);
    server.stop().await;
}

#[tokio::test]
async fn runs_are_trained_once_with_fencing_and_epochs_stored_once() {
    let dir = temp_dir("flow");
    let tokens = RoleTokens::generate();
    let server = Server::start(&dir, &tokens, Duration::from_secs(15)).await;
    let mut users = server.users(Some(&tokens.user)).await;
    let submitted = users
        .submit(proto::SubmitRequest {
            grid_toml: GRID.into(),
            file_name: "g.toml".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut watch = users
        .watch(proto::GetRequest {
            experiment: "wire".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let mut w = server.workers(Some(&tokens.worker)).await;
    let reg = register(&mut w, "").await;
    assert_eq!(reg.lease_ttl_ms, 15_000);
    let id = reg.worker_id;
    for (i, seed) in [(0, 1), (1, 2)] {
        let a = acquire(&mut w, &id).await.expect("a queued run");
        assert_eq!(a.attempt, 1);
        assert_eq!(a.name, format!("lenet seed={seed}"));
        assert_eq!(a.devices, ["cpu"]);
        let spec: ablate_common::spec::RunSpec = serde_json::from_str(&a.spec_json).unwrap();
        assert_eq!((spec.model.as_str(), spec.seed), ("lenet", seed));
        assert!(acquire(&mut w, &id).await.is_none(), "the cpu is busy");
        for n in 1..=2 {
            let r = w
                .progress(progress(&id, &a, Some(epoch(n, 0.5 + 0.1 * n as f64))))
                .await
                .unwrap();
            assert!(!r.into_inner().cancel);
        }
        // A repeat of epoch 1 from the same attempt is ignored, not stored twice.
        w.progress(progress(&id, &a, Some(epoch(1, 0.99))))
            .await
            .unwrap();
        // A stale attempt is refused.
        let mut stale = a.clone();
        stale.attempt = 7;
        let err = w.progress(progress(&id, &stale, None)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        // Accuracies are fractions.
        let err = w
            .progress(progress(&id, &a, Some(epoch(2, 87.0))))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("is not a fraction in [0, 1]"),
            "{}",
            err.message()
        );
        w.complete(proto::CompleteRequest {
            worker_id: id.clone(),
            run_id: a.run_id.clone(),
            attempt: a.attempt,
            wall_seconds: 3.0,
            params: 61_706,
        })
        .await
        .unwrap();
        // Completing twice is refused: the lease is gone.
        let err = w
            .complete(proto::CompleteRequest {
                worker_id: id.clone(),
                run_id: a.run_id.clone(),
                attempt: a.attempt,
                wall_seconds: 3.0,
                params: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let _ = i;
    }
    assert!(acquire(&mut w, &id).await.is_none());

    // The watch stream ends once every run is terminal; its last status says finished.
    let mut last = None;
    while let Some(status) = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("watch ends")
        .unwrap()
    {
        last = Some(status);
    }
    let last = last.unwrap();
    assert_eq!(
        last.experiment.as_ref().unwrap().state(),
        ExperimentState::Finished
    );
    assert!(last.runs.iter().all(|r| r.best_eval_acc == Some(0.7)));

    let report = users
        .report(proto::ReportRequest {
            experiment: submitted.experiment_id.clone(),
            format: "json".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let json: serde_json::Value = serde_json::from_str(&report.content).unwrap();
    assert_eq!(json["experiment"]["state"], "finished");
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        let epochs = run["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 2, "each epoch stored once");
        assert_eq!(
            epochs[0]["eval_acc"], 0.6,
            "the first report of an epoch wins"
        );
        assert_eq!(
            run["factors"]["seed"],
            run["name"].as_str().unwrap()[11..].parse::<u32>().unwrap()
        );
        assert_eq!(run["params"], 61_706);
    }
    server.stop().await;
}

#[tokio::test]
async fn lapsed_leases_requeue_with_the_next_attempt_then_fail() {
    let dir = temp_dir("expiry");
    let tokens = RoleTokens::generate();
    let server = Server::start(&dir, &tokens, Duration::from_millis(300)).await;
    let mut users = server.users(Some(&tokens.user)).await;
    users
        .submit(proto::SubmitRequest {
            grid_toml: GRID.replace("seed = [1, 2]", "seed = [1]"),
            file_name: "g.toml".into(),
        })
        .await
        .unwrap();
    let mut w = server.workers(Some(&tokens.worker)).await;
    let id = register(&mut w, "").await.worker_id;
    let first = acquire(&mut w, &id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    // The lease lapsed: the old attempt is refused, the run is back with attempt 2.
    let err = w.progress(progress(&id, &first, None)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let second = acquire(&mut w, &id).await.expect("re-queued");
    assert_eq!(
        (second.run_id.as_str(), second.attempt),
        (first.run_id.as_str(), 2)
    );
    let err = w.progress(progress(&id, &first, None)).await.unwrap_err();
    assert!(err.message().contains("stale"), "{}", err.message());
    // max_attempts = 2: the second lapse fails the run with the reason.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let status = users
        .get(proto::GetRequest {
            experiment: "wire".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.experiment.unwrap().state(), ExperimentState::Failed);
    assert!(
        status.runs[0].error.contains("lease expired"),
        "{}",
        status.runs[0].error
    );
    assert!(acquire(&mut w, &id).await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn cancellation_stops_a_running_run_and_frees_its_devices() {
    let Leased {
        server,
        mut users,
        mut w,
        id,
        a,
        ..
    } = Leased::start("cancel").await;
    let cancelled = users
        .cancel(proto::CancelRequest {
            target: "wire".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.cancelled_runs, 2);
    let r = w
        .progress(progress(&id, &a, None))
        .await
        .unwrap()
        .into_inner();
    assert!(r.cancel, "the worker is told to stop");
    w.release(proto::ReleaseRequest {
        worker_id: id.clone(),
        run_id: a.run_id.clone(),
        attempt: a.attempt,
        reason: "cancelled".into(),
    })
    .await
    .unwrap();
    assert!(acquire(&mut w, &id).await.is_none(), "nothing left to run");
    let status = users
        .get(proto::GetRequest {
            experiment: "wire".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.experiment.unwrap().state(),
        ExperimentState::Cancelled
    );
    let err = users
        .cancel(proto::CancelRequest {
            target: "nothing-by-this-name".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

async fn upload(
    w: &mut Workers,
    worker: &str,
    a: &proto::Assignment,
    epoch: u32,
    parts: &[&[u8]],
) -> Result<(), tonic::Status> {
    let whole: Vec<u8> = parts.concat();
    let sha256: String = sha2::Sha256::digest(&whole)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let chunks: Vec<proto::CheckpointChunk> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| proto::CheckpointChunk {
            run_id: a.run_id.clone(),
            attempt: a.attempt,
            epoch,
            data: p.to_vec(),
            worker_id: worker.into(),
            total_bytes: if i == 0 { whole.len() as u64 } else { 0 },
            sha256: if i == 0 {
                sha256.clone()
            } else {
                String::new()
            },
        })
        .collect();
    w.upload_checkpoint(tokio_stream::iter(chunks))
        .await
        .map(|_| ())
}

async fn download(w: &mut Workers, worker: &str, a: &proto::Assignment) -> Vec<(u32, Vec<u8>)> {
    let mut stream = w
        .download_checkpoint(proto::CheckpointRequest {
            worker_id: worker.into(),
            run_id: a.run_id.clone(),
            attempt: a.attempt,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        out.push((chunk.epoch, chunk.data));
    }
    out
}

#[tokio::test]
async fn a_restart_keeps_runs_leases_epochs_and_checkpoints() {
    let Leased {
        dir,
        tokens,
        server,
        mut w,
        id,
        a,
        ..
    } = Leased::start("restart").await;
    assert!(!a.has_checkpoint);
    w.progress(progress(&id, &a, Some(epoch(1, 0.6))))
        .await
        .unwrap();
    upload(&mut w, &id, &a, 1, &[b"weights ", b"after ", b"epoch 1"])
        .await
        .unwrap();
    // A stale upload is refused and leaves nothing behind.
    let mut stale = a.clone();
    stale.attempt = 9;
    let err = upload(&mut w, &id, &stale, 2, &[b"nope"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.stop().await;

    // The coordinator comes back on the same directory.
    let server = Server::start(&dir, &tokens, Duration::from_secs(15)).await;
    // The worker reconnects with the session it had: the secret survives the restart.
    let mut w = server.workers_with(w.auth.clone()).await;
    let again = register(&mut w, &id).await;
    assert_eq!(again.worker_id, id, "the worker keeps its id");
    assert_eq!(again.held.len(), 1, "and its run");
    let held = &again.held[0];
    assert_eq!((held.run_id.as_str(), held.attempt), (a.run_id.as_str(), 1));
    assert!(held.has_checkpoint);
    assert_eq!(held.completed_epochs, 1);
    let chunks = download(&mut w, &id, held).await;
    let bytes: Vec<u8> = chunks.iter().flat_map(|(_, d)| d.clone()).collect();
    assert_eq!(bytes, b"weights after epoch 1");
    assert!(chunks.iter().all(|(e, _)| *e == 1));
    // The held run goes on; the other one is still queued, nothing ran twice.
    w.progress(progress(&id, held, Some(epoch(2, 0.7))))
        .await
        .unwrap();
    let other = acquire(&mut w, &id).await;
    assert!(other.is_none(), "the cpu is still held by the resumed run");
    let mut users = server.users(Some(&tokens.user)).await;
    let status = users
        .get(proto::GetRequest {
            experiment: "wire".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<RunState> = status.runs.iter().map(|r| r.state()).collect();
    assert_eq!(states, [RunState::Running, RunState::Queued]);
    assert_eq!(status.runs[0].best_eval_acc, Some(0.7));
    server.stop().await;
}

/// Starts an upload whose first chunk announces `total_bytes` and `sha256`; the returned
/// sender feeds further chunks, and the call ends when it is dropped.
async fn open_upload(
    w: &Workers,
    worker: &str,
    a: &proto::Assignment,
    total_bytes: u64,
    sha256: &str,
) -> (
    tokio::sync::mpsc::Sender<proto::CheckpointChunk>,
    JoinHandle<Result<(), tonic::Status>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(proto::CheckpointChunk {
        run_id: a.run_id.clone(),
        attempt: a.attempt,
        epoch: 1,
        data: b"x".to_vec(),
        worker_id: worker.into(),
        total_bytes,
        sha256: sha256.into(),
    })
    .await
    .unwrap();
    let mut w = w.client.clone();
    let call = tokio::spawn(async move {
        w.upload_checkpoint(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map(|_| ())
    });
    (tx, call)
}

#[tokio::test]
async fn checkpoint_uploads_are_capped_verified_limited_and_shown_in_status() {
    let Leased {
        server,
        mut users,
        mut w,
        id,
        a,
        ..
    } = Leased::start("caps").await;
    let sha_x = format!("{:x}", sha2::Sha256::digest(b"x"));

    // Over the cap derived from LeNet's parameters: refused before a byte is stored.
    let (tx, call) = open_upload(&w, &id, &a, 1 << 40, &sha_x).await;
    drop(tx);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains("checkpoint of 1099511627776 bytes exceeds this run's upload cap of"),
        "{}",
        err.message()
    );

    // No checksum, or bytes that do not match it.
    let (tx, call) = open_upload(&w, &id, &a, 1, "").await;
    drop(tx);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("sha256"), "{}", err.message());
    let sha_y = format!("{:x}", sha2::Sha256::digest(b"y"));
    let (tx, call) = open_upload(&w, &id, &a, 1, &sha_y).await;
    drop(tx);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");

    // Two uploads in flight per worker at most; the third is refused, naming the limit.
    let (hold1, call1) = open_upload(&w, &id, &a, 2, &sha_x).await;
    let (hold2, call2) = open_upload(&w, &id, &a, 2, &sha_x).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tx, call) = open_upload(&w, &id, &a, 1, &sha_x).await;
    drop(tx);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message()
            .contains("already has 2 checkpoint uploads in flight (limit 2 per worker)"),
        "{}",
        err.message()
    );
    drop((hold1, hold2));
    assert!(call1.await.unwrap().is_err(), "1 of 2 announced bytes");
    assert!(call2.await.unwrap().is_err());

    // A good upload is stored, and its size shows in the run's status.
    upload(&mut w, &id, &a, 1, &[b"weights ", b"after ", b"epoch 1"])
        .await
        .unwrap();
    let status = users
        .get(proto::GetRequest {
            experiment: "wire".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let run = status.runs.iter().find(|r| r.id == a.run_id).unwrap();
    assert_eq!((run.checkpoint_bytes, run.checkpoint_epoch), (21, 1));
    server.stop().await;
}

#[tokio::test]
async fn a_worker_id_cannot_be_taken_over_without_its_session() {
    let Leased {
        tokens,
        server,
        w: mut victim,
        id,
        a,
        ..
    } = Leased::start("takeover").await;

    // Another holder of the worker token, without the victim's session.
    let mut thief = server.workers(Some(&tokens.worker)).await;
    let err = try_register(&mut thief, &id).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(
        err.message().contains("session secret"),
        "{}",
        err.message()
    );
    // With a session of its own (another id), it still cannot speak for the victim.
    let own = register(&mut thief, "").await.worker_id;
    assert_ne!(own, id);
    let err = thief
        .complete(proto::CompleteRequest {
            worker_id: id.clone(),
            run_id: a.run_id.clone(),
            attempt: a.attempt,
            wall_seconds: 1.0,
            params: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = thief
        .fail(proto::FailRequest {
            worker_id: id.clone(),
            run_id: a.run_id.clone(),
            attempt: a.attempt,
            reason: "x".into(),
            permanent: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = thief.progress(progress(&id, &a, None)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = thief
        .acquire(proto::AcquireRequest {
            worker_id: id.clone(),
            free_devices: vec!["cpu".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = upload(&mut thief, &id, &a, 1, &[b"evil"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = thief
        .download_checkpoint(proto::CheckpointRequest {
            worker_id: id.clone(),
            run_id: a.run_id.clone(),
            attempt: a.attempt,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // An id this coordinator never issued is simply a fresh registration.
    let mut stranger = server.workers(Some(&tokens.worker)).await;
    let fresh = register(&mut stranger, "w-made-up-00000000")
        .await
        .worker_id;
    assert_ne!(fresh, "w-made-up-00000000");

    // The victim is untouched: its lease and run go on.
    let r = victim.progress(progress(&id, &a, None)).await.unwrap();
    assert!(!r.into_inner().cancel);
    victim
        .complete(proto::CompleteRequest {
            worker_id: id.clone(),
            run_id: a.run_id.clone(),
            attempt: a.attempt,
            wall_seconds: 1.0,
            params: 1,
        })
        .await
        .unwrap();
    server.stop().await;
}
