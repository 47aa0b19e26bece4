//! `ablate workers [--json]`: the registered workers, their devices and what runs on them.

use std::process::ExitCode;

use ablate_common::proto;
use clap::Args;
use serde_json::json;

use super::app::Remote;
use super::display::{duration, table};
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
    if w.last_seen_unix_ms == 0 {
        "not since restart".to_string()
    } else {
        format!(
            "{} ago",
            duration(now.saturating_sub(w.last_seen_unix_ms) as f64 / 1000.0)
        )
    }
}

pub(super) async fn run(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.remote.connect().await?;
    let list = client
        .list_workers(proto::WorkerInfoRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
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
                    "last_seen_unix_ms": (w.last_seen_unix_ms > 0).then_some(w.last_seen_unix_ms),
                    "protocol_version": w.protocol_version,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "workers": workers }))?
        );
        return Ok(ExitCode::SUCCESS);
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
