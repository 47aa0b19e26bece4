//! `ablate cancel EXP|RUN`.

use std::process::ExitCode;

use ablate_common::proto;
use clap::Args;

use super::app::{Answer, Remote};

/// Options of `ablate cancel`.
#[derive(Debug, Args)]
pub(super) struct CancelArgs {
    /// An experiment id or name (all its runs), or a run id.
    target: String,
    #[command(flatten)]
    remote: Remote,
}

pub(super) async fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.remote.connect().await?;
    let response = client
        .cancel(proto::CancelRequest {
            target: args.target.clone(),
        })
        .await
        .answer()?;
    println!(
        "cancelled {} run(s) of {}; running ones stop within seconds",
        response.cancelled_runs, args.target
    );
    Ok(ExitCode::SUCCESS)
}
