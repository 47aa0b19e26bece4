//! Hostile clients against the real binaries on loopback: each attack of SECURITY.md is
//! tried and must be refused with a clear error, and the coordinator must keep serving.

use std::time::{Duration, Instant};

use ablate_common::auth::ClientAuth;
use ablate_common::proto::experiments_client::ExperimentsClient;
use ablate_common::proto::{
    AcquireRequest, CompleteRequest, Device, GetRequest, ListRequest, ProgressRequest,
    RegisterRequest, ReportRequest, RunState, StepMetrics, SubmitRequest, PROTOCOL_VERSION,
};
use ablate_tests::{lenet_grid, Cluster, RawWorker};
use tonic::Code;

const MINUTES: Duration = Duration::from_secs(60);

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

type Users = ExperimentsClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, ClientAuth>,
>;

async fn users(cluster: &Cluster, token: &str) -> Users {
    let channel = ablate_common::tls::endpoint(&cluster.url(), &cluster.client_tls())
        .unwrap()
        .connect()
        .await
        .unwrap();
    ExperimentsClient::with_interceptor(channel, ClientAuth::new(Some(token)).unwrap())
        .max_decoding_message_size(64 << 20)
}

/// The coordinator still answers a user.
fn assert_serving(cluster: &Cluster) {
    let out = cluster.cli(&["status"]);
    assert!(
        out.status.success(),
        "the coordinator stopped serving: {}\n{}",
        stderr(&out),
        cluster.logs()
    );
}

fn register_request(name: &str, devices: Vec<Device>) -> RegisterRequest {
    RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        devices,
        threads: 1,
        worker_id: String::new(),
        data_roots: Vec::new(),
    }
}

/// Submits a grid of one LeNet run named `name`, as the user.
async fn submit_one_run(cluster: &Cluster, name: &str) {
    users(cluster, &cluster.token)
        .await
        .submit(SubmitRequest {
            grid_toml: lenet_grid(name, 1, 64, &[1]),
            file_name: "g.toml".into(),
        })
        .await
        .unwrap();
}

#[test]
fn roles_are_separate_and_a_worker_cannot_be_impersonated() {
    let mut cluster = Cluster::new(30);
    cluster.start_coordinator();
    let url = cluster.url();
    let tls = cluster.client_tls();
    runtime().block_on(async {
        submit_one_run(&cluster, "roles").await;

        // A user calling the worker service: refused, naming the role needed.
        let mut as_user = RawWorker::connect(&url, &cluster.token, &tls).await;
        let err = as_user.register("user", "").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("worker token"), "{}", err.message());
        // A worker calling the user service: refused the same way.
        let mut as_worker = users(&cluster, &cluster.worker_token).await;
        let err = as_worker.list(ListRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("user token"), "{}", err.message());

        let mut victim = RawWorker::connect(&url, &cluster.worker_token, &tls).await;
        let id = victim.register("victim", "").await.unwrap().worker_id;
        let run = victim
            .client
            .acquire(AcquireRequest {
                worker_id: id.clone(),
                free_devices: vec!["cpu".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .assignment
            .expect("the run is assigned");

        // Another holder of the worker token tries to take the id over, then to speak
        // for it with a session of its own.
        let mut thief = RawWorker::connect(&url, &cluster.worker_token, &tls).await;
        let err = thief.register("thief", &id).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        thief.register("thief", "").await.unwrap();
        let err = thief
            .client
            .complete(CompleteRequest {
                worker_id: id.clone(),
                run_id: run.run_id.clone(),
                attempt: run.attempt,
                wall_seconds: 1.0,
                params: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        let status = users(&cluster, &cluster.token)
            .await
            .get(GetRequest {
                experiment: "roles".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.runs[0].state(),
            RunState::Running,
            "the run was not taken over"
        );
        assert_eq!(status.runs[0].worker, id);
    });
    assert_serving(&cluster);
}

#[test]
fn hostile_grids_are_refused_before_they_are_expanded() {
    let mut cluster = Cluster::new(30);
    cluster.start_coordinator();
    let seeds: Vec<String> = (0..10_000).map(|s| s.to_string()).collect();
    let seeds = seeds.join(", ");
    // One 200 kB string and 10,000 seeds: 2 GB once expanded.
    let long = format!(
        "name = \"blowup\"\n[base]\nmodel = \"lenet\"\nnote = \"{}\"\n[grid]\nseed = [{seeds}]\n",
        "x".repeat(200_000)
    );
    // Strings under the per-string limit that still add up: 20 × 4 kB × 10,000 runs.
    let mut many = String::from("name = \"wide\"\n[base]\nmodel = \"lenet\"\n");
    for i in 0..20 {
        many.push_str(&format!("note{i} = \"{}\"\n", "y".repeat(4_000)));
    }
    many.push_str(&format!("[grid]\nseed = [{seeds}]\n"));
    let nan =
        lenet_grid("nan", 1, 64, &[1]).replace("lr = 0.003", "lr = 0.003\nweight_decay = nan");
    let huge_warmup = lenet_grid("warm", 1, 64, &[1])
        .replace("lr = 0.003", "lr = 0.003\nwarmup_epochs = 4294967295");
    let cases = [
        (
            "long.toml",
            long,
            "is a string of 200000 bytes; the limit is 4096",
        ),
        ("many.toml", many, "the limit is 67108864"),
        ("nan.toml", nan, "weight_decay"),
        (
            "warm.toml",
            huge_warmup,
            "warmup_epochs`: 4294967295 (the limit is 100000)",
        ),
    ];
    for (file, text, expected) in &cases {
        let path = cluster.write(file, text);
        for command in ["validate", "submit"] {
            let started = Instant::now();
            let out = cluster.cli(&[command, path.to_str().unwrap()]);
            let took = started.elapsed();
            assert!(!out.status.success(), "{command} {file} was accepted");
            assert!(
                stderr(&out).contains(expected),
                "{command} {file}: expected `{expected}` in: {}",
                stderr(&out)
            );
            // Refused, not expanded: far below the seconds an expansion takes.
            assert!(took < Duration::from_secs(20), "{command} {file}: {took:?}");
        }
    }
    // A file over the size cap is refused by the CLI and, sent raw, by the coordinator.
    let big = format!("name = \"big\"\n# {}\n", "z".repeat(1_050_000));
    let path = cluster.write("big.toml", &big);
    let out = cluster.cli(&["submit", path.to_str().unwrap()]);
    assert!(stderr(&out).contains("1048576"), "{}", stderr(&out));
    runtime().block_on(async {
        let mut u = users(&cluster, &cluster.token).await;
        let err = u
            .submit(SubmitRequest {
                grid_toml: big.clone(),
                file_name: "big.toml".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("the limit is 1048576"),
            "{}",
            err.message()
        );
        // Past the message cap the transport refuses before decoding.
        let err = u
            .submit(SubmitRequest {
                grid_toml: "w".repeat(8 << 20),
                file_name: "huge.toml".into(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err.code(), Code::ResourceExhausted | Code::OutOfRange),
            "{err:?}"
        );
    });
    let peak = cluster.coordinator_peak_rss_kb();
    assert!(peak < 400_000, "the coordinator peaked at {peak} kB");
    assert_serving(&cluster);
}

#[test]
fn oversized_worker_messages_are_refused() {
    let mut cluster = Cluster::new(30);
    cluster.start_coordinator();
    let url = cluster.url();
    let tls = cluster.client_tls();
    runtime().block_on(async {
        submit_one_run(&cluster, "steps").await;
        let mut w = RawWorker::connect(&url, &cluster.worker_token, &tls).await;
        let many: Vec<Device> = (0..300)
            .map(|i| Device {
                name: format!("cuda:{i}"),
            })
            .collect();
        let err = w
            .client
            .register(register_request("many", many))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("300 devices; the limit is 256"),
            "{}",
            err.message()
        );
        let long = vec![Device {
            name: format!("cuda:{}", "9".repeat(1_000)),
        }];
        let err = w
            .client
            .register(register_request("long", long))
            .await
            .unwrap_err();
        assert!(
            err.message().contains("the limit is 32"),
            "{}",
            err.message()
        );

        let id = w.register("ok", "").await.unwrap().worker_id;
        let run = w
            .client
            .acquire(AcquireRequest {
                worker_id: id.clone(),
                free_devices: vec!["cpu".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .assignment
            .unwrap();
        let steps: Vec<StepMetrics> = (0..20_000)
            .map(|s| StepMetrics {
                epoch: 1,
                step: s,
                loss: 1.0,
            })
            .collect();
        let err = w
            .client
            .progress(ProgressRequest {
                worker_id: id.clone(),
                run_id: run.run_id.clone(),
                attempt: run.attempt,
                steps,
                current_epoch: 1,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message()
                .contains("20000 step samples in one message; the limit is 10000"),
            "{}",
            err.message()
        );
        // The lease is intact: a normal progress goes through.
        w.client
            .progress(ProgressRequest {
                worker_id: id.clone(),
                run_id: run.run_id.clone(),
                attempt: run.attempt,
                current_epoch: 1,
                ..Default::default()
            })
            .await
            .unwrap();
    });
    assert_serving(&cluster);
}

#[test]
fn a_dataset_outside_the_data_roots_fails_without_quoting_the_file() {
    let mut cluster = Cluster::new(30);
    cluster.start_coordinator();
    cluster.start_worker();
    let grid = r#"name = "passwd"

[base]
model = "lenet"
image_size = 28
channels = 1
classes = 10
epochs = 1
max_attempts = 1

[base.dataset]
format = "listfile"
root = "/etc"
train = "passwd"
eval = "passwd"
"#;
    let path = cluster.write("passwd.toml", grid);
    let out = cluster.cli(&["submit", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = cluster.wait_for("passwd", 2 * MINUTES, "the run to fail", |s| {
        s.runs.iter().all(|r| r.state() == RunState::Failed)
    });
    let error = &status.runs[0].error;
    assert!(error.contains("outside the data roots"), "{error}");
    assert!(error.contains("/usr/share/datasets"), "{error}");
    assert!(!error.contains("root:"), "the file leaked: {error}");
    assert_serving(&cluster);
}

#[test]
fn tls_with_worker_client_certificates_end_to_end() {
    let mut cluster = Cluster::new(30).with_tls(true);
    cluster.start_coordinator();
    cluster.start_worker();
    let grid = cluster.write("tls.toml", &lenet_grid("tls", 1, 64, &[1]));
    let out = cluster.cli(&["submit", grid.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    cluster.wait_for("tls", 3 * MINUTES, "the run over TLS", |s| {
        s.runs.iter().all(|r| r.state() == RunState::Finished)
    });

    // Without the CA the CLI says what is missing.
    let out = std::process::Command::new(ablate_tests::binary("ablate"))
        .args(["status", "--coordinator", &cluster.url()])
        .env("ABLATE_USER_TOKEN", &cluster.token)
        .env_remove("ABLATE_CA")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--ca"), "{}", stderr(&out));
    // Clear text to the TLS port gets nowhere.
    let plain = format!("http://127.0.0.1:{}", cluster.port);
    let out = std::process::Command::new(ablate_tests::binary("ablate"))
        .args(["status", "--coordinator", &plain])
        .env("ABLATE_USER_TOKEN", &cluster.token)
        .output()
        .unwrap();
    assert!(!out.status.success(), "clear text was answered");

    // A worker without a client certificate is refused, with the reason.
    let url = cluster.url();
    let tls = cluster.client_tls();
    runtime().block_on(async {
        let mut w = RawWorker::connect(&url, &cluster.worker_token, &tls).await;
        let err = w.register("nocert", "").await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(
            err.message().contains("client certificate"),
            "{}",
            err.message()
        );
    });
    assert_serving(&cluster);
}

#[test]
fn serve_refuses_clear_text_off_loopback_and_one_shared_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = ablate_tests::free_port();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(ablate_tests::binary("ablate"));
        command
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("ABLATE_TOKEN")
            .env_remove("ABLATE_USER_TOKEN")
            .env_remove("ABLATE_WORKER_TOKEN");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let listen = format!("0.0.0.0:{port}");
    let tokens = [("ABLATE_USER_TOKEN", "u-1"), ("ABLATE_WORKER_TOKEN", "w-1")];
    let out = run(&["--listen", &listen], &tokens);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--tls-cert"), "{}", stderr(&out));
    let out = run(
        &["--listen", &format!("127.0.0.1:{port}")],
        &[("ABLATE_TOKEN", "shared")],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--worker-token"), "{}", stderr(&out));
    let same = [
        ("ABLATE_USER_TOKEN", "same"),
        ("ABLATE_WORKER_TOKEN", "same"),
    ];
    let out = run(&["--listen", &format!("127.0.0.1:{port}")], &same);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must differ"), "{}", stderr(&out));
}

/// One health check, failing the test if it does not answer within `limit` (a generous
/// bound that detects a stalled coordinator; latency itself is `bench/health_latency.sh`'s).
async fn health_check(
    health: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    limit: Duration,
    during: &str,
) -> Duration {
    let started = Instant::now();
    let request = health.check(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(limit, request).await {
        Ok(answer) => {
            answer.unwrap();
            started.elapsed()
        }
        Err(_) => panic!("no health answer within {limit:?} {during}"),
    }
}

/// `n` HTML reports of `experiment` requested at once; each yields the report's length.
fn spawn_reports(
    u: &Users,
    experiment: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<usize, tonic::Status>>> {
    (0..n)
        .map(|_| {
            let mut u = u.clone();
            let experiment = experiment.to_string();
            tokio::spawn(async move {
                u.report(ReportRequest {
                    experiment,
                    format: "html".into(),
                })
                .await
                .map(|r| r.into_inner().content.len())
            })
        })
        .collect()
}

/// Waits until `n` held requests have arrived at the coordinator's test hold.
fn wait_for_held(dir: &std::path::Path, n: usize) {
    let deadline = Instant::now() + 2 * MINUTES;
    loop {
        let held = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("held-")
            })
            .count();
        if held >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {held} of {n} requests reached their blocking section"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Health checks answer while a 10,000-run submit and more report renders than the
/// coordinator has async threads are in flight: no SQLite, lock or rendering work runs on
/// its async threads. The moment is made by construction: the coordinator's test hold keeps
/// every one of those requests inside its blocking section while the health checks run.
/// Then the same load runs unheld, with health checks throughout.
#[test]
fn health_answers_while_a_big_submit_and_reports_run() {
    let hold = tempfile::tempdir().unwrap();
    let hold_dir = hold.path().display().to_string();
    let mut cluster = Cluster::new(30);
    cluster.start_coordinator_with_env(&[("ABLATE_TEST_COORD_HOLD_DIR", &hold_dir)]);
    let seeds: Vec<u32> = (0..10_000).collect();
    let big = lenet_grid("big", 1, 64, &seeds);
    let url = cluster.url();
    let tls = cluster.client_tls();
    // The coordinator runs one async thread per core; hold more requests than that.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let renders = 2 * threads + 2;
    let limit = Duration::from_secs(5);
    let rt = runtime();
    rt.block_on(async {
        let mut u = users(&cluster, &cluster.token).await;
        u.submit(SubmitRequest {
            grid_toml: lenet_grid("small", 1, 64, &[1, 2, 3]),
            file_name: "small.toml".into(),
        })
        .await
        .unwrap();
        let channel = ablate_common::tls::endpoint(&url, &tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);

        // Held: the big submit and `renders` reports, all in flight at once.
        for operation in ["submit", "report"] {
            std::fs::write(hold.path().join(format!("hold-{operation}")), b"").unwrap();
        }
        let submit = {
            let mut u = u.clone();
            let big = big.clone();
            tokio::spawn(async move {
                u.submit(SubmitRequest {
                    grid_toml: big,
                    file_name: "big.toml".into(),
                })
                .await
                .map(|r| r.into_inner().runs)
            })
        };
        let reports = spawn_reports(&u, "small", renders);
        let dir = hold.path().to_path_buf();
        tokio::task::spawn_blocking(move || wait_for_held(&dir, 1 + renders))
            .await
            .unwrap();
        let mut held_worst = Duration::ZERO;
        for _ in 0..10 {
            let took = health_check(
                &mut health,
                limit,
                &format!("while a submit and {renders} reports are held"),
            )
            .await;
            held_worst = held_worst.max(took);
        }
        for operation in ["submit", "report"] {
            std::fs::remove_file(hold.path().join(format!("hold-{operation}"))).unwrap();
        }
        assert_eq!(submit.await.unwrap().unwrap(), 10_000);
        for r in reports {
            assert!(r.await.unwrap().unwrap() > 0);
        }

        // Unheld: reports of the 10,000-run experiment, with health checks throughout.
        let reports = spawn_reports(&u, "big", renders);
        let mut render_worst = Duration::ZERO;
        let mut probes = 0;
        while reports.iter().any(|r| !r.is_finished()) {
            let took = health_check(&mut health, limit, "while reports render").await;
            render_worst = render_worst.max(took);
            probes += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for r in reports {
            assert!(r.await.unwrap().unwrap() > 0);
        }
        eprintln!(
            "health: worst {held_worst:?} with {} requests held, worst {render_worst:?} over \
             {probes} probes while {renders} reports of 10,000 runs rendered",
            1 + renders
        );
    });
    assert_serving(&cluster);
}
