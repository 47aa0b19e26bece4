//! The one path from a run spec to [`TrainOptions`], shared by the standalone `train`
//! command and the agent's sessions: the model from the catalogue, and the threads per
//! replica (the spec's `threads`, else the cores given shared among the replicas).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ablate_common::spec::{DeviceList, RunSpec};
use ablate_common::zoo::ZooError;

use super::TrainOptions;

/// Where and how a run trains, besides its spec.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Devices, one replica each.
    pub devices: DeviceList,
    /// Cores this run may use in total (shared among its replicas unless the spec sets
    /// `threads`).
    pub cores: usize,
    /// Where the checkpoint is written after every epoch.
    pub run_dir: PathBuf,
    /// Continue from the checkpoint in `run_dir` when there is one.
    pub resume: bool,
    /// Set to stop at the next step.
    pub stop: Arc<AtomicBool>,
}

/// Intra-op threads per replica: the spec's `threads`, else `cores / replicas` (at least 1).
pub fn threads_per_replica(spec: &RunSpec, devices: &DeviceList, cores: usize) -> usize {
    spec.threads
        .unwrap_or_else(|| (cores / devices.replicas()).max(1))
}

impl TrainOptions {
    /// Training options for `spec` placed by `placement`; the model is built from the
    /// catalogue (an unknown model or an impossible size is the error).
    pub fn for_spec(spec: RunSpec, placement: Placement) -> Result<TrainOptions, ZooError> {
        let arch = spec.architecture()?;
        let threads_per_replica = threads_per_replica(&spec, &placement.devices, placement.cores);
        Ok(TrainOptions {
            spec,
            arch,
            devices: placement.devices,
            run_dir: placement.run_dir,
            resume: placement.resume,
            threads_per_replica,
            stop: placement.stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(threads: Option<usize>) -> RunSpec {
        let mut spec: RunSpec =
            toml::from_str("model = \"lenet\"\nimage_size = 28\nchannels = 1\nclasses = 10")
                .expect("a run spec");
        spec.threads = threads;
        spec
    }

    #[test]
    fn threads_come_from_the_spec_else_from_the_cores() {
        let two = DeviceList::Cpu(2);
        assert_eq!(threads_per_replica(&spec(None), &two, 8), 4);
        assert_eq!(threads_per_replica(&spec(None), &two, 1), 1);
        assert_eq!(threads_per_replica(&spec(Some(3)), &two, 8), 3);
    }

    #[test]
    fn the_model_is_built_and_an_unknown_one_is_the_error() {
        let placement = Placement {
            devices: DeviceList::Cpu(1),
            cores: 2,
            run_dir: PathBuf::from("unused"),
            resume: false,
            stop: Arc::default(),
        };
        let options = TrainOptions::for_spec(spec(Some(1)), placement.clone()).unwrap();
        assert_eq!(options.threads_per_replica, 1);
        assert_eq!(options.arch.name, "lenet");
        assert!(!options.arch.layers.is_empty());
        let mut unknown = spec(None);
        unknown.model = "no-such-model".into();
        assert!(TrainOptions::for_spec(unknown, placement).is_err());
    }
}
