//! A random generator owned by one replica (`csrc/generator.cpp`), for its dropout masks.
//!
//! `tch::manual_seed` seeds the process-wide CPU generator and every GPU's default
//! generator, so replicas that are threads of one process, or two runs in one agent, would
//! reseed each other and draw from a shared stream in whatever order the threads run.

use std::ffi::{c_char, c_int, c_void, CStr};

use tch::{Device, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn ablate_generator_new(device_index: c_int, seed: u64, out: *mut *mut c_void) -> *mut c_char;
    fn ablate_generator_free(generator: *mut c_void);
    fn ablate_bernoulli_(tensor: *const C_tensor, p: f64, generator: *const c_void) -> *mut c_char;
}

/// Takes a malloc'ed error message from the C++ side.
///
/// # Safety
/// `error` is null or a string the shim allocated with `strdup`.
pub(crate) unsafe fn take_error(error: *mut c_char) -> Option<String> {
    if error.is_null() {
        return None;
    }
    let message = CStr::from_ptr(error).to_string_lossy().into_owned();
    libc::free(error.cast());
    Some(message)
}

/// A replica generator that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RngError {
    /// A device kind without replica generators (neither the CPU nor CUDA).
    #[error("no replica generator for {0:?}")]
    Unsupported(Device),
    /// The C++ side failed.
    #[error("generator on {device:?}: {message}")]
    Shim {
        /// The device.
        device: Device,
        /// The shim's message.
        message: String,
    },
}

/// A torch generator on one device, seeded once; its draws depend on nothing else.
pub struct ReplicaRng {
    handle: *mut c_void,
    device: Device,
    seed: u64,
}

// SAFETY: the generator is an owned ATen object; ATen's kernels lock its mutex while they
// draw, and a replica uses its generator from one thread at a time.
unsafe impl Send for ReplicaRng {}

impl std::fmt::Debug for ReplicaRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaRng")
            .field("device", &self.device)
            .field("seed", &self.seed)
            .finish()
    }
}

impl ReplicaRng {
    /// A generator for tensors on `device`, seeded with `seed`.
    pub fn new(device: Device, seed: u64) -> Result<Self, RngError> {
        let index = match device {
            Device::Cpu => -1,
            Device::Cuda(i) => i as c_int,
            other => return Err(RngError::Unsupported(other)),
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: on success the shim hands over an owned generator, freed in `drop`.
        if let Some(message) = unsafe { take_error(ablate_generator_new(index, seed, &mut handle)) }
        {
            return Err(RngError::Shim { device, message });
        }
        Ok(ReplicaRng {
            handle,
            device,
            seed,
        })
    }

    /// Overwrites `tensor` (on this generator's device) with Bernoulli(`p`) draws.
    pub fn bernoulli_(&self, tensor: &mut Tensor, p: f64) {
        // SAFETY: both handles are live for the call.
        let error = unsafe { ablate_bernoulli_(tensor.as_ptr(), p, self.handle) };
        if let Some(message) = unsafe { take_error(error) } {
            panic!("bernoulli_: {message}");
        }
    }
}

impl Drop for ReplicaRng {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `ablate_generator_new` and is freed once.
        unsafe { ablate_generator_free(self.handle) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn draws(rng: &ReplicaRng) -> Vec<f32> {
        let mut t = Tensor::empty([64], (Kind::Float, Device::Cpu));
        rng.bernoulli_(&mut t, 0.5);
        Vec::<f32>::try_from(&t).unwrap()
    }

    /// Same seed, same stream, whatever else uses torch's global generator meanwhile;
    /// another seed, another stream.
    #[test]
    fn draws_depend_on_the_seed_alone() {
        let a = ReplicaRng::new(Device::Cpu, 11).unwrap();
        let b = ReplicaRng::new(Device::Cpu, 11).unwrap();
        let first = draws(&a);
        tch::manual_seed(3);
        let _ = Tensor::rand([1000], (Kind::Float, Device::Cpu));
        assert_eq!(first, draws(&b));
        assert!(first.iter().all(|&v| v == 0.0 || v == 1.0));
        assert_ne!(first, draws(&ReplicaRng::new(Device::Cpu, 12).unwrap()));
        // The stream goes on: the next draw differs from the first.
        assert_ne!(first, draws(&a));
    }
}
