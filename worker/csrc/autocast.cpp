// The CUDA autocast dtype, which tch cannot set (`tch::autocast` only switches autocast on,
// and CUDA's default dtype is float16), and whether a GPU computes in bfloat16.
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/DeviceGuard.h>

#include <cstring>
#include <exception>

extern "C" {

// Sets this thread's CUDA autocast dtype: 1 float16, 2 bfloat16 (thread-local in ATen).
char *ablate_autocast_set_cuda_dtype(int dtype) {
  try {
    at::autocast::set_autocast_dtype(at::kCUDA, dtype == 2 ? at::kBFloat16 : at::kHalf);
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}

// Enters CUDA autocast on this thread in `dtype` (1 float16, 2 bfloat16): what
// `tch::autocast` does, through ATen's per-device calls (tch's use the deprecated
// device-less ones, and libtorch warns on every call). `*was_enabled` receives the state to
// give back to `ablate_autocast_exit`.
char *ablate_autocast_enter(int dtype, int *was_enabled) {
  try {
    *was_enabled = at::autocast::is_autocast_enabled(at::kCUDA) ? 1 : 0;
    at::autocast::set_autocast_dtype(at::kCUDA, dtype == 2 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}

// Leaves what `ablate_autocast_enter` entered: the outermost exit drops autocast's cast
// cache, and the enabled state goes back to what it was.
char *ablate_autocast_exit(int was_enabled) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCUDA, was_enabled != 0);
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}

// 1 when CUDA autocast is on in this thread, else 0.
int ablate_autocast_cuda_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA) ? 1 : 0; }

// This thread's CUDA autocast dtype: 1 float16, 2 bfloat16, 0 anything else.
int ablate_autocast_cuda_dtype() {
  switch (at::autocast::get_autocast_dtype(at::kCUDA)) {
  case at::kHalf:
    return 1;
  case at::kBFloat16:
    return 2;
  default:
    return 0;
  }
}

// `*out` = 1 when CUDA device `device_index` computes in bfloat16 natively (compute
// capability 8.0 or newer, what cuDNN's bf16 convolutions need), else 0.
char *ablate_cuda_supports_bf16(int device_index, int *out) {
  try {
    c10::DeviceGuard guard(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
    *out = at::detail::getCUDAHooks().supportsBFloat16ConvolutionWithCuDNNv8() ? 1 : 0;
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}
}
