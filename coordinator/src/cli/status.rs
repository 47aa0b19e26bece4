//! `ablate status [EXP]`.

use std::process::ExitCode;

use ablate_common::proto;
use clap::Args;

use super::app::{Answer, Remote};
use super::display::{ago, duration, loss, percent, si_unit, table};
use crate::state::now_ms;

/// Options of `ablate status`.
#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    /// Experiment id or name; without it, every experiment.
    experiment: Option<String>,
    /// Print JSON (the experiments with their runs) instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// The runs of one experiment as a table.
pub(super) fn experiment_table(status: &proto::ExperimentStatus) -> String {
    let mut out = String::new();
    if let Some(e) = &status.experiment {
        let stopped = if e.stopped > 0 {
            format!(", {} stopped early", e.stopped)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} ({}): {} — {} runs, {} finished, {} failed{stopped}\n",
            e.name,
            e.id,
            e.state(),
            e.runs,
            e.finished,
            e.failed
        ));
    }
    if let Some(s) = &status.early_stopping {
        out.push_str(&format!("early stopping: {}\n", s.rule));
        let saved = crate::report::stopping::ComputeSaved {
            stopped_runs: s.stopped_runs,
            gpu_hours_used: s.gpu_hours_used,
            gpu_hours_saved: s.gpu_hours_saved,
            core_hours_used: s.core_hours_used,
            core_hours_saved: s.core_hours_saved,
        };
        out.push_str(&format!(
            "  {} run(s) stopped; {}\n",
            s.stopped_runs,
            saved.sentence()
        ));
    }
    let rows: Vec<Vec<String>> = status
        .runs
        .iter()
        .map(|r| {
            let position = if r.state() == proto::RunState::Running && r.steps_per_epoch > 0 {
                format!(
                    "{}/{} {}/{}",
                    r.current_epoch, r.epochs, r.current_step, r.steps_per_epoch
                )
            } else {
                format!("{}/{}", r.current_epoch.min(r.epochs), r.epochs)
            };
            vec![
                r.id.clone(),
                r.name.clone(),
                r.state().to_string(),
                r.attempt.to_string(),
                position,
                loss(r.last_loss),
                percent(r.best_eval_acc),
                duration(r.elapsed_seconds),
                checkpoint(r),
                r.worker.clone(),
                if !r.stop_rule.is_empty() && !r.stop_resumed {
                    format!(
                        "stopped at epoch {} ({}): {}",
                        r.stop_epoch, r.stop_rule, r.stop_reason
                    )
                } else if r.error.is_empty() {
                    r.pending_reason.clone()
                } else {
                    r.error.clone()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "RUN",
            "NAME",
            "STATE",
            "ATTEMPT",
            "EPOCH",
            "LOSS",
            "BEST ACC",
            "TIME",
            "CHECKPOINT",
            "WORKER",
            "ERROR / WAITING FOR",
        ],
        &rows,
    ));
    out
}

/// The stored checkpoint: `1.1 GB @ epoch 2`, or `–` without one.
fn checkpoint(r: &proto::RunStatus) -> String {
    if r.checkpoint_bytes == 0 {
        return "–".into();
    }
    format!(
        "{} @ epoch {}",
        si_unit(r.checkpoint_bytes as f64, "B"),
        r.checkpoint_epoch
    )
}

pub(super) async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.remote.connect().await?;
    if args.json {
        let json = super::status_json::fetch(&mut client, args.experiment.as_deref()).await?;
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &args.experiment {
        Some(experiment) => {
            let status = client
                .get(proto::GetRequest {
                    experiment: experiment.clone(),
                })
                .await
                .answer()?;
            print!("{}", experiment_table(&status));
        }
        None => {
            let list = client.list(proto::ListRequest {}).await.answer()?;
            if list.experiments.is_empty() {
                println!("no experiments yet (ablate submit GRID)");
                return Ok(ExitCode::SUCCESS);
            }
            let now = now_ms();
            let rows: Vec<Vec<String>> = list
                .experiments
                .iter()
                .map(|e| {
                    vec![
                        e.id.clone(),
                        e.name.clone(),
                        e.state().to_string(),
                        e.runs.to_string(),
                        e.finished.to_string(),
                        e.failed.to_string(),
                        ago(now, e.submitted_unix_ms),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "EXPERIMENT",
                        "NAME",
                        "STATE",
                        "RUNS",
                        "FINISHED",
                        "FAILED",
                        "SUBMITTED"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
