//! `ablate watch EXP`: a progress bar a running run (epoch/step, loss, eval accuracy,
//! ETA) and a summary line a finished one. Without a terminal, plain lines instead.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::process::ExitCode;

use ablate_common::proto;
use ablate_common::proto::{ExperimentState, RunState};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::app::{Answer, Remote};
use super::display::{duration, loss, percent};
use crate::rpc::client::Client;

/// Options of `ablate watch`.
#[derive(Debug, Args)]
pub(super) struct WatchArgs {
    /// Experiment id or name.
    experiment: String,
    #[command(flatten)]
    remote: Remote,
}

/// How a watched experiment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WatchOutcome {
    /// Every run finished.
    Finished,
    /// Some runs failed.
    Failed(u32),
    /// Some runs were cancelled (none failed).
    Cancelled,
    /// The stream ended before the experiment was done (coordinator shut down).
    Interrupted,
}

impl WatchOutcome {
    pub(super) fn exit_code(&self) -> ExitCode {
        match self {
            WatchOutcome::Finished => ExitCode::SUCCESS,
            WatchOutcome::Failed(_) => ExitCode::from(1),
            WatchOutcome::Cancelled => ExitCode::from(3),
            WatchOutcome::Interrupted => ExitCode::from(4),
        }
    }
}

/// The line printed when a run is done.
pub(super) fn summary_line(r: &proto::RunStatus) -> String {
    match r.state() {
        RunState::Finished => format!(
            "✓ {}  best eval acc {}, last {}, {} epochs, {}{}",
            r.name,
            percent(r.best_eval_acc),
            percent(r.last_eval_acc),
            r.epochs,
            duration(r.elapsed_seconds),
            if r.attempt > 1 {
                format!(", {} attempts", r.attempt)
            } else {
                String::new()
            }
        ),
        RunState::Failed => format!(
            "✗ {}  failed after {} attempt(s): {}",
            r.name, r.attempt, r.error
        ),
        RunState::Stopped => format!(
            "■ {}  stopped early at epoch {} ({}): {}",
            r.name, r.stop_epoch, r.stop_rule, r.stop_reason
        ),
        _ => format!(
            "- {}  cancelled{}",
            r.name,
            match r.best_eval_acc {
                Some(acc) => format!(" (best eval acc so far {})", percent(Some(acc))),
                None => String::new(),
            }
        ),
    }
}

fn position(r: &proto::RunStatus) -> (u64, u64) {
    let epochs = u64::from(r.epochs.max(1));
    let done_epochs = u64::from(r.current_epoch.saturating_sub(1));
    if r.steps_per_epoch > 0 {
        let len = epochs * r.steps_per_epoch;
        (
            (done_epochs * r.steps_per_epoch + r.current_step).min(len),
            len,
        )
    } else {
        (done_epochs.min(epochs), epochs)
    }
}

fn bar_message(r: &proto::RunStatus) -> String {
    let mut msg = format!(
        "epoch {}/{}",
        r.current_epoch.max(1).min(r.epochs),
        r.epochs
    );
    if r.steps_per_epoch > 0 {
        msg.push_str(&format!(" step {}/{}", r.current_step, r.steps_per_epoch));
    }
    msg.push_str(&format!(
        " loss {} acc {}",
        loss(r.last_loss),
        percent(r.last_eval_acc)
    ));
    if r.attempt > 1 {
        msg.push_str(&format!(" (attempt {})", r.attempt));
    }
    msg
}

/// The display: bars on a terminal, plain lines otherwise.
struct View {
    bars: Option<(MultiProgress, ProgressBar)>,
    running: HashMap<String, ProgressBar>,
    reported: HashSet<String>,
    plain_last: HashMap<String, (u32, Option<u64>)>,
    plain_waiting: Option<String>,
    name_width: usize,
}

impl View {
    fn new() -> View {
        let bars = std::io::stderr().is_terminal().then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = mp.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} runs done {msg} ({elapsed})",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            (mp, overall)
        });
        View {
            bars,
            running: HashMap::new(),
            reported: HashSet::new(),
            plain_last: HashMap::new(),
            plain_waiting: None,
            name_width: 20,
        }
    }

    fn print(&self, line: &str) {
        match &self.bars {
            Some((mp, _)) => {
                let _ = mp.println(line);
            }
            None => println!("{line}"),
        }
    }

    fn update(&mut self, status: &proto::ExperimentStatus) {
        self.name_width = status
            .runs
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(20)
            .clamp(10, 48);
        for r in &status.runs {
            if r.state().is_terminal() {
                if self.reported.insert(r.id.clone()) {
                    if let Some(bar) = self.running.remove(&r.id) {
                        bar.finish_and_clear();
                        if let Some((mp, _)) = &self.bars {
                            mp.remove(&bar);
                        }
                    }
                    self.print(&summary_line(r));
                }
                continue;
            }
            if r.state() != RunState::Running {
                continue;
            }
            match &self.bars {
                Some((mp, _)) => {
                    let width = self.name_width;
                    let bar = self.running.entry(r.id.clone()).or_insert_with(|| {
                        let bar = mp.add(ProgressBar::new(1));
                        bar.set_style(
                            ProgressStyle::with_template(&format!(
                                "{{prefix:<{width}}} [{{bar:20}}] {{msg}} ETA {{eta}}"
                            ))
                            .expect("a valid template")
                            .progress_chars("=> "),
                        );
                        bar.set_prefix(r.name.chars().take(width).collect::<String>());
                        bar
                    });
                    let (pos, len) = position(r);
                    bar.set_length(len);
                    bar.set_position(pos);
                    bar.set_message(bar_message(r));
                }
                None => {
                    // A line when an attempt starts and when an epoch's eval result arrives.
                    let key = (r.attempt, r.last_eval_acc.map(f64::to_bits));
                    if self.plain_last.get(&r.id) != Some(&key) {
                        println!("{}: {}", r.name, bar_message(r));
                        self.plain_last.insert(r.id.clone(), key);
                    }
                }
            }
        }
        let running = status
            .runs
            .iter()
            .filter(|r| r.state() == RunState::Running)
            .count();
        // Nothing runs: say why the first queued run waits (no silently stuck grid).
        let waiting = status
            .runs
            .iter()
            .find(|r| r.state() == RunState::Queued && !r.pending_reason.is_empty())
            .filter(|_| running == 0)
            .map(|r| r.pending_reason.clone());
        if let (Some((_, overall)), Some(e)) = (&self.bars, &status.experiment) {
            let done = status
                .runs
                .iter()
                .filter(|r| r.state().is_terminal())
                .count();
            overall.set_prefix(e.name.clone());
            overall.set_length(e.runs.into());
            overall.set_position(done as u64);
            overall.set_message(format!(
                "· {running} running · {} queued · {} failed{}",
                e.runs as usize - done - running,
                e.failed,
                waiting
                    .as_ref()
                    .map(|w| format!(" · waiting: {w}"))
                    .unwrap_or_default()
            ));
        } else if let Some(w) = waiting {
            if self.plain_waiting.as_ref() != Some(&w) {
                println!("waiting: {w}");
                self.plain_waiting = Some(w);
            }
        }
    }

    fn finish(&mut self) {
        for (_, bar) in self.running.drain() {
            bar.finish_and_clear();
        }
        if let Some((_, overall)) = &self.bars {
            overall.finish_and_clear();
        }
    }
}

/// Follows an experiment until it is done (or the coordinator goes away).
pub(super) async fn watch(client: &mut Client, experiment: &str) -> anyhow::Result<WatchOutcome> {
    let mut stream = client
        .watch(proto::GetRequest {
            experiment: experiment.to_string(),
        })
        .await
        .answer()?;
    let mut view = View::new();
    let mut last: Option<proto::ExperimentStatus> = None;
    let result = loop {
        match stream.message().await {
            Ok(Some(status)) => {
                view.update(&status);
                last = Some(status);
            }
            Ok(None) => break Ok(()),
            Err(s) => break Err(anyhow::anyhow!("watching {experiment}: {}", s.message())),
        };
    };
    view.finish();
    result?;
    let Some(summary) = last.and_then(|s| s.experiment) else {
        return Ok(WatchOutcome::Interrupted);
    };
    let outcome = match summary.state() {
        ExperimentState::Finished => WatchOutcome::Finished,
        ExperimentState::Failed => WatchOutcome::Failed(summary.failed),
        ExperimentState::Cancelled => WatchOutcome::Cancelled,
        _ => WatchOutcome::Interrupted,
    };
    println!(
        "{} ({}): {} — {} of {} runs finished, {} failed",
        summary.name,
        summary.id,
        summary.state(),
        summary.finished,
        summary.runs,
        summary.failed
    );
    Ok(outcome)
}

pub(super) async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.remote.connect().await?;
    Ok(watch(&mut client, &args.experiment).await?.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_status(state: RunState) -> proto::RunStatus {
        proto::RunStatus {
            id: "r".into(),
            name: "cnn act=relu".into(),
            model: "cnn".into(),
            state: state as i32,
            attempt: 1,
            epochs: 3,
            current_epoch: 2,
            current_step: 50,
            steps_per_epoch: 100,
            last_loss: Some(0.5),
            best_eval_acc: Some(0.875),
            last_eval_acc: Some(0.85),
            elapsed_seconds: 65.0,
            error: "boom".into(),
            ..Default::default()
        }
    }

    #[test]
    fn positions_count_steps_across_epochs() {
        assert_eq!(position(&run_status(RunState::Running)), (150, 300));
        let mut r = run_status(RunState::Running);
        r.steps_per_epoch = 0;
        assert_eq!(position(&r), (1, 3));
    }

    #[test]
    fn summary_lines() {
        assert_eq!(
            summary_line(&run_status(RunState::Finished)),
            "✓ cnn act=relu  best eval acc 87.5%, last 85.0%, 3 epochs, 1m05s"
        );
        assert_eq!(
            summary_line(&run_status(RunState::Failed)),
            "✗ cnn act=relu  failed after 1 attempt(s): boom"
        );
        assert_eq!(
            bar_message(&run_status(RunState::Running)),
            "epoch 2/3 step 50/100 loss 0.5000 acc 85.0%"
        );
    }
}
