//! `ablate-worker bench` (training throughput) and `ablate-worker arch` (a model's layer
//! tree as JSON, which `bench/pytorch_train.py` builds the same network from).

use ablate_common::spec::{DeviceList, ModelFactors};

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
    /// Autocast as a `mixed_precision` run does (bfloat16 on GPUs that have it).
    #[arg(long)]
    pub mixed_precision: bool,
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
    let list = DeviceList::parse(text)
        .and_then(|list| crate::devices::check_available(&list).map(|()| list))
        .map_err(|e| anyhow::anyhow!("--device {e}"))?;
    match list {
        DeviceList::Cpu(1) => Ok(tch::Device::Cpu),
        DeviceList::Cuda(ordinals) if ordinals.len() == 1 => Ok(tch::Device::Cuda(ordinals[0])),
        _ => anyhow::bail!("--device {text}: one device, `cpu` or `cuda:N`"),
    }
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
        mixed_precision: args.mixed_precision,
    })
    .map_err(anyhow::Error::msg)?;
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
