// The per-process CUDA context: one rank drives one GPU (chosen from the local rank) through
// one compute stream (plus a copy stream for batch uploads), one cuDNN handle and one cuBLAS
// handle bound to the compute stream. Layers,
// losses and optimizers all enqueue on this stream, so their order is program order and no
// step needs a host synchronisation except where the host reads a result (loss value,
// metric counts).
#pragma once
#include <mutex>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/precision.hpp"

namespace crackseg::cuda {

class Context {
 public:
  // Created on first use: selects the device (local rank % device count), creates the
  // stream and handles and registers the Tensor allocator for Device::cuda. Throws a clear
  // error when there is no device.
  [[nodiscard]] static Context& get();

  [[nodiscard]] int device() const { return device_; }
  [[nodiscard]] cudaStream_t stream() const { return stream_.get(); }
  // Host -> device batch uploads (upload_async), so their DMA overlaps compute; the compute
  // stream waits on an event per upload before reading the data.
  [[nodiscard]] cudaStream_t copy_stream() const { return copy_stream_.get(); }
  [[nodiscard]] cudnnHandle_t cudnn() const { return cudnn_.get(); }
  [[nodiscard]] cublasHandle_t cublas() const { return cublas_.get(); }
  [[nodiscard]] const CudaOptions& options() const { return options_; }
  // TF32 is forced off when deterministic; sets cuBLAS's math mode to match.
  void set_options(CudaOptions o);
  [[nodiscard]] bool tf32() const { return options_.tf32 && !options_.deterministic && !options_.bf16; }
  // The convolutions' arithmetic: fp32 whenever deterministic, else bf16 over tf32 over fp32.
  [[nodiscard]] ConvPrecision conv_precision() const {
    if (options_.deterministic) return ConvPrecision::fp32;
    if (options_.bf16) return ConvPrecision::bf16;
    return options_.tf32 ? ConvPrecision::tf32 : ConvPrecision::fp32;
  }
  // This device's name and compute capability (for train.precision's checks).
  [[nodiscard]] const DeviceInfo& device_info() const { return info_; }
  void synchronize() const;
  // The shared cuDNN workspace (convolutions; compute stream only): grows, never shrinks,
  // to the largest size asked for (growing frees the old buffer after the device is idle).
  void reserve_workspace(std::size_t bytes) { workspace_.reserve(bytes); }
  [[nodiscard]] void* workspace() const { return workspace_.get(); }
  [[nodiscard]] std::size_t workspace_bytes() const { return workspace_.bytes(); }
  // bf16 convolutions (conv_core.cpp): the shared bf16 buffers of precision.hpp's
  // Bf16ConvBuffers (`in`: a pass's non-kept operand, `out`: a pass's result before
  // widening), grown at plan time to the largest convolution, never per step. `in` remembers
  // which convolution rounded which fp32 source into it, so a layer's weight gradient reuses
  // the output gradient its data gradient rounded just before (same layer, same pointer).
  void reserve_bf16(std::size_t in_bytes, std::size_t out_bytes) {
    bf16_in_.reserve(in_bytes);
    bf16_out_.reserve(out_bytes);
    set_bf16_in_source(nullptr, nullptr);
  }
  [[nodiscard]] uint16_t* bf16_in() const { return bf16_in_.as<uint16_t>(); }
  [[nodiscard]] uint16_t* bf16_out() const { return bf16_out_.as<uint16_t>(); }
  [[nodiscard]] std::size_t bf16_in_bytes() const { return bf16_in_.bytes(); }
  [[nodiscard]] std::size_t bf16_out_bytes() const { return bf16_out_.bytes(); }
  // Convolutions planned in bf16, and those without a bf16 algorithm that stay fp32 (reset by
  // set_options).
  int bf16_layers = 0, bf16_fallbacks = 0;
  void set_bf16_in_source(const void* owner, const float* src) { bf16_in_owner_ = owner, bf16_in_src_ = src; }
  [[nodiscard]] bool bf16_in_holds(const void* owner, const float* src) const {
    return owner != nullptr && bf16_in_owner_ == owner && bf16_in_src_ == src;
  }

  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

 private:
  Context();
  int device_ = 0;
  Stream stream_;
  Stream copy_stream_;
  CudnnHandle cudnn_;
  CublasHandle cublas_;
  CudaOptions options_;
  DevicePtr workspace_;
  DeviceInfo info_;
  DevicePtr bf16_in_, bf16_out_;
  const void* bf16_in_owner_ = nullptr;
  const float* bf16_in_src_ = nullptr;
};

}  // namespace crackseg::cuda
