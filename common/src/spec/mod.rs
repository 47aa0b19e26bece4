//! Specs users write (TOML) and the system passes around (JSON): runs, datasets, grids.

pub mod claims;
pub mod dataset;
pub mod device;
pub mod early_stopping;
pub mod grid;
pub mod model;
mod preset_factors;
pub mod run;

pub use dataset::{Augment, BadSamplePolicy, DatasetFormat, DatasetSpec, Fit, SplitSpec};
pub use device::{Device, DeviceError, DeviceList};
pub use model::{ActivationName, HeadKind, KernelKind, ModelFactors};
pub use run::{
    parse_duration, DurationError, LrSchedule, OptimizerKind, RunSpec, SpecError, SpecFileError,
    DEFAULT_STALL_TIMEOUT,
};
