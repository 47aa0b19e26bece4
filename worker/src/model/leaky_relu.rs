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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Values and gradients equal `x > 0 ? x : s·x` and `x > 0 ? 1 : s`, for the seed's slope,
    /// a slope above 1, and the in-place form.
    #[test]
    fn leaky_relu_matches_its_definition() {
        let x = Tensor::from_slice(&[-2.0f32, -0.5, 0.25, 3.0]);
        for slope in [0.02, 1.5] {
            let expected: Vec<f32> = [-2.0f32, -0.5, 0.25, 3.0]
                .iter()
                .map(|&v| if v > 0.0 { v } else { v * slope as f32 })
                .collect();
            let expected_grad: Vec<f32> = [-2.0f32, -0.5, 0.25, 3.0]
                .iter()
                .map(|&v| if v > 0.0 { 1.0 } else { slope as f32 })
                .collect();

            let input = x.copy().set_requires_grad(true);
            let y = leaky_relu(&input, slope);
            assert_eq!(Vec::<f32>::try_from(&y).unwrap(), expected, "slope {slope}");
            let grad = Tensor::run_backward(&[y.sum(Kind::Float)], &[&input], false, false);
            assert_eq!(Vec::<f32>::try_from(&grad[0]).unwrap(), expected_grad);

            // In place on a non-leaf (as after a conv), backward from the output.
            let input = x.copy().set_requires_grad(true);
            let mut y = &input * 1.0;
            leaky_relu_(&mut y, slope);
            assert_eq!(
                Vec::<f32>::try_from(&y).unwrap(),
                expected,
                "in place, slope {slope}"
            );
            let grad = Tensor::run_backward(&[y.sum(Kind::Float)], &[&input], false, false);
            assert_eq!(Vec::<f32>::try_from(&grad[0]).unwrap(), expected_grad);
        }
    }
}
