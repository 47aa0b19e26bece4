//! `ablate resume RUN|EXP`: queue runs the early-stopping rule stopped again.

use std::process::ExitCode;

use ablate_common::proto;
use clap::Args;

use super::app::{Answer, Remote};

/// Options of `ablate resume`.
#[derive(Debug, Args)]
pub(super) struct ResumeArgs {
    /// A stopped run's id, or an experiment id or name (all its stopped runs).
    target: String,
    #[command(flatten)]
    remote: Remote,
}

pub(super) async fn run(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.remote.connect().await?;
    let response = client
        .resume(proto::ResumeRequest {
            target: args.target.clone(),
        })
        .await
        .answer()?;
    if response.run_ids.is_empty() {
        println!("{} has no stopped run to resume", args.target);
    } else {
        println!(
            "resumed {} run(s): {}; each continues from its checkpoint to its last epoch and \
             is not judged by early stopping again",
            response.run_ids.len(),
            response.run_ids.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
