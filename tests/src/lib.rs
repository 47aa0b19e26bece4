//! End-to-end test harness: starts the real `ablate` and `ablate-worker` binaries on
//! loopback, kills them, and reads what users see (CLI output, report files); [`browser`]
//! drives headless Chromium for the dashboard's tests.

pub mod browser;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ablate_common::auth::ClientAuth;
use ablate_common::proto::experiments_client::ExperimentsClient;
use ablate_common::proto::workers_client::WorkersClient;
use ablate_common::proto::{
    Device, ExperimentStatus, GetRequest, RegisterRequest, RegisterResponse, PROTOCOL_VERSION,
    SESSION_METADATA_KEY,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Fashion-MNIST from Debian's `dataset-fashion-mnist`.
pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The directory holding the built binaries: `ABLATE_BIN_DIR`, else the target directory's
/// `debug/`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ABLATE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// Path of a built binary; panics with the build command when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build -p ablate-coordinator -p ablate-worker` first (or bash deploy/test.sh)",
        path.display()
    );
    path
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process killed when dropped; its output goes to a log file.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL, no chance to clean up.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator and workers on loopback, with their data under a temporary directory.
#[derive(Debug)]
pub struct Cluster {
    /// Temporary directory holding everything.
    pub dir: tempfile::TempDir,
    /// Coordinator port.
    pub port: u16,
    /// The user token (what the CLI and `status` send).
    pub token: String,
    /// The worker token (what workers send).
    pub worker_token: String,
    /// Lease TTL passed to the coordinator, seconds.
    pub lease_ttl_secs: u64,
    /// The coordinator, when running.
    pub coordinator: Option<Proc>,
    /// Workers by index (None once killed).
    pub workers: Vec<Option<Proc>>,
    /// Certificates when the cluster runs over TLS ([`Cluster::with_tls`]).
    pub pki: Option<TestPki>,
    /// More arguments of `ablate serve` (`--http ADDR`).
    pub coordinator_args: Vec<String>,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    /// A cluster with nothing started yet.
    pub fn new(lease_ttl_secs: u64) -> Self {
        Cluster {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            token: format!("test-user-token-{}", std::process::id()),
            worker_token: format!("test-worker-token-{}", std::process::id()),
            lease_ttl_secs,
            coordinator: None,
            workers: Vec::new(),
            pki: None,
            coordinator_args: Vec::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// Runs the cluster over TLS with certificates made now (workers also need a client
    /// certificate when `client_certs`).
    pub fn with_tls(mut self, client_certs: bool) -> Self {
        let pki = TestPki::generate(&self.dir.path().join("pki"));
        self.pki = Some(TestPki {
            client_certs,
            ..pki
        });
        self
    }

    /// The coordinator's URL (`https://localhost:PORT` over TLS).
    pub fn url(&self) -> String {
        match &self.pki {
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// How a client reaches the coordinator (the CA over TLS).
    pub fn client_tls(&self) -> ablate_common::tls::ClientTls {
        ablate_common::tls::ClientTls {
            ca: self.pki.as_ref().map(|p| p.ca.clone()),
            ..Default::default()
        }
    }

    /// The coordinator's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("coordinator")
    }

    fn spawn_with_env(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Proc {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(program)
            .args(args)
            .env_remove("ABLATE_TOKEN")
            .env("ABLATE_USER_TOKEN", &self.token)
            .env("ABLATE_WORKER_TOKEN", &self.worker_token)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc { child, log }
    }

    /// Starts (or restarts) the coordinator and waits until it answers.
    pub fn start_coordinator(&mut self) {
        self.start_coordinator_with_env(&[]);
    }

    /// [`Cluster::start_coordinator`] with extra environment variables (test holds).
    pub fn start_coordinator_with_env(&mut self, env: &[(&str, &str)]) {
        let args = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--lease-ttl".into(),
            format!("{}s", self.lease_ttl_secs),
        ];
        let mut args = args;
        args.extend(self.coordinator_args.iter().cloned());
        if let Some(pki) = &self.pki {
            args.extend([
                "--tls-cert".into(),
                pki.server_cert.display().to_string(),
                "--tls-key".into(),
                pki.server_key.display().to_string(),
            ]);
            if pki.client_certs {
                args.extend(["--tls-client-ca".into(), pki.ca.display().to_string()]);
            }
        }
        let proc = self.spawn_with_env("coordinator", &binary("ablate"), &args, env);
        self.coordinator = Some(proc);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "coordinator did not listen:\n{}",
            self.coordinator.as_ref().unwrap().log_text()
        );
    }

    /// The coordinator's peak resident memory so far (kB, `VmHWM`; 0 when unknown).
    pub fn coordinator_peak_rss_kb(&self) -> u64 {
        let Some(c) = &self.coordinator else { return 0 };
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILLs the coordinator.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            c.kill_hard();
        }
    }

    /// Starts a CPU worker with one thread; returns its index.
    pub fn start_worker(&mut self) -> usize {
        self.start_worker_with_env(&[])
    }

    /// [`Cluster::start_worker`] with extra environment variables (the worker's test-only
    /// throttles and injections, `ABLATE_TEST_*`).
    pub fn start_worker_with_env(&mut self, env: &[(&str, &str)]) -> usize {
        self.start_worker_with_args(&[], env)
    }

    /// [`Cluster::start_worker_with_env`] with more `ablate-worker` arguments.
    pub fn start_worker_with_args(&mut self, extra: &[&str], env: &[(&str, &str)]) -> usize {
        let index = self.workers.len();
        let name = format!("worker{index}");
        let args = vec![
            "--coordinator".into(),
            self.url(),
            "--devices".into(),
            "cpu".into(),
            "--threads".into(),
            "1".into(),
            "--name".into(),
            name.clone(),
            "--work-dir".into(),
            self.dir.path().join(&name).display().to_string(),
        ];
        let mut args = args;
        args.extend(extra.iter().map(|a| a.to_string()));
        if let Some(pki) = &self.pki {
            args.extend(["--ca".into(), pki.ca.display().to_string()]);
            if pki.client_certs {
                args.extend([
                    "--tls-cert".into(),
                    pki.worker_cert.display().to_string(),
                    "--tls-key".into(),
                    pki.worker_key.display().to_string(),
                ]);
            }
        }
        let proc = self.spawn_with_env(&name, &binary("ablate-worker"), &args, env);
        self.workers.push(Some(proc));
        index
    }

    /// SIGKILLs a worker.
    pub fn kill_worker(&mut self, index: usize) {
        if let Some(mut w) = self.workers[index].take() {
            w.kill_hard();
        }
    }

    /// Whether worker `index`'s log says it completed run `run_id`.
    pub fn worker_completed(&self, index: usize, run_id: &str) -> bool {
        let log = self.dir.path().join(format!("worker{index}.log"));
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("run completed") && l.contains(run_id))
    }

    /// Runs the `ablate` CLI against this cluster (token in the environment).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(binary("ablate"));
        command
            .args(args)
            .env("ABLATE_TOKEN", &self.token)
            .env("ABLATE_COORDINATOR", self.url())
            .stdin(Stdio::null());
        if let Some(pki) = &self.pki {
            command.env("ABLATE_CA", &pki.ca);
        }
        command.output().expect("ablate runs")
    }

    /// Writes a file under the cluster's directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The experiment's status through the gRPC API (None while unreachable).
    pub fn status(&self, experiment: &str) -> Option<ExperimentStatus> {
        let url = self.url();
        let tls = self.client_tls();
        let auth = ClientAuth::new(Some(&self.token)).unwrap();
        self.runtime.block_on(async move {
            let channel = ablate_common::tls::endpoint(&url, &tls)
                .ok()?
                .connect()
                .await
                .ok()?;
            let mut client = ExperimentsClient::with_interceptor(channel, auth);
            client
                .get(GetRequest {
                    experiment: experiment.to_string(),
                })
                .await
                .ok()
                .map(|r| r.into_inner())
        })
    }

    /// Polls the experiment until `done` holds, panicking with the logs after `timeout`.
    pub fn wait_for(
        &self,
        experiment: &str,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&ExperimentStatus) -> bool,
    ) -> ExperimentStatus {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(status) = self.status(experiment) {
                if done(&status) {
                    return status;
                }
                last = Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "timed out waiting for {what}; last status {last:#?}\n{}",
            self.logs()
        );
    }

    /// Every process log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    out.push_str(&format!("--- {} (last lines)\n", path.display()));
                    for line in tail.into_iter().rev() {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

/// A certificate authority, a coordinator certificate for `localhost`/127.0.0.1 and a
/// worker client certificate, made at test time (PEM files under a directory).
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The coordinator's certificate and key.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A worker client certificate signed by the CA.
    pub worker_cert: PathBuf,
    /// Its key.
    pub worker_key: PathBuf,
    /// Whether the coordinator requires workers' client certificates.
    pub client_certs: bool,
}

impl TestPki {
    /// Makes the files under `dir`.
    pub fn generate(dir: &Path) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ablate test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>| {
            let params = CertificateParams::new(names).unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
        let (worker_cert, worker_key) = leaf(vec!["worker.ablate.test".into()]);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        TestPki {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            worker_cert: write("worker.pem", &worker_cert),
            worker_key: write("worker.key", &worker_key),
            client_certs: false,
        }
    }
}

/// A raw `Workers` client for tests that speak the worker protocol themselves: it sends
/// the worker token, and after [`RawWorker::register`] that worker's session secret.
#[derive(Debug, Clone)]
pub struct RawWorker {
    /// The client.
    pub client: WorkersClient<InterceptedService<Channel, ClientAuth>>,
    /// Its interceptor (shares the session with the client).
    pub auth: ClientAuth,
}

impl RawWorker {
    /// Connects to `url` with `token` (no session yet).
    pub async fn connect(url: &str, token: &str, tls: &ablate_common::tls::ClientTls) -> RawWorker {
        let channel = ablate_common::tls::endpoint(url, tls)
            .unwrap()
            .connect()
            .await
            .expect("the coordinator answers");
        let auth = ClientAuth::new(Some(token)).unwrap();
        RawWorker {
            client: WorkersClient::with_interceptor(channel, auth.clone()),
            auth,
        }
    }

    /// Registers a CPU worker named `name` (reclaiming `worker_id` when not empty) and
    /// keeps the session secret the answer carries.
    pub async fn register(
        &mut self,
        name: &str,
        worker_id: &str,
    ) -> Result<RegisterResponse, tonic::Status> {
        let response = self
            .client
            .register(RegisterRequest {
                protocol_version: PROTOCOL_VERSION,
                name: name.into(),
                devices: vec![Device { name: "cpu".into() }],
                threads: 1,
                worker_id: worker_id.into(),
                data_roots: Vec::new(),
            })
            .await?;
        if let Some(secret) = response.metadata().get(SESSION_METADATA_KEY) {
            self.auth
                .set_session(secret.to_str().expect("an ASCII secret"))
                .unwrap();
        }
        Ok(response.into_inner())
    }
}

/// A grid of `seeds.len()` LeNet runs on a Fashion-MNIST subset at 28×28.
pub fn lenet_grid(name: &str, epochs: u32, train_limit: usize, seeds: &[u32]) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    format!(
        "{}\n[grid]\nseed = [{}]\n",
        lenet_base(name, epochs, train_limit, "lr = 0.003\n"),
        seeds.join(", ")
    )
}

/// The name and `[base]` of a LeNet grid on a Fashion-MNIST subset at 28×28 (Adam, batch
/// 32, 256 eval images, one loader thread); `base_extra` adds lines to `[base]`. The caller
/// appends `[grid]` and whatever else the grid has.
pub fn lenet_base(name: &str, epochs: u32, train_limit: usize, base_extra: &str) -> String {
    format!(
        r#"name = "{name}"

[base]
model = "lenet"
image_size = 28
channels = 1
classes = 10
epochs = {epochs}
batch_size = 32
optimizer = "adam"
{base_extra}max_attempts = 3

[base.dataset]
format = "idx"
root = "{FASHION_MNIST}"
train = {{ images = "train-images-idx3-ubyte.gz", labels = "train-labels-idx1-ubyte.gz", limit = {train_limit} }}
eval = {{ images = "t10k-images-idx3-ubyte.gz", labels = "t10k-labels-idx1-ubyte.gz", limit = 256 }}
loader_threads = 1
"#
    )
}
