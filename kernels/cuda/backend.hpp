// The CUDA backend: cuDNN / cuBLAS / .cu layers on one GPU per rank, nhwc activations.
//
// Registration (crackseg_nn cannot depend on this library, so the executable does it):
//   #ifdef CRACKSEG_HAVE_CUDA
//   crackseg::cuda::register_cuda_backend();   // make_backend("cuda") works from here on
//   #endif
#pragma once
#include <memory>

#include "kernels/cuda/device.hpp"
#include "src/graph/layer.hpp"

namespace crackseg::cuda {

// Throws a clear error when there is no device. `options` are applied to the process's
// context (TF32, deterministic algorithms, workspace limit).
[[nodiscard]] std::unique_ptr<Backend> make_cuda_backend(CudaOptions options = {});
// register_backend("cuda", ...) with default options.
void register_cuda_backend();

}  // namespace crackseg::cuda
