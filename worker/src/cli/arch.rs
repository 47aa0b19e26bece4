//! `ablate-worker arch`: a model's layer tree as JSON, which `bench/pytorch_train.py` builds
//! the same network from.

use ablate_common::arch::Architecture;
use ablate_common::spec::ModelFactors;
use ablate_common::zoo::ZooError;

/// The model a command builds: a catalogue model at an input size (`arch`, `bench`).
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
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

impl ModelArgs {
    /// The model's layer tree from the catalogue, with its preset factors.
    pub fn architecture(&self) -> Result<Architecture, ZooError> {
        ablate_common::zoo::build(
            &self.model,
            &ModelFactors::default(),
            self.channels,
            self.image_size,
            self.classes,
        )
    }
}

/// Arguments of `arch`.
#[derive(Debug, clap::Args)]
pub struct ArchArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs `arch`: prints the model's Architecture as JSON.
pub fn run(args: &ArchArgs) -> anyhow::Result<()> {
    let arch = args.model.architecture()?;
    println!("{}", serde_json::to_string(&arch)?);
    Ok(())
}
