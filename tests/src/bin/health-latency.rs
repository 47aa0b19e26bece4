//! How fast the coordinator answers health checks while it is busy: a real `ablate serve` on
//! loopback, probed idle (the reference), during a 10,000-run submit, and while reports of
//! that experiment render, more at once than it has async threads. Prints a table; run it
//! through `bench/health_latency.sh`. The goal is a p99 under 100 ms under load.

use std::time::{Duration, Instant};

use ablate_common::auth::ClientAuth;
use ablate_common::proto::experiments_client::ExperimentsClient;
use ablate_common::proto::{ReportRequest, SubmitRequest};
use ablate_tests::{lenet_grid, Cluster};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Pause between two probes.
const GAP: Duration = Duration::from_millis(10);

/// Latencies of one phase.
struct Phase {
    name: String,
    took: Duration,
    probes: Vec<Duration>,
}

impl Phase {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.probes.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }
}

type Health = HealthClient<tonic::transport::Channel>;

async fn probe(health: &mut Health) -> Duration {
    let started = Instant::now();
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    started.elapsed()
}

/// Probes until `busy` reports done (or `at_least` probes when `busy` is `None`).
async fn probe_while(
    health: &mut Health,
    name: &str,
    busy: impl Fn() -> bool,
    at_least: usize,
) -> Phase {
    let started = Instant::now();
    let mut probes = Vec::new();
    while busy() || probes.len() < at_least {
        probes.push(probe(health).await);
        tokio::time::sleep(GAP).await;
    }
    Phase {
        name: name.to_string(),
        took: started.elapsed(),
        probes,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let mut cluster = Cluster::new(30);
    cluster.start_coordinator();
    let url = cluster.url();
    let token = cluster.token.clone();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let renders = 2 * threads + 2;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let phases = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let users = ExperimentsClient::with_interceptor(
            channel.clone(),
            ClientAuth::new(Some(&token)).expect("token"),
        )
        .max_decoding_message_size(256 << 20);
        let mut health = HealthClient::new(channel);
        let mut phases = vec![probe_while(&mut health, "idle (reference)", || false, 200).await];

        let seeds: Vec<u32> = (0..10_000).collect();
        let submit = {
            let mut users = users.clone();
            let grid = lenet_grid("big", 1, 64, &seeds);
            tokio::spawn(async move {
                users
                    .submit(SubmitRequest {
                        grid_toml: grid,
                        file_name: "big.toml".into(),
                    })
                    .await
            })
        };
        phases.push(
            probe_while(
                &mut health,
                "during a 10,000-run submit",
                || !submit.is_finished(),
                1,
            )
            .await,
        );
        submit.await.expect("join").expect("submit");

        let reports: Vec<_> = (0..renders)
            .map(|_| {
                let mut users = users.clone();
                tokio::spawn(async move {
                    users
                        .report(ReportRequest {
                            experiment: "big".into(),
                            format: "html".into(),
                        })
                        .await
                })
            })
            .collect();
        phases.push(
            probe_while(
                &mut health,
                &format!("during {renders} HTML reports of those 10,000 runs at once"),
                || reports.iter().any(|r| !r.is_finished()),
                1,
            )
            .await,
        );
        for r in reports {
            r.await.expect("join").expect("report");
        }
        phases
    });
    println!(
        "coordinator health-check latency on loopback ({threads} cores; goal: p99 under 100 ms under load)"
    );
    println!();
    println!("| phase | phase s | probes | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for p in &phases {
        println!(
            "| {} | {:.1} | {} | {} | {} | {} |",
            p.name,
            p.took.as_secs_f64(),
            p.probes.len(),
            ms(p.quantile(0.5)),
            ms(p.quantile(0.99)),
            ms(p.quantile(1.0)),
        );
    }
}
