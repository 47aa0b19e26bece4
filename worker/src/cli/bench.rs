//! `ablate-worker bench`: training throughput on random data (the timing itself is
//! [`crate::train::throughput`]).

use ablate_common::spec::DeviceList;

use super::arch::ModelArgs;
use crate::train::throughput::{self, BenchConfig};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
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
    /// Autocast as a `mixed_precision` run does (bfloat16 on GPUs that have it).
    #[arg(long)]
    pub mixed_precision: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
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
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let arch = args.model.architecture()?;
    let result = throughput::run(&BenchConfig {
        arch,
        batch: args.batch,
        steps: args.steps,
        warmup: args.warmup,
        threads: args.threads,
        device: parse_device(&args.device)?,
        mixed_precision: args.mixed_precision,
    })?;
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
