#include "kernels/cuda/context.hpp"

#include <string>

#include "src/core/node_rank.hpp"
#include "src/tensor/tensor.hpp"

namespace crackseg::cuda {

Context& Context::get() {
  // Deliberately never destroyed: static destructors run after the CUDA runtime may have
  // unloaded, and destroying handles then crashes at exit. The driver frees everything.
  static Context* ctx = new Context();
  return *ctx;
}

Context::Context() {
  const int n = cuda_device_count();
  if (n == 0)
    throw Error("device = \"cuda\" was asked for, but no CUDA device is visible to this process (" +
                where_am_i() + "); `crackseg info --devices` lists what the runtime sees");
  device_ = device_for_local_rank(process_local_rank(), n);
  CRACKSEG_CUDA_CHECK(cudaSetDevice(device_));
  {
    cudaDeviceProp p{};
    CRACKSEG_CUDA_CHECK(cudaGetDeviceProperties(&p, device_));
    info_ = {device_, p.name, p.major, p.minor, p.totalGlobalMem, p.multiProcessorCount};
  }
  stream_ = make_stream();
  copy_stream_ = make_stream();
  cudnn_ = make_cudnn();
  CRACKSEG_CUDNN_CHECK(cudnnSetStream(cudnn_.get(), stream_.get()));
  cublas_ = make_cublas();
  CRACKSEG_CUBLAS_CHECK(cublasSetStream(cublas_.get(), stream_.get()));
  set_options(options_);
  const int dev = device_;
  set_device_allocator(Device::cuda,
                       {[dev](std::size_t bytes) {
                          void* p = nullptr;
                          CRACKSEG_CUDA_CHECK(cudaSetDevice(dev));
                          CRACKSEG_CUDA_CHECK(cudaMalloc(&p, bytes));
                          return p;
                        },
                        [](void* p) { free_after_device_work(p); }});
}

void Context::set_options(CudaOptions o) {
  // bf16 where the GPU cannot: refused here too (train.precision and bench check it first
  // with a message naming the key).
  if (o.bf16 && !o.deterministic)
    (void)cuda_precision("bf16", false, info_.name, info_.cc_major, info_.cc_minor);
  options_ = o;
  bf16_layers = bf16_fallbacks = 0;
  // Pedantic in bitwise mode: it also ignores NVIDIA_TF32_OVERRIDE, so no environment
  // variable can change the arithmetic under a reproducibility promise.
  const cublasMath_t mode = options_.deterministic ? CUBLAS_PEDANTIC_MATH
                            : tf32()               ? CUBLAS_TF32_TENSOR_OP_MATH
                                                   : CUBLAS_DEFAULT_MATH;
  CRACKSEG_CUBLAS_CHECK(cublasSetMathMode(cublas_.get(), mode));
}

void Context::synchronize() const { CRACKSEG_CUDA_CHECK(cudaStreamSynchronize(stream_.get())); }

}  // namespace crackseg::cuda
