//! Single-node mode's parts: finding the `ablate-worker` binary, sharing the local devices
//! among local workers, and starting and stopping those worker processes. The command
//! itself (`ablate run`) is in the CLI; it runs an in-process coordinator on a loopback
//! port and talks to it over gRPC, the same wire path as a cluster.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::rpc::auth::Token;

/// The worker binary's file name.
pub const WORKER_BINARY: &str = "ablate-worker";

/// Errors of single-node mode.
#[derive(Debug, thiserror::Error)]
pub enum SingleNodeError {
    /// The worker binary is neither next to `ablate` nor on `PATH`.
    #[error(
        "cannot find `{WORKER_BINARY}`: not in {next_to} (next to this executable) and not on \
         PATH; build it (`cargo build --release -p ablate-worker`) or pass --worker-bin"
    )]
    WorkerNotFound {
        /// The directory of the current executable.
        next_to: String,
    },
    /// `--devices` / `--workers` that do not fit together.
    #[error("--devices {devices} with --workers {workers}: {message}")]
    Devices {
        /// The devices given.
        devices: String,
        /// Workers asked for.
        workers: usize,
        /// What is wrong.
        message: String,
    },
    /// A worker process cannot be started.
    #[error("cannot start {program}: {cause}")]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A log file or directory cannot be created.
    #[error("{path}: {cause}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// `ablate-worker` next to the current executable, else on `PATH`.
pub fn find_worker_binary() -> Result<PathBuf, SingleNodeError> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    find_worker_in(exe_dir.as_deref(), std::env::var_os("PATH"))
}

fn find_worker_in(
    exe_dir: Option<&Path>,
    path: Option<OsString>,
) -> Result<PathBuf, SingleNodeError> {
    let is_file = |p: &Path| p.is_file();
    if let Some(dir) = exe_dir {
        let candidate = dir.join(WORKER_BINARY);
        if is_file(&candidate) {
            return Ok(candidate);
        }
    }
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(WORKER_BINARY);
            if is_file(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(SingleNodeError::WorkerNotFound {
        next_to: exe_dir
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "<unknown directory>".into()),
    })
}

/// The `--devices` value of each local worker: `cpu`/`cpu:N` for every worker, `auto` for
/// one worker, a `cuda:` list split into contiguous, near-equal groups.
pub fn split_devices(devices: &str, workers: usize) -> Result<Vec<String>, SingleNodeError> {
    let err = |message: String| SingleNodeError::Devices {
        devices: devices.to_string(),
        workers,
        message,
    };
    if workers == 0 {
        return Err(err("at least one worker".into()));
    }
    let devices_trim = devices.trim();
    if devices_trim == "auto" {
        if workers > 1 {
            return Err(err(
                "`auto` gives every local device to one worker; name the devices to share them \
                 (e.g. --devices cuda:0,1,2,3)"
                    .into(),
            ));
        }
        return Ok(vec!["auto".into()]);
    }
    match ablate_common::spec::DeviceList::parse(devices_trim).map_err(|e| err(e.to_string()))? {
        ablate_common::spec::DeviceList::Cpu(_) => Ok(vec![devices_trim.to_string(); workers]),
        ablate_common::spec::DeviceList::Cuda(ordinals) => {
            if ordinals.len() < workers {
                return Err(err(format!(
                    "{} GPU(s) cannot be shared by {workers} workers",
                    ordinals.len()
                )));
            }
            let base = ordinals.len() / workers;
            let extra = ordinals.len() % workers;
            let mut out = Vec::with_capacity(workers);
            let mut next = 0;
            for w in 0..workers {
                let n = base + usize::from(w < extra);
                let group: Vec<String> = ordinals[next..next + n]
                    .iter()
                    .map(|o| o.to_string())
                    .collect();
                next += n;
                out.push(format!("cuda:{}", group.join(",")));
            }
            Ok(out)
        }
    }
}

/// One local worker process.
#[derive(Debug)]
struct LocalWorker {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

/// The local worker processes of `ablate run`.
#[derive(Debug)]
pub struct LocalWorkers {
    workers: Vec<LocalWorker>,
}

/// How to start the local workers.
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    /// The `ablate-worker` binary.
    pub program: PathBuf,
    /// The coordinator URL (loopback).
    pub url: String,
    /// The worker token, handed over in the environment (never on the command line).
    pub token: Token,
    /// Each worker's `--devices`.
    pub devices: Vec<String>,
    /// Each worker's `--data-root`s (the grid's dataset roots; empty: the worker default).
    pub data_roots: Vec<PathBuf>,
    /// Each worker's `--threads`.
    pub threads: Option<usize>,
    /// Logs go to `<data_dir>/logs/`, work dirs to `<data_dir>/workers/`.
    pub data_dir: PathBuf,
}

impl LocalWorkers {
    /// Starts one worker per device set; their output goes to log files.
    pub fn spawn(launch: &WorkerLaunch) -> Result<LocalWorkers, SingleNodeError> {
        let logs = launch.data_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|cause| SingleNodeError::Io {
            path: logs.clone(),
            cause,
        })?;
        let mut workers = Vec::new();
        for (i, devices) in launch.devices.iter().enumerate() {
            let name = format!("local-{i}");
            let log = logs.join(format!("worker-{i}.log"));
            let file = std::fs::File::create(&log).map_err(|cause| SingleNodeError::Io {
                path: log.clone(),
                cause,
            })?;
            let err_file = file.try_clone().map_err(|cause| SingleNodeError::Io {
                path: log.clone(),
                cause,
            })?;
            let mut command = Command::new(&launch.program);
            command
                .arg("--coordinator")
                .arg(&launch.url)
                .arg("--devices")
                .arg(devices)
                .arg("--name")
                .arg(&name)
                .arg("--work-dir")
                .arg(launch.data_dir.join("workers").join(&name))
                .env("ABLATE_WORKER_TOKEN", launch.token.expose())
                // The user's own settings for a remote coordinator do not apply here.
                .env_remove("ABLATE_TOKEN")
                .env_remove("ABLATE_WORKER_TOKEN_FILE")
                .env_remove("ABLATE_CA")
                .env_remove("ABLATE_TLS_CERT")
                .env_remove("ABLATE_TLS_KEY")
                .stdin(Stdio::null())
                .stdout(Stdio::from(file))
                .stderr(Stdio::from(err_file))
                .kill_on_drop(true);
            for root in &launch.data_roots {
                command.arg("--data-root").arg(root);
            }
            if let Some(threads) = launch.threads {
                command.arg("--threads").arg(threads.to_string());
            }
            detach_signals(&mut command);
            let child = command.spawn().map_err(|cause| SingleNodeError::Spawn {
                program: launch.program.clone(),
                cause,
            })?;
            info!(worker = %name, devices = %devices, log = %log.display(), "started a local worker");
            workers.push(LocalWorker {
                name,
                child,
                log,
                status: None,
            });
        }
        Ok(LocalWorkers { workers })
    }

    /// The log files, one per worker.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.workers.iter().map(|w| w.log.clone()).collect()
    }

    fn poll(&mut self) {
        for w in &mut self.workers {
            if w.status.is_none() {
                if let Ok(Some(status)) = w.child.try_wait() {
                    warn!(worker = %w.name, %status, "local worker exited");
                    w.status = Some(status);
                }
            }
        }
    }

    /// Completes when every worker has exited (on its own: a crash, a bad token…).
    pub async fn all_exited(&mut self) {
        loop {
            self.poll();
            if self.workers.iter().all(|w| w.status.is_some()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A line per exited worker: its status and log file.
    pub fn exits(&mut self) -> Vec<String> {
        self.poll();
        self.workers
            .iter()
            .filter_map(|w| {
                let status = w.status?;
                Some(format!(
                    "{} exited with {status} (log: {})",
                    w.name,
                    w.log.display()
                ))
            })
            .collect()
    }

    /// Asks every worker to stop (SIGTERM: they release their runs), waits up to `grace`,
    /// then kills what is left.
    pub async fn stop(&mut self, grace: Duration) {
        for w in &mut self.workers {
            if w.status.is_some() {
                continue;
            }
            if let Some(pid) = w.child.id() {
                terminate(pid);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        for w in &mut self.workers {
            if w.status.is_some() {
                continue;
            }
            match tokio::time::timeout_at(deadline, w.child.wait()).await {
                Ok(Ok(status)) => w.status = Some(status),
                _ => {
                    warn!(worker = %w.name, "did not stop in time; killing it");
                    let _ = w.child.kill().await;
                    w.status = w.child.try_wait().ok().flatten();
                }
            }
        }
    }
}

/// Workers get their own process group, so that a Ctrl-C at the terminal reaches only
/// `ablate`, which then stops them in order (SIGTERM once: they release their runs; a
/// second signal would make them exit at once). On Linux they are also killed when `ablate`
/// itself dies (even by SIGKILL), so no worker outlives it: the coordinator they report to
/// lived in that process, so there is nobody left to release their runs to (the next
/// `ablate run` of the grid resumes them once their leases lapse).
#[cfg(unix)]
fn detach_signals(command: &mut Command) {
    command.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // prctl(2), getppid(2) and _exit(2), which are async-signal-safe; it touches no
        // memory of the parent besides the copied pid.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died between fork and prctl: the signal will never come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

#[cfg(not(unix))]
fn detach_signals(_command: &mut Command) {}

/// Sends SIGTERM.
#[cfg(unix)]
fn terminate(pid: u32) {
    // SAFETY: kill(2) with a pid of a child we spawned and have not reaped; no memory is
    // shared.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(_pid: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_shared_among_workers() {
        assert_eq!(split_devices("cpu", 2).unwrap(), ["cpu", "cpu"]);
        assert_eq!(split_devices("auto", 1).unwrap(), ["auto"]);
        assert_eq!(
            split_devices("cuda:0,1,2,3,4", 2).unwrap(),
            ["cuda:0,1,2", "cuda:3,4"]
        );
        assert_eq!(split_devices("cuda:0,1", 1).unwrap(), ["cuda:0,1"]);
        assert!(split_devices("auto", 2).is_err());
        assert!(split_devices("cuda:0", 2).is_err());
        assert!(split_devices("gpu", 1).is_err());
        assert!(split_devices("cpu", 0).is_err());
    }

    #[test]
    fn the_worker_is_found_next_to_the_executable_then_on_path() {
        let root = std::env::temp_dir().join(format!(
            "ablate-find-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let exe_dir = root.join("bin");
        let path_dir = root.join("path");
        std::fs::create_dir_all(&exe_dir).unwrap();
        std::fs::create_dir_all(&path_dir).unwrap();
        let path = std::env::join_paths([&path_dir]).unwrap();

        let err = find_worker_in(Some(&exe_dir), Some(path.clone())).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&exe_dir.display().to_string()) && text.contains("PATH"),
            "{text}"
        );

        std::fs::write(path_dir.join(WORKER_BINARY), b"").unwrap();
        assert_eq!(
            find_worker_in(Some(&exe_dir), Some(path.clone())).unwrap(),
            path_dir.join(WORKER_BINARY)
        );
        std::fs::write(exe_dir.join(WORKER_BINARY), b"").unwrap();
        assert_eq!(
            find_worker_in(Some(&exe_dir), Some(path)).unwrap(),
            exe_dir.join(WORKER_BINARY)
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
