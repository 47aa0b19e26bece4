//! The worker agent: registers with a coordinator, asks for runs that fit its free
//! devices, trains them (one session each) and reports back; reconnects with back-off when
//! the coordinator is away; on SIGTERM stops its runs at the next step and releases them.
//! It leaves (deregisters) when it stops, and after `--exit-when-idle` without a run.

mod connection;
mod error;
mod liveness;
mod session;
pub mod test_hooks;
mod transfer;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ablate_common::auth::ClientAuth;
use ablate_common::proto::{AcquireRequest, LeaveRequest};
use ablate_common::spec::{DeviceError, DeviceList};
use tokio::task::JoinSet;
use tonic::Code;

pub use connection::{is_transient, ConnectionConfig};
pub use error::AgentError;
pub use session::SessionEnd;

/// How often an idle worker asks for work.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The agent's settings (the `ablate-worker` flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Coordinator URL.
    pub url: String,
    /// Shared token (never logged).
    pub token: Option<String>,
    /// `cpu`, `cpu:N`, `cuda:0,1` or `auto`.
    pub devices: String,
    /// Worker name (hostname by default).
    pub name: String,
    /// Where run directories (checkpoints) live.
    pub work_dir: PathBuf,
    /// Intra-op threads in total.
    pub threads: usize,
    /// TLS settings (https with a CA, optional client certificate) or loopback http.
    pub tls: ablate_common::tls::ClientTls,
    /// Datasets are read only under these directories.
    pub data_roots: crate::data::roots::DataRoots,
    /// Leave after this long without a run (`--exit-when-idle`).
    pub exit_when_idle: Option<Duration>,
}

/// The devices a worker offers and how a CPU run trains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Device names offered to the scheduler (`cpu`, or `cuda:i` each).
    pub offered: Vec<String>,
    /// Replicas of a CPU run (`cpu:N` → N).
    pub cpu_devices: DeviceList,
}

/// Resolves `--devices`: `auto` is every CUDA device when there is one, else the CPU.
pub fn inventory(devices: &str) -> Result<Inventory, DeviceError> {
    let list = if devices == "auto" {
        // Never touch CUDA libraries before libtorch says CUDA is there.
        if tch::Cuda::is_available() && tch::Cuda::device_count() > 0 {
            DeviceList::Cuda((0..tch::Cuda::device_count() as usize).collect())
        } else {
            DeviceList::Cpu(1)
        }
    } else {
        DeviceList::parse(devices)?
    };
    crate::devices::check_available(&list)?;
    if list.replicas() > 1 && matches!(list, DeviceList::Cuda(_)) && !crate::devices::NCCL_BUILT {
        tracing::warn!(
            "built without the `cuda` feature: runs across several GPUs will be refused"
        );
    }
    Ok(match list {
        DeviceList::Cpu(_) => Inventory {
            offered: vec!["cpu".into()],
            cpu_devices: list,
        },
        DeviceList::Cuda(_) => Inventory {
            offered: list.names(),
            cpu_devices: DeviceList::Cpu(1),
        },
    })
}

/// How long a leaving worker waits for the coordinator to hear it.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Deregisters (best effort: a coordinator that is away forgets the worker when its
/// liveness window passes).
async fn leave(client: &mut connection::Client, worker_id: &str, reason: &str) {
    let request = LeaveRequest {
        worker_id: worker_id.to_string(),
        reason: reason.to_string(),
    };
    match tokio::time::timeout(LEAVE_TIMEOUT, client.leave(request)).await {
        Ok(Ok(_)) => tracing::info!(worker = %worker_id, "left the coordinator: {reason}"),
        Ok(Err(status)) => tracing::warn!("could not leave the coordinator: {}", status.message()),
        Err(_) => {
            tracing::warn!("could not leave the coordinator: no answer within {LEAVE_TIMEOUT:?}")
        }
    }
}

/// Runs the agent until `shutdown` is set and every run has been released, or until it
/// was idle for `exit_when_idle`.
pub async fn run(config: AgentConfig, shutdown: Arc<AtomicBool>) -> Result<(), AgentError> {
    let inventory = inventory(&config.devices).map_err(AgentError::Devices)?;
    let auth = ClientAuth::new(config.token.as_deref())?;
    let conn = ConnectionConfig {
        url: config.url.clone(),
        auth,
        name: config.name.clone(),
        devices: inventory.offered.clone(),
        threads: config.threads as u32,
        tls: config.tls.clone(),
        data_roots: config.data_roots.shown(),
    };
    let mut client = connection::client(&conn).map_err(AgentError::Connection)?;
    // Heartbeats and checkpoint transfers each on a connection of their own.
    let heartbeat_client = connection::client_with_timeout(&conn, Some(Duration::from_secs(10)))
        .map_err(AgentError::Connection)?;
    let transfer_client =
        connection::client_with_timeout(&conn, None).map_err(AgentError::Connection)?;
    let registered = connection::register(&mut client, &conn, None)
        .await
        .map_err(AgentError::Registration)?;
    let mut worker_id = registered.worker_id.clone();
    let heartbeat = Duration::from_millis((registered.lease_ttl_ms / 4).clamp(200, 2000));
    tracing::info!(worker = %worker_id, devices = ?inventory.offered, "registered with {}", config.url);

    let mut busy: BTreeSet<String> = BTreeSet::new();
    let mut sessions: JoinSet<(Vec<String>, SessionEnd)> = JoinSet::new();
    let mut backoff = POLL_INTERVAL;
    let mut idle_since = Instant::now();
    loop {
        while let Some(done) = sessions.try_join_next() {
            if let Ok((devices, end)) = done {
                tracing::info!("session ended: {end:?}");
                for d in devices {
                    busy.remove(&d);
                }
            }
        }
        let stopping = shutdown.load(Ordering::SeqCst);
        if stopping && sessions.is_empty() {
            leave(&mut client, &worker_id, "shutting down").await;
            tracing::info!("shut down cleanly");
            return Ok(());
        }
        if !sessions.is_empty() {
            idle_since = Instant::now();
        } else if let Some(limit) = config.exit_when_idle.filter(|l| idle_since.elapsed() >= *l) {
            let reason = format!("idle for {limit:?} (--exit-when-idle)");
            tracing::info!("{reason}: leaving");
            leave(&mut client, &worker_id, &reason).await;
            return Ok(());
        }
        let free: Vec<String> = inventory
            .offered
            .iter()
            .filter(|d| !busy.contains(*d))
            .cloned()
            .collect();
        if !stopping && !free.is_empty() {
            let request = AcquireRequest {
                worker_id: worker_id.clone(),
                free_devices: free,
            };
            match client.acquire(request).await {
                Ok(response) => {
                    backoff = POLL_INTERVAL;
                    if let Some(assignment) = response.into_inner().assignment {
                        let devices = assignment.devices.clone();
                        busy.extend(devices.iter().cloned());
                        let ctx = session::SessionContext {
                            client: client.clone(),
                            liveness_client: heartbeat_client.clone(),
                            transfer_client: transfer_client.clone(),
                            worker_id: worker_id.clone(),
                            work_dir: config.work_dir.clone(),
                            cpu_devices: inventory.cpu_devices.clone(),
                            threads: config.threads,
                            data_roots: config.data_roots.clone(),
                            heartbeat,
                            shutdown: shutdown.clone(),
                        };
                        sessions
                            .spawn(async move { (devices, session::run(ctx, assignment).await) });
                        continue;
                    }
                }
                Err(status) if status.code() == Code::NotFound => {
                    // The coordinator lost this worker (e.g. its store was reset): register again.
                    tracing::warn!("coordinator does not know this worker; registering again");
                    worker_id = connection::register(&mut client, &conn, Some(&worker_id))
                        .await
                        .map_err(AgentError::Registration)?
                        .worker_id;
                }
                Err(status) if is_transient(&status) => {
                    tracing::warn!(
                        "coordinator unreachable: {}; retrying in {backoff:?}",
                        status.message()
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(status) => {
                    return Err(AgentError::Refused(status));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Ok((devices, end)) = done {
                    tracing::info!("session ended: {end:?}");
                    for d in devices {
                        busy.remove(&d);
                    }
                }
            }
        }
    }
}
