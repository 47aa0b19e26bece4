// Leaky ReLU with any negative slope, through ATen's own kernel and autograd formula.
//
// tch's generated `leaky_relu` drops the `negative_slope` argument (PyTorch's default 0.01 is
// all it can run), and PReLU with a constant weight, the fallback, is about five times slower
// forward plus backward because its backward also reduces a weight gradient nobody uses.
#include <ATen/core/Tensor.h>
#include <ATen/ops/leaky_relu.h>

#include <cstring>
#include <exception>

extern "C" {

// `*out` receives a new tensor (`at::leaky_relu`), or, when `in_place` is set, a new handle
// to `input` after `at::leaky_relu_`. Returns null, or a malloc'ed error message.
char *ablate_leaky_relu(const at::Tensor *input, double slope, int in_place, at::Tensor **out) {
  try {
    if (in_place) {
      at::Tensor self = *input;
      *out = new at::Tensor(at::leaky_relu_(self, slope));
    } else {
      *out = new at::Tensor(at::leaky_relu(*input, slope));
    }
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}
}
