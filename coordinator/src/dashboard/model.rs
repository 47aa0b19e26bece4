//! The dashboard's JSON documents, built from the coordinator state (called on blocking
//! threads: they read the store). Their keys are documented in `deploy/README.md`.
//!
//! A run's colour is the report's: [`run_color`] of its submission index, so a run looks
//! the same on the page, in the report's charts and in the report's tables.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::report::charts::{hex, run_color};
use crate::report::claims::JsonClaim;
use crate::report::effects::FactorEffect;
use crate::report::{ReportData, ReportView};
use crate::state::store::{ExperimentRow, RunRow};
use crate::state::{ExperimentStatus, WorkerView};

/// The experiments, newest first, at most this many.
pub const MAX_EXPERIMENTS: usize = 500;

fn experiment_json(e: &ExperimentRow, now_ms: u64) -> Value {
    json!({
        "id": e.id,
        "name": e.name,
        "description": e.description,
        "state": e.state().as_str(),
        "runs": e.runs,
        "queued": e.queued,
        "running": e.running,
        "finished": e.finished,
        "failed": e.failed,
        "cancelled": e.cancelled,
        "stopped": e.stopped,
        "submitted_unix_ms": e.submitted_ms,
        "age_seconds": now_ms.saturating_sub(e.submitted_ms) as f64 / 1000.0,
    })
}

/// `GET /api/experiments`.
pub fn experiments(rows: &[ExperimentRow], now_ms: u64, version: u64) -> Value {
    let list: Vec<Value> = rows
        .iter()
        .rev()
        .take(MAX_EXPERIMENTS)
        .map(|e| experiment_json(e, now_ms))
        .collect();
    json!({
        "version": version,
        "total": rows.len(),
        "experiments": list,
    })
}

/// How far a run is, 0 to 1: epochs done plus the share of the epoch in progress.
pub fn progress(row: &RunRow, epochs_done: u32) -> f64 {
    if row.state.as_str() == "finished" {
        return 1.0;
    }
    let epochs = f64::from(row.epochs.max(1));
    let mut done = f64::from(epochs_done);
    if row.state.as_str() == "running" && row.current_epoch > 0 && row.steps_per_epoch > 0 {
        let within = (row.current_step as f64 / row.steps_per_epoch as f64).clamp(0.0, 1.0);
        done = done.max(f64::from(row.current_epoch - 1) + within);
    }
    (done / epochs).clamp(0.0, 1.0)
}

fn effect_json(effect: &FactorEffect) -> Value {
    json!({
        "factor": effect.factor,
        "levels": effect.levels.iter().map(|l| json!({
            "label": l.label,
            "mean_acc": l.acc.mean,
            "std_acc": l.acc.std,
            "runs": l.acc.n,
            "delta_points": l.delta_points,
            "seed_spread_points": l.seed_spread_points,
            "seeds_compared": l.seeds_compared,
        })).collect::<Vec<_>>(),
        "sentence": effect.sentence(),
    })
}

/// `GET /api/experiments/{id}`: the experiment, its runs in the report's table order with
/// their live progress and curves, the factor effects and the claims' verdicts.
pub fn experiment(
    status: &ExperimentStatus,
    data: &ReportData,
    workers: &[WorkerView],
    version: u64,
) -> Value {
    let view = ReportView::new(data);
    let rows: HashMap<&str, &RunRow> = status.runs.iter().map(|r| (r.id.as_str(), r)).collect();
    let worker_names: HashMap<&str, &str> = workers
        .iter()
        .map(|w| (w.info.id.as_str(), w.info.name.as_str()))
        .collect();
    let runs: Vec<Value> = view
        .order
        .iter()
        .map(|&i| {
            let run = &data.runs[i];
            let summary = &view.summaries[i];
            let row = rows.get(run.id.as_str());
            let worker = row.and_then(|r| r.worker_id.as_deref()).map(|id| {
                worker_names.get(id).copied().unwrap_or(id).to_string()
            });
            let stop = status
                .early_stopping
                .as_ref()
                .and_then(|s| s.stops.get(&run.id))
                .filter(|s| s.resumed_ms.is_none())
                .map(|s| s.reason.clone());
            json!({
                "id": run.id,
                "index": i,
                "color": hex(run_color(i)),
                "name": run.name,
                "model": run.model,
                "factors": run.factors,
                "params": run.params,
                "state": row.map(|r| r.state.as_str()).unwrap_or(run.state.as_str()),
                "attempts": run.attempts,
                "worker": worker,
                "epoch": row.map(|r| r.current_epoch).unwrap_or(0),
                "epochs": row.map(|r| r.epochs).unwrap_or(0),
                "epochs_done": summary.epochs_done,
                "step": row.map(|r| r.current_step).unwrap_or(0),
                "steps_per_epoch": row.map(|r| r.steps_per_epoch).unwrap_or(0),
                "progress": row.map(|r| progress(r, summary.epochs_done)).unwrap_or(0.0),
                "best_eval_acc": summary.best_eval_acc,
                "best_epoch": summary.best_epoch,
                "final_eval_loss": summary.final_eval_loss,
                "last_loss": row.and_then(|r| r.last_loss),
                "elapsed_seconds": row.map(|r| r.elapsed_seconds(status.at_ms)).unwrap_or(run.wall_s),
                "pending_reason": row.and_then(|r| r.pending_reason.clone()),
                "error": run.error,
                "stop_reason": stop,
                "curves": {
                    "epoch": run.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
                    "eval_acc": run.epochs.iter().map(|e| e.eval_acc).collect::<Vec<_>>(),
                    "eval_loss": run.epochs.iter().map(|e| e.eval_loss).collect::<Vec<_>>(),
                    "train_loss": run.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
                    "lr": run.epochs.iter().map(|e| e.lr).collect::<Vec<_>>(),
                },
            })
        })
        .collect();
    let factors = crate::report::csv::factor_columns(&view);
    let reports: Vec<Value> = ["md", "html", "csv", "json"]
        .iter()
        .map(|f| {
            json!({
                "format": f,
                "url": format!("/api/experiments/{}/report/{f}", status.experiment.id),
            })
        })
        .collect();
    let effects: Vec<Value> = if view.show_effects() {
        view.effects.iter().map(effect_json).collect()
    } else {
        Vec::new()
    };
    let claims: Vec<JsonClaim> = view.claims.iter().map(JsonClaim::of).collect();
    json!({
        "version": version,
        "experiment": experiment_json(&status.experiment, status.at_ms),
        "partial": view.partial,
        "summary": view.summary_sentences(),
        "factors": factors,
        "runs": runs,
        "effects": effects,
        "claims": claims,
        "reports": reports,
    })
}

/// The experiment a run id belongs to (`EXPERIMENT-NNNN`).
fn experiment_of_run(run_id: &str) -> Option<&str> {
    let (experiment, n) = run_id.rsplit_once('-')?;
    (n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit())).then_some(experiment)
}

/// `GET /api/workers`.
pub fn workers(workers: &[WorkerView], now_ms: u64, version: u64) -> Value {
    let list: Vec<Value> = workers
        .iter()
        .map(|w| {
            json!({
                "id": w.info.id,
                "name": w.info.name,
                "devices": w.info.devices,
                "threads": w.info.threads,
                "busy": w.busy,
                "connected": w.connected,
                "last_seen_unix_ms": w.last_seen_ms,
                "seconds_since_seen": w.last_seen_ms.map(|t| now_ms.saturating_sub(t) as f64 / 1000.0),
                "runs": w.runs.iter().map(|r| json!({
                    "id": r,
                    "experiment": experiment_of_run(r),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "version": version, "workers": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_names_its_experiment() {
        assert_eq!(
            experiment_of_run("quick-1a2b3c4d-0003"),
            Some("quick-1a2b3c4d")
        );
        assert_eq!(experiment_of_run("nodash"), None);
        assert_eq!(experiment_of_run("x-12a4"), None);
    }
}
