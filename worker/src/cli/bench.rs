//! `ablate-worker bench` (training throughput) and `ablate-worker arch` (a model's layer
//! tree as JSON, which `bench/pytorch_train.py` builds the same network from).

use ablate_common::spec::ModelFactors;

use crate::bench::{self, BenchConfig};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Catalogue model.
    #[arg(long)]
    pub model: String,
    /// Input size.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Input channels.
    #[arg(long, default_value_t = 3)]
    pub channels: usize,
    /// Classes.
    #[arg(long, default_value_t = 16)]
    pub classes: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `arch`.
#[derive(Debug, clap::Args)]
pub struct ArchArgs {
    /// Catalogue model.
    #[arg(long)]
    pub model: String,
    /// Input size.
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// Input channels.
    #[arg(long, default_value_t = 3)]
    pub channels: usize,
    /// Classes.
    #[arg(long, default_value_t = 16)]
    pub classes: usize,
}

fn parse_device(text: &str) -> anyhow::Result<tch::Device> {
    if text == "cpu" {
        return Ok(tch::Device::Cpu);
    }
    let ordinal = text
        .strip_prefix("cuda:")
        .and_then(|i| i.parse::<usize>().ok())
        .ok_or_else(|| anyhow::anyhow!("--device {text}: expected `cpu` or `cuda:N`"))?;
    if !tch::Cuda::is_available() || ordinal >= tch::Cuda::device_count() as usize {
        anyhow::bail!("--device {text}: no such CUDA device on this machine");
    }
    Ok(tch::Device::Cuda(ordinal))
}

/// Runs `bench`.
pub fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let arch = ablate_common::zoo::build(
        &args.model,
        &ModelFactors::default(),
        args.channels,
        args.image_size,
        args.classes,
    )?;
    let result = bench::run(&BenchConfig {
        arch,
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        threads: args.threads,
        device: parse_device(&args.device)?,
    });
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{} at {}×{}, batch {}, {} threads on {}: {:.1} images/s",
            result.model,
            result.image_size,
            result.image_size,
            result.batch,
            result.threads,
            result.device,
            result.images_per_sec
        );
    }
    Ok(())
}

/// Runs `arch`: prints the model's Architecture as JSON.
pub fn run_arch(args: &ArchArgs) -> anyhow::Result<()> {
    let arch = ablate_common::zoo::build(
        &args.model,
        &ModelFactors::default(),
        args.channels,
        args.image_size,
        args.classes,
    )?;
    println!("{}", serde_json::to_string(&arch)?);
    Ok(())
}
