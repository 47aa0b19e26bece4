//! The launcher's options of `ablate serve`, and the launcher they make.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use sha2::{Digest, Sha256};

use super::runner::SystemRunner;
use super::slurm::{SlurmConfig, SlurmEngine, WorkerCommand};
use super::{Launcher, Limits};
use crate::rpc::auth::RoleTokens;

/// Why the launcher that `ablate serve`'s options ask for cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum LauncherSetupError {
    /// A file the launcher needs cannot be resolved or written.
    #[error("{}: {source}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The launcher directory cannot be created.
    #[error("--launcher-dir {}: {source}", .path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The worker token file cannot be written.
    #[error("worker token file {}: {source}", .path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The directory's permissions cannot be set, or this binary's path is unknown.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// TLS without the CA the workers are to trust.
    #[error(
        "--launcher slurm with --tls-cert needs --worker-ca: the CA file the launched \
         workers trust"
    )]
    NoWorkerCa,
    /// Client certificates required, and none for the workers.
    #[error(
        "--launcher slurm with --tls-client-ca needs --worker-tls-cert and \
         --worker-tls-key for the launched workers"
    )]
    NoWorkerCert,
    /// No `--worker-bin`, and this binary's directory is unknown.
    #[error("cannot tell where ablate-worker is: give --worker-bin")]
    NoWorkerBinDir,
    /// `--worker-bin` is not a file.
    #[error(
        "--worker-bin {}: no such file (give the path of ablate-worker as the nodes see it)",
        .0.display()
    )]
    NoWorkerBin(PathBuf),
    /// A value that would go into the job script is not printable.
    #[error("{0}")]
    NotPrintable(String),
    /// `--worker-env NAME` without a value, and NAME is not set here.
    #[error("--worker-env {0}: not set in this environment")]
    EnvNotSet(String),
}

/// The engines a coordinator can launch workers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LauncherKind {
    /// Worker jobs submitted with `sbatch`.
    Slurm,
}

/// Options of `ablate serve --launcher`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Launcher (workers started on a cluster engine)")]
pub struct LauncherArgs {
    /// Start workers as jobs of this engine when queued runs find no free worker.
    #[arg(long, value_enum)]
    pub launcher: Option<LauncherKind>,
    /// Slurm partition of the worker jobs.
    #[arg(long, value_parser = slurm_word, requires = "launcher")]
    pub partition: Option<String>,
    /// Slurm account the jobs are charged to.
    #[arg(long, value_parser = slurm_word, requires = "launcher")]
    pub account: Option<String>,
    /// Slurm QOS of the jobs.
    #[arg(long, value_parser = slurm_word, requires = "launcher")]
    pub qos: Option<String>,
    /// Time limit of each job, in Slurm's format (`30`, `4:00:00`, `1-00:00:00`).
    #[arg(long, value_parser = slurm_word, requires = "launcher")]
    pub time: Option<String>,
    /// Jobs pending or running at most.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_jobs: u32,
    /// An extra `sbatch` argument (repeatable), e.g. `--sbatch-arg=--constraint=a100`.
    #[arg(long, allow_hyphen_values = true, value_parser = sbatch_arg, requires = "launcher")]
    pub sbatch_arg: Vec<String>,
    /// GPUs of every GPU job, runs packed into them (default: each job as many GPUs as
    /// the run it is for).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64), requires = "launcher")]
    pub gpus_per_job: Option<u32>,
    /// CPUs per GPU of a GPU job.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub cpus_per_gpu: u32,
    /// Memory per GPU of a GPU job (`--mem-per-gpu`).
    #[arg(long, default_value = "32G", value_parser = slurm_memory)]
    pub mem_per_gpu: String,
    /// CPUs of a job for CPU runs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub cpus_per_job: u32,
    /// Memory of a job for CPU runs (`--mem`).
    #[arg(long, default_value = "4G", value_parser = slurm_memory)]
    pub mem_per_job: String,
    /// A launched worker leaves after this long without a run.
    #[arg(long, default_value = "2m", value_parser = idle_duration)]
    pub worker_idle: String,
    /// Slurm sends the worker SIGTERM this long before the job's time limit, so that it
    /// checkpoints and gives its run back.
    #[arg(long, default_value = "120s", value_parser = ablate_common::spec::parse_duration)]
    pub signal_lead: Duration,
    /// The `ablate-worker` binary the jobs run, as the nodes see it (default: the one
    /// next to this `ablate`).
    #[arg(long, requires = "launcher")]
    pub worker_bin: Option<PathBuf>,
    /// The coordinator URL the jobs dial (default: from --listen, with this host's name
    /// for an unspecified address).
    #[arg(long, requires = "launcher")]
    pub worker_url: Option<String>,
    /// The CA file the workers trust (needed with --tls-cert).
    #[arg(long, requires = "launcher")]
    pub worker_ca: Option<PathBuf>,
    /// The workers' client certificate (needed with --tls-client-ca).
    #[arg(long, requires_all = ["launcher", "worker_tls_key"])]
    pub worker_tls_cert: Option<PathBuf>,
    /// Its key (a file only its owner can read).
    #[arg(long, requires_all = ["launcher", "worker_tls_cert"])]
    pub worker_tls_key: Option<PathBuf>,
    /// The name the workers expect on the coordinator's certificate (default: the URL's
    /// host).
    #[arg(long, requires = "launcher")]
    pub worker_tls_domain: Option<String>,
    /// An environment variable of the jobs, NAME=VALUE or NAME (this process's value;
    /// repeatable). LD_LIBRARY_PATH and RUST_LOG are passed when set. No credentials:
    /// the worker token reaches jobs through a file.
    #[arg(long, value_parser = worker_env, requires = "launcher")]
    pub worker_env: Vec<(String, Option<String>)>,
    /// An extra `ablate-worker` argument (repeatable), e.g. `--worker-arg=--data-root=/x`.
    #[arg(long, allow_hyphen_values = true, value_parser = worker_arg, requires = "launcher")]
    pub worker_arg: Vec<String>,
    /// Where launched workers keep their run directories, one `job-<id>` each (default:
    /// `$TMPDIR/ablate-worker-<id>` on the node).
    #[arg(long, requires = "launcher")]
    pub worker_work_dir: Option<PathBuf>,
    /// A directory the nodes see (a shared file system): the worker token file (0600),
    /// the jobs' output and the last batch script (default: DATA_DIR/slurm).
    #[arg(long, requires = "launcher")]
    pub launcher_dir: Option<PathBuf>,
}

/// What the coordinator tells the launcher about itself.
#[derive(Debug)]
pub struct Served<'a> {
    /// The bound address.
    pub addr: SocketAddr,
    /// Whether it serves TLS; whether it asks workers for a client certificate.
    pub tls: bool,
    /// Whether workers must present a client certificate.
    pub client_certs: bool,
    /// Its tokens.
    pub tokens: Option<&'a RoleTokens>,
    /// Its data directory.
    pub data_dir: &'a Path,
}

fn slurm_word(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:,+".contains(&b));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}`: expected 1 to 128 letters, digits or `_-.:,+`"
        ))
    }
}

fn slurm_memory(text: &str) -> Result<String, String> {
    let digits = text.trim_end_matches(['K', 'M', 'G', 'T']);
    if !digits.is_empty()
        && digits.len() + 1 >= text.len()
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(text.to_string())
    } else {
        Err(format!("`{text}`: expected a size like 4096, 500M or 32G"))
    }
}

fn idle_duration(text: &str) -> Result<String, String> {
    ablate_common::spec::parse_duration(text).map_err(|e| e.to_string())?;
    if text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
        Ok(text.to_string())
    } else {
        Err(format!("`{text}`: expected a duration like 90s or 2m"))
    }
}

fn printable(text: &str, what: &str) -> Result<(), String> {
    if text.len() > 4096 || text.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{what} `{}`: control characters or over 4096 bytes",
            text.escape_debug()
        ));
    }
    Ok(())
}

fn sbatch_arg(text: &str) -> Result<String, String> {
    printable(text, "--sbatch-arg")?;
    if !text.starts_with('-') {
        return Err(format!("`{text}`: an sbatch option starts with `-`"));
    }
    Ok(text.to_string())
}

/// Words that name a credential: such variables and arguments never go into a job.
fn names_a_credential(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|w| upper.contains(w))
}

fn worker_arg(text: &str) -> Result<String, String> {
    printable(text, "--worker-arg")?;
    if names_a_credential(text) {
        return Err(format!(
            "`{text}`: credentials never go on a job's command line (the worker token \
             reaches jobs through a file)"
        ));
    }
    Ok(text.to_string())
}

fn worker_env(text: &str) -> Result<(String, Option<String>), String> {
    printable(text, "--worker-env")?;
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (text, None),
    };
    let valid = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if name.is_empty() || !valid {
        return Err(format!("`{name}`: not an environment variable name"));
    }
    if names_a_credential(name) {
        return Err(format!(
            "`{name}`: credentials never go into a job's environment (the worker token \
             reaches jobs through a file)"
        ));
    }
    Ok((name.to_string(), value))
}

/// The job name of a coordinator's jobs: `ablate-` and 8 hex digits of its data directory.
fn job_name(data_dir: &Path) -> String {
    let path = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("ablate-{hex}")
}

/// Writes `text` to `path`, readable by its owner only (written aside, then renamed).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let aside = path.with_extension("new");
    let _ = std::fs::remove_file(&aside);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&aside, path)
}

fn absolute(path: &Path) -> Result<PathBuf, LauncherSetupError> {
    std::path::absolute(path).map_err(|source| LauncherSetupError::File {
        path: path.to_path_buf(),
        source,
    })
}

impl LauncherArgs {
    /// The launcher these options ask for (`None` without `--launcher`): writes the worker
    /// token file and checks what the jobs will need.
    pub fn build(
        &self,
        served: &Served<'_>,
    ) -> Result<Option<Launcher<SlurmEngine<SystemRunner>>>, LauncherSetupError> {
        let Some(LauncherKind::Slurm) = self.launcher else {
            return Ok(None);
        };
        let dir = absolute(
            &self
                .launcher_dir
                .clone()
                .unwrap_or_else(|| served.data_dir.join("slurm")),
        )?;
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(|source| LauncherSetupError::Dir {
            path: dir.clone(),
            source,
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let token_file = match served.tokens {
            Some(tokens) => {
                let file = dir.join("worker.token");
                write_private(&file, tokens.worker.expose()).map_err(|source| {
                    LauncherSetupError::TokenFile {
                        path: file.clone(),
                        source,
                    }
                })?;
                Some(file)
            }
            None => None,
        };
        if served.tls && self.worker_ca.is_none() {
            return Err(LauncherSetupError::NoWorkerCa);
        }
        if served.client_certs && self.worker_tls_cert.is_none() {
            return Err(LauncherSetupError::NoWorkerCert);
        }
        let binary = match &self.worker_bin {
            Some(path) => absolute(path)?,
            None => std::env::current_exe()?
                .parent()
                .map(|d| d.join("ablate-worker"))
                .ok_or(LauncherSetupError::NoWorkerBinDir)?,
        };
        if !binary.is_file() {
            return Err(LauncherSetupError::NoWorkerBin(binary));
        }
        let url = match &self.worker_url {
            Some(url) => url.clone(),
            None => default_url(served),
        };
        printable(&url, "--worker-url").map_err(LauncherSetupError::NotPrintable)?;
        let mut env: Vec<(String, String)> = Vec::new();
        for name in ["LD_LIBRARY_PATH", "RUST_LOG"] {
            if let Ok(value) = std::env::var(name) {
                env.push((name.to_string(), value));
            }
        }
        for (name, value) in &self.worker_env {
            let value = match value {
                Some(v) => v.clone(),
                None => {
                    std::env::var(name).map_err(|_| LauncherSetupError::EnvNotSet(name.clone()))?
                }
            };
            printable(&value, "--worker-env").map_err(LauncherSetupError::NotPrintable)?;
            env.retain(|(n, _)| n != name);
            env.push((name.clone(), value));
        }
        let absolute_opt = |p: &Option<PathBuf>| p.as_deref().map(absolute).transpose();
        let config = SlurmConfig {
            job_name: job_name(served.data_dir),
            partition: self.partition.clone(),
            account: self.account.clone(),
            qos: self.qos.clone(),
            time: self.time.clone(),
            cpus_per_job: self.cpus_per_job,
            mem_per_job: self.mem_per_job.clone(),
            cpus_per_gpu: self.cpus_per_gpu,
            mem_per_gpu: self.mem_per_gpu.clone(),
            signal_lead_s: self.signal_lead.as_secs().clamp(1, 65_535) as u32,
            sbatch_args: self.sbatch_arg.clone(),
            log_dir,
            worker: WorkerCommand {
                binary,
                url,
                token_file,
                ca: absolute_opt(&self.worker_ca)?,
                tls_cert: absolute_opt(&self.worker_tls_cert)?,
                tls_key: absolute_opt(&self.worker_tls_key)?,
                tls_domain: self.worker_tls_domain.clone(),
                exit_when_idle: self.worker_idle.clone(),
                env,
                args: self.worker_arg.clone(),
                work_root: absolute_opt(&self.worker_work_dir)?,
            },
        };
        let engine = SlurmEngine::new(config, SystemRunner);
        // The script as it is submitted, for the operator to read (it holds no secret).
        let sample = dir.join("worker-job.sh");
        std::fs::write(&sample, engine.script(0)).map_err(|source| LauncherSetupError::File {
            path: sample.clone(),
            source,
        })?;
        Ok(Some(Launcher::new(
            engine,
            Limits {
                max_jobs: self.max_jobs,
                gpus_per_job: self.gpus_per_job,
            },
        )))
    }
}

/// `https://HOST:PORT` (or `http://`) from the bound address; an unspecified address
/// becomes this host's name.
fn default_url(served: &Served<'_>) -> String {
    let scheme = if served.tls { "https" } else { "http" };
    let ip = served.addr.ip();
    let host = if ip.is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("{scheme}://{host}:{}", served.addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_jobs_environment_or_command_line() {
        assert!(worker_env("ABLATE_WORKER_TOKEN=x")
            .unwrap_err()
            .contains("credentials"));
        assert!(worker_env("MY_SECRET").is_err());
        assert!(worker_arg("--worker-token=abc").is_err());
        assert_eq!(
            worker_env("ABLATE_DATA_ROOTS=/d").unwrap(),
            ("ABLATE_DATA_ROOTS".to_string(), Some("/d".to_string()))
        );
        assert!(worker_env("1X=2").is_err() && worker_env("A\nB").is_err());
    }

    #[test]
    fn slurm_values_are_single_words() {
        assert!(slurm_word("4:00:00").is_ok() && slurm_word("gpu-a100").is_ok());
        assert!(slurm_word("gpu\n#SBATCH --x").is_err() && slurm_word("a b").is_err());
        assert!(slurm_memory("32G").is_ok() && slurm_memory("4096").is_ok());
        assert!(slurm_memory("G").is_err() && slurm_memory("32GB").is_err());
        assert!(sbatch_arg("--constraint=a100").is_ok() && sbatch_arg("x").is_err());
    }

    #[test]
    fn the_token_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("worker.token");
        write_private(&file, "t0ken").unwrap();
        write_private(&file, "t0ken2").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode, std::fs::read_to_string(&file).unwrap().as_str()),
            (0o600, "t0ken2")
        );
    }

    #[test]
    fn job_names_differ_by_data_directory() {
        let a = job_name(Path::new("/srv/ablate-a"));
        assert_eq!(a.len(), "ablate-".len() + 8);
        assert_ne!(a, job_name(Path::new("/srv/ablate-b")));
    }
}
