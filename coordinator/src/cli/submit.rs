//! `ablate submit GRID [--watch]`.

use std::path::PathBuf;
use std::process::ExitCode;

use ablate_common::proto;
use anyhow::Context;
use clap::Args;

use super::app::Remote;

/// Options of `ablate submit`.
#[derive(Debug, Args)]
pub(super) struct SubmitArgs {
    /// The grid file (TOML).
    grid: PathBuf,
    /// Follow the experiment until it is done.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Reads a grid file; the name errors are reported with is the path as given.
pub(super) fn read_grid(path: &std::path::Path) -> anyhow::Result<(String, String)> {
    use ablate_common::spec::grid::MAX_GRID_FILE_BYTES;
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_GRID_FILE_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .with_context(|| format!("cannot read the grid {}", path.display()))?;
    if text.len() > MAX_GRID_FILE_BYTES {
        anyhow::bail!(
            "{}: the grid file is more than {MAX_GRID_FILE_BYTES} bytes (the limit)",
            path.display()
        );
    }
    Ok((text, path.display().to_string()))
}

/// Submits a grid; returns the experiment id. A refused grid is an error whose text has
/// the file, line and column.
pub(super) async fn submit(
    client: &mut crate::client::Client,
    text: String,
    file_name: String,
) -> anyhow::Result<proto::SubmitResponse> {
    let response = client
        .submit(proto::SubmitRequest {
            grid_toml: text,
            file_name,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(response.into_inner())
}

pub(super) async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (text, file_name) = read_grid(&args.grid)?;
    let mut client = args.remote.connect().await?;
    let submitted = submit(&mut client, text, file_name).await?;
    println!(
        "submitted {} ({}): {} runs",
        submitted.experiment_id, submitted.name, submitted.runs
    );
    for warning in &submitted.warnings {
        eprintln!("warning: {warning}");
    }
    if !args.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = super::watch::watch(&mut client, &submitted.experiment_id).await?;
    Ok(outcome.exit_code())
}
