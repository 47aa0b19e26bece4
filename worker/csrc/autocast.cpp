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
