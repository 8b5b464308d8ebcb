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
  [[nodiscard]] bool tf32() const { return options_.tf32 && !options_.deterministic; }
  void synchronize() const;
  // The shared cuDNN workspace (convolutions; compute stream only): grows, never shrinks,
  // to the largest size asked for (growing frees the old buffer after the device is idle).
  void reserve_workspace(std::size_t bytes) { workspace_.reserve(bytes); }
  [[nodiscard]] void* workspace() const { return workspace_.get(); }
  [[nodiscard]] std::size_t workspace_bytes() const { return workspace_.bytes(); }

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
};

}  // namespace crackseg::cuda
