//! Leaky ReLU with the architecture's slope, through a few lines of C++
//! (`csrc/leaky_relu.cpp`) that call ATen's kernel, since tch cannot pass the slope.

use std::ffi::{c_char, c_int, CStr};

use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn ablate_leaky_relu(
        input: *const C_tensor,
        slope: f64,
        in_place: c_int,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
}

/// `max(x, 0) + slope·min(x, 0)` into a new tensor; differentiable.
pub(super) fn leaky_relu(xs: &Tensor, slope: f64) -> Tensor {
    call(xs, slope, false)
}

/// [`leaky_relu`] overwriting `xs`; autograd's backward then reads the output, which is
/// exact for a positive slope (the sign of the output is the sign of the input).
pub(super) fn leaky_relu_(xs: &mut Tensor, slope: f64) {
    let _ = call(xs, slope, true);
}

fn call(xs: &Tensor, slope: f64, in_place: bool) -> Tensor {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    // SAFETY: `xs` is a live tensor handle; on success the C++ side hands over a new owned
    // handle in `out`, on failure a malloc'ed message that we free.
    unsafe {
        let error = ablate_leaky_relu(xs.as_ptr(), slope, c_int::from(in_place), &mut out);
        if !error.is_null() {
            let message = CStr::from_ptr(error).to_string_lossy().into_owned();
            libc::free(error.cast());
            panic!("leaky_relu: {message}");
        }
        Tensor::from_ptr(out)
    }
}
