//! `ablate status --json`: experiments and their runs as one JSON document, for scripts.
//!
//! ```json
//! {"experiments": [{"id", "name", "state", "total_runs", "finished", "failed",
//!   "submitted_unix_ms", "runs": [{"id", "name", "model", "state", "attempt", "worker", "gpus", "epoch",
//!     "epochs", "step", "steps_per_epoch", "epochs_done", "checkpoint_epoch", "last_loss",
//!     "best_eval_acc", "elapsed_seconds", "error", "pending_reason",
//!     "stop": {"rule", "epoch", "reason", "resumed"}}],
//!   "stopped", "early_stopping": {"rule", "stopped_runs", "gpu_hours_used",
//!     "gpu_hours_saved", "core_hours_used", "core_hours_saved"}}]}
//! ```
//! Absent values are `null` (no loss yet, no error, not pending).

use ablate_common::proto;
use serde_json::{json, Value};

use super::app::Answer;
use crate::rpc::client::Client;

fn number(v: Option<f64>) -> Value {
    match v {
        Some(v) if v.is_finite() => json!(v),
        _ => Value::Null,
    }
}

fn text(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}

/// One run.
pub(super) fn run_json(r: &proto::RunStatus) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "model": r.model,
        "state": r.state().label(),
        "attempt": r.attempt,
        "worker": text(&r.worker),
        "gpus": r.gpus,
        "epoch": r.current_epoch,
        "epochs": r.epochs,
        "step": r.current_step,
        "steps_per_epoch": r.steps_per_epoch,
        // best_eval_acc is set once an epoch is stored.
        "epochs_done": r.best_eval_acc.is_some(),
        "checkpoint_epoch": r.checkpoint_epoch,
        "last_loss": number(r.last_loss),
        "best_eval_acc": number(r.best_eval_acc),
        "elapsed_seconds": r.elapsed_seconds,
        "error": text(&r.error),
        "pending_reason": text(&r.pending_reason),
        "stop": if r.stop_rule.is_empty() {
            Value::Null
        } else {
            json!({
                "rule": r.stop_rule,
                "epoch": r.stop_epoch,
                "reason": r.stop_reason,
                "resumed": r.stop_resumed,
            })
        },
    })
}

/// One experiment with its runs.
pub(super) fn experiment_json(status: &proto::ExperimentStatus) -> Value {
    let e = status.experiment.clone().unwrap_or_default();
    json!({
        "id": e.id,
        "name": e.name,
        "state": e.state().label(),
        "total_runs": e.runs,
        "finished": e.finished,
        "failed": e.failed,
        "submitted_unix_ms": e.submitted_unix_ms,
        "stopped": e.stopped,
        "early_stopping": status.early_stopping.as_ref().map(|s| json!({
            "rule": s.rule,
            "stopped_runs": s.stopped_runs,
            "gpu_hours_used": s.gpu_hours_used,
            "gpu_hours_saved": s.gpu_hours_saved,
            "core_hours_used": s.core_hours_used,
            "core_hours_saved": s.core_hours_saved,
        })),
        "runs": status.runs.iter().map(run_json).collect::<Vec<_>>(),
    })
}

/// `{"experiments": [...]}`: one experiment (by id or name), or every experiment.
pub(super) async fn fetch(client: &mut Client, experiment: Option<&str>) -> anyhow::Result<Value> {
    let keys: Vec<String> = match experiment {
        Some(key) => vec![key.to_string()],
        None => client
            .list(proto::ListRequest {})
            .await
            .answer()?
            .experiments
            .into_iter()
            .map(|e| e.id)
            .collect(),
    };
    let mut experiments = Vec::with_capacity(keys.len());
    for key in keys {
        let status = client
            .get(proto::GetRequest { experiment: key })
            .await
            .answer()?;
        experiments.push(experiment_json(&status));
    }
    Ok(json!({ "experiments": experiments }))
}
