//! The one check of a device list against this machine and this build, used by the agent's
//! `--devices`, the standalone `train` command and the training engine.
//!
//! Parsing (and refusing a device listed twice) is [`DeviceList::parse`]'s job; this adds
//! what only the worker knows: how many CUDA devices libtorch sees, and whether the binary
//! can all-reduce across GPUs (NCCL comes with the `cuda` feature).

use ablate_common::spec::{DeviceError, DeviceList};

/// Whether this binary was built with NCCL (the `cuda` feature).
pub const NCCL_BUILT: bool = cfg!(feature = "cuda");

/// Why a run cannot train on its devices here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunDevicesError {
    /// A device the run names does not exist here.
    #[error(transparent)]
    Unavailable(#[from] DeviceError),
    /// Several GPUs, and this binary has no NCCL to all-reduce across them.
    #[error(
        "`{0}`: a run across several GPUs needs NCCL, and this ablate-worker was built \
         without the `cuda` feature (rebuild with `cargo build --release -p ablate-worker \
         --features cuda`, or give the run one GPU)"
    )]
    NoNccl(DeviceList),
}

/// CUDA devices libtorch sees; 0 without CUDA. Touches no CUDA library unless libtorch
/// reports CUDA available.
pub fn cuda_device_count() -> usize {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// Checks that every device in `list` exists here ([`DeviceList::check_available`]).
/// Used for the devices a worker offers, which may later be used one run each.
pub fn check_available(list: &DeviceList) -> Result<(), DeviceError> {
    list.check_available(cuda_device_count())
}

/// Checks the devices of one run: they exist here, and a run across several GPUs has NCCL.
pub fn check_run(list: &DeviceList) -> Result<(), RunDevicesError> {
    check_run_on(list, cuda_device_count(), NCCL_BUILT)
}

/// [`check_run`] for a machine with `cuda_devices` devices and a build with or without NCCL.
fn check_run_on(list: &DeviceList, cuda_devices: usize, nccl: bool) -> Result<(), RunDevicesError> {
    list.check_available(cuda_devices)?;
    if matches!(list, DeviceList::Cuda(v) if v.len() > 1) && !nccl {
        return Err(RunDevicesError::NoNccl(list.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_across_gpus_needs_nccl() {
        let two = DeviceList::parse("cuda:0,1").unwrap();
        let err = check_run_on(&two, 2, false).unwrap_err().to_string();
        assert!(
            err.contains("needs NCCL") && err.contains("--features cuda"),
            "{err}"
        );
        assert!(check_run_on(&two, 2, true).is_ok());
        let one = DeviceList::parse("cuda:1").unwrap();
        assert!(check_run_on(&one, 2, false).is_ok());
        assert!(check_run_on(&DeviceList::Cpu(2), 0, false).is_ok());
    }

    #[test]
    fn a_missing_gpu_is_refused_before_nccl_is_asked_for() {
        let err = check_run_on(&DeviceList::parse("cuda:0,3").unwrap(), 2, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cuda:3 requested"), "{err}");
    }

    #[test]
    fn this_machine_has_what_libtorch_counts() {
        // On a machine without CUDA (CI) any CUDA ordinal is refused with a clear message.
        let n = cuda_device_count();
        let past = DeviceList::Cuda(vec![n]);
        let err = check_available(&past).unwrap_err().to_string();
        assert!(err.contains(&format!("cuda:{n} requested")), "{err}");
        assert!(check_available(&DeviceList::Cpu(1)).is_ok());
    }
}
