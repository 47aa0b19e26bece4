// Random generators owned by one replica, and the Bernoulli draw dropout makes with one.
//
// `torch::manual_seed` seeds the process-wide CPU generator and every GPU's default
// generator: replicas that are threads of one process (and runs that share an agent) would
// reseed each other. A replica draws its dropout masks from its own generator instead.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cstdint>
#include <cstring>
#include <exception>

extern "C" {

// `*out` receives a new generator seeded with `seed`: a CPU one for `device_index` < 0,
// else one of CUDA device `device_index`. Returns null, or a malloc'ed error message.
char *ablate_generator_new(int device_index, uint64_t seed, at::Generator **out) {
  try {
    at::Generator gen;
    if (device_index < 0) {
      gen = at::detail::createCPUGenerator(seed);
    } else {
      gen = at::detail::getCUDAHooks().getNewGenerator(static_cast<c10::DeviceIndex>(device_index));
      gen.set_current_seed(seed);
    }
    *out = new at::Generator(std::move(gen));
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}

void ablate_generator_free(at::Generator *gen) { delete gen; }

// Fills `self` in place with Bernoulli(p) draws from `gen` (same device).
char *ablate_bernoulli_(const at::Tensor *self, double p, const at::Generator *gen) {
  try {
    at::Tensor t = *self;
    t.bernoulli_(p, *gen);
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}
}
