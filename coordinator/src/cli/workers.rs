//! `ablate workers [--json]`: the registered workers, their devices and what runs on them;
//! with a launcher (`serve --launcher slurm`), its jobs and the worker each became.

use std::process::ExitCode;

use ablate_common::proto;
use clap::Args;
use serde_json::json;

use super::app::{Answer, Remote};
use super::display::{ago, table};
use crate::state::now_ms;

/// Options of `ablate workers`.
#[derive(Debug, Args)]
pub(super) struct WorkersArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

fn free(w: &proto::WorkerInfoEntry) -> Vec<String> {
    w.devices
        .iter()
        .filter(|d| !w.busy.contains(d))
        .cloned()
        .collect()
}

fn last_seen(w: &proto::WorkerInfoEntry, now: u64) -> String {
    match w.last_seen_unix_ms {
        Some(at) => ago(now, at),
        None => "not since restart".to_string(),
    }
}

fn job_json(j: &proto::LauncherJob) -> serde_json::Value {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    json!({
        "job_id": j.job_id,
        "state": j.state,
        "node": some(&j.node),
        "worker_id": some(&j.worker_id),
        "worker_name": some(&j.worker_name),
        "gpus": j.gpus,
        "cpus": j.cpus,
        "reason": some(&j.reason),
    })
}

/// The launcher's jobs, above the workers.
fn print_jobs(engine: &str, jobs: &[proto::LauncherJob]) {
    if jobs.is_empty() {
        println!("{engine} launcher: no job pending or running\n");
        return;
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.job_id.clone(),
                j.state.clone(),
                dash(&j.node),
                dash(&j.worker_id),
                j.gpus.to_string(),
                if j.cpus == 0 {
                    "-".into()
                } else {
                    j.cpus.to_string()
                },
                dash(&j.reason),
            ]
        })
        .collect();
    let job_header = format!("{} JOB", engine.to_uppercase());
    print!(
        "{}",
        table(
            &[
                job_header.as_str(),
                "STATE",
                "NODE",
                "WORKER",
                "GPUS",
                "CPUS",
                "REASON"
            ],
            &rows
        )
    );
    println!();
}

pub(super) async fn run(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.remote.connect().await?;
    let list = client
        .list_workers(proto::WorkerInfoRequest {})
        .await
        .answer()?;
    if args.json {
        let workers: Vec<_> = list
            .workers
            .iter()
            .map(|w| {
                json!({
                    "id": w.id,
                    "name": w.name,
                    "devices": w.devices,
                    "busy": w.busy,
                    "free": free(w),
                    "runs": w.runs,
                    "threads": w.threads,
                    "data_roots": w.data_roots,
                    "connected": w.live,
                    "last_seen_unix_ms": w.last_seen_unix_ms,
                    "protocol_version": w.protocol_version,
                })
            })
            .collect();
        let jobs: Vec<_> = list.jobs.iter().map(job_json).collect();
        let mut out = json!({ "workers": workers });
        if !list.launcher.is_empty() {
            out["launcher"] = json!(list.launcher);
            out["jobs"] = json!(jobs);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !list.launcher.is_empty() {
        print_jobs(&list.launcher, &list.jobs);
    }
    if list.workers.is_empty() {
        println!("no worker has registered yet");
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = list
        .workers
        .iter()
        .map(|w| {
            vec![
                w.name.clone(),
                w.id.clone(),
                if w.live { "connected" } else { "gone" }.to_string(),
                w.devices.join(","),
                free(w).join(","),
                w.runs.join(","),
                last_seen(w, now),
                format!("v{}", w.protocol_version),
                w.data_roots.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "NAME",
                "ID",
                "STATE",
                "DEVICES",
                "FREE",
                "RUNS",
                "LAST SEEN",
                "PROTOCOL",
                "DATA ROOTS"
            ],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}
