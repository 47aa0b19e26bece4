//! `ablate report EXP [--format md|html|csv|json|claims-csv] [-o FILE]`.

use std::path::PathBuf;
use std::process::ExitCode;

use ablate_common::proto;
use anyhow::Context;
use clap::Args;

use super::app::{Answer, Remote};
use crate::report::Format;

/// Options of `ablate report`.
#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    /// Experiment id or name.
    experiment: String,
    /// md, html, csv, json or claims-csv (default: from the -o file's extension, else md).
    #[arg(long)]
    format: Option<Format>,
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

/// Fetches a report rendered by the coordinator.
pub(super) async fn fetch(
    client: &mut crate::rpc::client::Client,
    experiment: &str,
    format: Format,
) -> anyhow::Result<proto::ReportResponse> {
    client
        .report(proto::ReportRequest {
            experiment: experiment.to_string(),
            format: format.extension().to_string(),
        })
        .await
        .answer()
}

pub(super) async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let format = match (args.format, &args.output) {
        (Some(f), _) => f,
        (None, Some(path)) => path
            .extension()
            .and_then(|e| e.to_str())
            .and_then(|e| e.parse().ok())
            .unwrap_or(Format::Markdown),
        (None, None) => Format::Markdown,
    };
    let mut client = args.remote.connect().await?;
    let report = fetch(&mut client, &args.experiment, format).await?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &report.content)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}", report.content),
    }
    Ok(ExitCode::SUCCESS)
}
