//! The dtype a run computes in under `mixed_precision`, and setting it in libtorch
//! (`csrc/autocast.cpp`): `tch::autocast` only switches autocast on, and CUDA autocast's
//! default dtype is float16, which without loss scaling underflows small gradients to zero
//! and overflows large activations to inf.

use std::ffi::{c_char, c_int};

use tch::{Device, Kind};

use crate::model::take_shim_error;

extern "C" {
    fn ablate_autocast_set_cuda_dtype(dtype: c_int) -> *mut c_char;
    fn ablate_autocast_cuda_dtype() -> c_int;
    fn ablate_autocast_enter(dtype: c_int, was_enabled: *mut c_int) -> *mut c_char;
    fn ablate_autocast_exit(was_enabled: c_int) -> *mut c_char;
    fn ablate_autocast_cuda_enabled() -> c_int;
    fn ablate_cuda_supports_bf16(device_index: c_int, out: *mut c_int) -> *mut c_char;
}

/// CUDA could not say whether a device computes in bfloat16.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cuda:{index}: {message}")]
pub struct PrecisionError {
    /// The CUDA ordinal.
    pub index: usize,
    /// The CUDA shim's message.
    pub message: String,
}

/// The autocast dtype of a replica: bfloat16 on a CUDA device that supports it when the
/// spec asks for mixed precision; `None` (float32 throughout) otherwise, since the CPU
/// path has no autocast and float16 without loss scaling is not safe to train in.
pub fn autocast_kind(mixed_precision: bool, device: Device, bf16_supported: bool) -> Option<Kind> {
    match device {
        Device::Cuda(_) if mixed_precision && bf16_supported => Some(Kind::BFloat16),
        _ => None,
    }
}

/// Whether CUDA device `index` computes in bfloat16 natively (compute capability ≥ 8.0).
pub fn cuda_supports_bf16(index: usize) -> Result<bool, PrecisionError> {
    let mut out: c_int = 0;
    // SAFETY: the shim writes `out` and returns null or an owned message.
    match unsafe { take_shim_error(ablate_cuda_supports_bf16(index as c_int, &mut out)) } {
        Some(message) => Err(PrecisionError { index, message }),
        None => Ok(out == 1),
    }
}

/// The autocast dtype for a replica on `device`, asking the device when it is CUDA.
pub fn autocast_for(mixed_precision: bool, device: Device) -> Result<Option<Kind>, PrecisionError> {
    let bf16 = match device {
        Device::Cuda(i) if mixed_precision => cuda_supports_bf16(i)?,
        _ => false,
    };
    if mixed_precision && device.is_cuda() && !bf16 {
        tracing::warn!(
            ?device,
            "mixed_precision: this GPU has no bfloat16; training in float32 \
             (float16 without loss scaling is not safe)"
        );
    }
    Ok(autocast_kind(mixed_precision, device, bf16))
}

/// Sets the calling thread's CUDA autocast dtype (thread-local in libtorch) to `kind`,
/// float16 or bfloat16.
pub fn set_cuda_autocast_dtype(kind: Kind) {
    let code = dtype_code(kind);
    // SAFETY: the shim returns null or an owned message.
    if let Some(message) = unsafe { take_shim_error(ablate_autocast_set_cuda_dtype(code)) } {
        panic!("set_autocast_dtype: {message}");
    }
}

/// Runs `f` under CUDA autocast in `kind` (float16 or bfloat16), or plainly when `kind` is
/// `None`. It replaces `tch::autocast`, which libtorch 2.11 answers with a deprecation
/// warning on every call, also when autocast is off.
pub fn with_cuda_autocast<T>(kind: Option<Kind>, f: impl FnOnce() -> T) -> T {
    let Some(kind) = kind else {
        return f();
    };
    let code = dtype_code(kind);
    let mut was_enabled: c_int = 0;
    // SAFETY: the shim writes `was_enabled` and returns null or an owned message.
    if let Some(message) = unsafe { take_shim_error(ablate_autocast_enter(code, &mut was_enabled)) }
    {
        panic!("entering autocast: {message}");
    }
    let result = f();
    // SAFETY: as above; pairs with the enter just made on this thread.
    if let Some(message) = unsafe { take_shim_error(ablate_autocast_exit(was_enabled)) } {
        panic!("leaving autocast: {message}");
    }
    result
}

/// The shim's code of an autocast dtype.
fn dtype_code(kind: Kind) -> c_int {
    match kind {
        Kind::BFloat16 => 2,
        Kind::Half => 1,
        other => panic!("autocast computes in float16 or bfloat16, not {other:?}"),
    }
}

/// Whether CUDA autocast is on in the calling thread.
pub fn cuda_autocast_enabled() -> bool {
    // SAFETY: a plain getter.
    unsafe { ablate_autocast_cuda_enabled() != 0 }
}

/// The calling thread's CUDA autocast dtype.
pub fn cuda_autocast_dtype() -> Option<Kind> {
    // SAFETY: a plain getter.
    match unsafe { ablate_autocast_cuda_dtype() } {
        1 => Some(Kind::Half),
        2 => Some(Kind::BFloat16),
        _ => None,
    }
}

/// A short name for a compute dtype (`fp32`, `bf16`, `fp16`), as reports print it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "fp32",
        Kind::BFloat16 => "bf16",
        Kind::Half => "fp16",
        Kind::Double => "fp64",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_precision_is_bf16_on_gpus_that_have_it_and_fp32_elsewhere() {
        let gpu = Device::Cuda(0);
        assert_eq!(autocast_kind(true, gpu, true), Some(Kind::BFloat16));
        assert_eq!(autocast_kind(true, gpu, false), None);
        assert_eq!(autocast_kind(false, gpu, true), None);
        assert_eq!(autocast_kind(true, Device::Cpu, true), None);
        assert_eq!(autocast_for(true, Device::Cpu).unwrap(), None);
    }

    /// The setter reaches libtorch's thread-local autocast state (no GPU needed), and
    /// another thread keeps its own.
    #[test]
    fn the_dtype_is_set_per_thread() {
        set_cuda_autocast_dtype(Kind::BFloat16);
        assert_eq!(cuda_autocast_dtype(), Some(Kind::BFloat16));
        let other = std::thread::spawn(cuda_autocast_dtype).join().unwrap();
        assert_eq!(
            other,
            Some(Kind::Half),
            "libtorch's default in a fresh thread"
        );
        set_cuda_autocast_dtype(Kind::Half);
        assert_eq!(cuda_autocast_dtype(), Some(Kind::Half));
    }

    /// Autocast is on, in the asked dtype, inside the closure only (nested too), and
    /// nothing is switched when it is not asked for.
    #[test]
    fn autocast_is_scoped_to_the_closure() {
        std::thread::spawn(|| {
            assert!(!cuda_autocast_enabled());
            let inside = with_cuda_autocast(Some(Kind::BFloat16), || {
                let nested = with_cuda_autocast(Some(Kind::BFloat16), cuda_autocast_enabled);
                (cuda_autocast_enabled(), cuda_autocast_dtype(), nested)
            });
            assert_eq!(inside, (true, Some(Kind::BFloat16), true));
            assert!(!cuda_autocast_enabled());
            assert!(!with_cuda_autocast(None, cuda_autocast_enabled));
        })
        .join()
        .unwrap();
    }
}
