// Device discovery, free of CUDA headers so `crackseg info --devices` and test skipping can
// ask "is there a GPU?" without pulling the toolkit into their includes. Nothing here
// throws when there is no driver or no device: the answer is simply "none".
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace crackseg::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;  // compute capability
  std::size_t memory_bytes = 0;
  int multiprocessors = 0;
};

// Number of usable CUDA devices; 0 without a driver, without a device, or when the runtime
// reports any error. Never throws.
[[nodiscard]] int cuda_device_count() noexcept;
// One entry per device (empty when cuda_device_count() == 0).
[[nodiscard]] std::vector<DeviceInfo> cuda_devices();
// The device's UUID as 32 hex digits (the same for one physical GPU whatever
// CUDA_VISIBLE_DEVICES numbers it), or "" when the runtime cannot say. Never throws.
[[nodiscard]] std::string cuda_device_uuid(int device) noexcept;
// Lines for `crackseg info --devices`: runtime/driver/cuDNN/NCCL versions and one line per
// GPU, or a line saying there is none (and why, when the runtime says).
[[nodiscard]] std::string describe_cuda_devices();

// This process's local rank on its node: src/core/node_rank.hpp's process_local_rank()
// (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), recorded by Runtime after MPI_Init; launcher
// environment variables only before MPI). One rank per GPU: device = local rank % count.
[[nodiscard]] int local_rank_from_env();

// Numerics switches. `tf32` lets cuDNN and cuBLAS use TF32 tensor cores for fp32 data
// (10-bit mantissa products, fp32 accumulation); `bf16` runs convolutions on bf16 operands
// with fp32 accumulation (kernels/cuda/precision.hpp; it takes precedence over tf32 for the
// convolutions, and cuBLAS then stays fp32); `deterministic` (the `bitwise` mode) keeps only
// algorithms that give the same bits run to run. TF32 and bf16 are always off when
// deterministic (train.precision refuses both with bitwise: cuda_precision).
struct CudaOptions {
  bool tf32 = false;
  bool bf16 = false;
  bool deterministic = true;
  std::size_t conv_workspace_limit = std::size_t{1} << 30;  // bytes per convolution
};

}  // namespace crackseg::cuda
