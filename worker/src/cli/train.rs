//! `ablate-worker train --spec run.toml [--resume]`: one run, standalone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ablate_common::metrics::EpochRecord;
use ablate_common::spec::RunSpec;
use anyhow::Context;

use crate::train::{self, Observer, Outcome, Placement, TrainOptions};

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The run spec (TOML; any RunSpec field).
    #[arg(long)]
    pub spec: PathBuf,
    /// Continue from the checkpoint in the run directory.
    #[arg(long)]
    pub resume: bool,
    /// Run directory for checkpoints and metrics.jsonl (default: the spec's
    /// `checkpoint_dir`, else `runs/<spec file stem>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

/// Prints a line per epoch and keeps `metrics.jsonl` equal to the run's history.
struct PrintingObserver {
    metrics_path: PathBuf,
    history: Vec<EpochRecord>,
}

impl Observer for PrintingObserver {
    fn on_start(&mut self, params: u64, start_epoch: u32, steps_per_epoch: u64) {
        if start_epoch > 0 {
            println!("resuming after epoch {start_epoch} ({params} parameters, {steps_per_epoch} steps an epoch)");
        } else {
            println!("training {params} parameters, {steps_per_epoch} steps an epoch");
        }
    }

    fn on_epoch(&mut self, r: &EpochRecord, _checkpoint: Option<&Path>) {
        println!(
            "epoch {:>3}  train loss {:.4} acc {:.2}%  eval loss {:.4} acc {:.2}%  lr {:.2e}  {:.1}s  {:.0} img/s",
            r.epoch,
            r.train_loss,
            100.0 * r.train_acc,
            r.eval_loss,
            100.0 * r.eval_acc,
            r.lr,
            r.seconds,
            r.images_per_sec
        );
        self.history.push(*r);
        if let Err(e) = write_metrics(&self.metrics_path, &self.history) {
            tracing::warn!("cannot write {}: {e}", self.metrics_path.display());
        }
    }
}

/// Rewrites `metrics.jsonl` atomically: one JSON line per epoch, never a duplicate.
fn write_metrics(path: &Path, history: &[EpochRecord]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    for r in history {
        serde_json::to_writer(&mut file, r)?;
        file.write_all(b"\n")?;
    }
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Runs `train`.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let file_name = args.spec.display().to_string();
    let text =
        std::fs::read_to_string(&args.spec).with_context(|| format!("cannot read {file_name}"))?;
    let spec = RunSpec::from_toml(&text, &file_name).map_err(anyhow::Error::msg)?;
    let run_dir = args
        .run_dir
        .clone()
        .or_else(|| spec.checkpoint_dir.clone())
        .unwrap_or_else(|| {
            let stem = args
                .spec
                .file_stem()
                .map(|s| s.to_string_lossy().to_string());
            PathBuf::from("runs").join(stem.unwrap_or_else(|| "run".into()))
        });
    let devices = spec
        .device_list()
        .map_err(crate::devices::RunDevicesError::from)
        .and_then(|d| crate::devices::check_run(&d).map(|()| d))
        .map_err(|e| anyhow::anyhow!("{file_name}: devices: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let opts = TrainOptions::for_spec(
        spec,
        Placement {
            devices,
            cores: num_cpus(),
            run_dir: run_dir.clone(),
            resume: args.resume,
            stop: stop.clone(),
        },
    )
    .map_err(|e| anyhow::anyhow!("{file_name}: model: {e}"))?;
    let spec = &opts.spec;
    let dataset = spec
        .dataset
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{file_name}: a run needs a [dataset] table"))?;
    let data = crate::data::open(dataset, spec.channels, spec.image_size, spec.classes)
        .map_err(|e| anyhow::anyhow!("{file_name}: dataset: {e}"))?;
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    std::fs::write(run_dir.join("spec.json"), serde_json::to_vec_pretty(spec)?)?;
    crate::signals::stop_on_terminate(stop)?;
    let metrics_path = run_dir.join("metrics.jsonl");
    let mut observer = PrintingObserver {
        metrics_path,
        history: Vec::new(),
    };
    if args.resume {
        if let Ok(Some(ck)) = train::checkpoint::load(&run_dir, &spec.training_hash()) {
            observer.history = ck.meta.history;
        }
    }
    match train::train(&opts, &data, &mut observer)? {
        Outcome::Completed {
            history,
            wall_seconds,
            ..
        } => {
            let best = history.iter().map(|r| r.eval_acc).fold(0.0, f64::max);
            println!(
                "done: {} epochs, best eval accuracy {:.2}%, {:.1}s; checkpoint and metrics.jsonl in {}",
                history.len(),
                100.0 * best,
                wall_seconds,
                run_dir.display()
            );
        }
        Outcome::Stopped { completed_epochs } => {
            println!(
                "stopped after epoch {completed_epochs}; continue with --resume (run directory {})",
                run_dir.display()
            );
        }
    }
    Ok(())
}

/// Cores available to this process.
pub fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
