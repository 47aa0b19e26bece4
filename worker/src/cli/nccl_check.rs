//! `ablate-worker nccl-check` (hidden): the NCCL path with a world of one, for
//! `deploy/gpu-check.sh` on a machine with a GPU.

use ablate_common::spec::DeviceList;

/// Arguments of `nccl-check`.
#[derive(Debug, clap::Args)]
pub struct NcclCheckArgs {
    /// The GPU, `cuda:N`.
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
}

/// Runs `nccl-check`: one line per stage, an error at the first stage that fails.
pub fn run(args: &NcclCheckArgs) -> anyhow::Result<()> {
    let list = DeviceList::parse(&args.device)
        .and_then(|list| crate::devices::check_available(&list).map(|()| list))
        .map_err(|e| anyhow::anyhow!("--device {e}"))?;
    let DeviceList::Cuda(ordinals) = list else {
        anyhow::bail!("--device {}: NCCL needs a GPU, `cuda:N`", args.device);
    };
    if ordinals.len() != 1 {
        anyhow::bail!("--device {}: one GPU (a world of one)", args.device);
    }
    check(tch::Device::Cuda(ordinals[0]))
}

#[cfg(feature = "cuda")]
fn check(device: tch::Device) -> anyhow::Result<()> {
    let report = crate::collective::nccl::self_check(device)?;
    for (stage, result) in report.stages {
        println!("nccl {stage}: {result}");
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn check(_device: tch::Device) -> anyhow::Result<()> {
    anyhow::bail!("this ablate-worker was built without the `cuda` feature: it has no NCCL")
}
