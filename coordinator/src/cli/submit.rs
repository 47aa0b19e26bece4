//! `ablate submit GRID [--watch]`.

use std::path::PathBuf;
use std::process::ExitCode;

use ablate_common::proto;
use anyhow::Context;
use clap::Args;

use super::app::{Answer, Remote};

/// Options of `ablate submit`.
#[derive(Debug, Args)]
pub(super) struct SubmitArgs {
    /// The grid file (TOML).
    grid: PathBuf,
    /// Follow the experiment until it is done.
    #[arg(long)]
    watch: bool,
    /// Who submits (default: $USER when it is a valid name): the cluster is shared fairly
    /// between users first, then between each user's experiments.
    #[arg(long, value_parser = parse_user)]
    user: Option<String>,
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
    client: &mut crate::rpc::client::Client,
    text: String,
    file_name: String,
) -> anyhow::Result<proto::SubmitResponse> {
    submit_as(client, text, file_name, None).await
}

fn parse_user(name: &str) -> Result<String, String> {
    crate::scheduling::users::check_user_name(name).map_err(|e| e.to_string())?;
    Ok(name.to_string())
}

/// [`submit`] in the name of `user` (metadata `ablate-user`).
pub(super) async fn submit_as(
    client: &mut crate::rpc::client::Client,
    text: String,
    file_name: String,
    user: Option<&str>,
) -> anyhow::Result<proto::SubmitResponse> {
    let mut request = tonic::Request::new(proto::SubmitRequest {
        grid_toml: text,
        file_name,
    });
    if let Some(user) = user {
        request.metadata_mut().insert(
            crate::scheduling::users::USER_METADATA_KEY,
            user.parse()
                .map_err(|_| anyhow::anyhow!("--user `{user}`: not a valid metadata value"))?,
        );
    }
    client.submit(request).await.answer()
}

pub(super) async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (text, file_name) = read_grid(&args.grid)?;
    let mut client = args.remote.connect().await?;
    let user = args.user.or_else(|| {
        std::env::var("USER")
            .ok()
            .filter(|u| crate::scheduling::users::check_user_name(u).is_ok())
    });
    let submitted = submit_as(&mut client, text, file_name, user.as_deref()).await?;
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
