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
// Lines for `crackseg info --devices`: runtime/driver/cuDNN/NCCL versions and one line per
// GPU, or a line saying there is none (and why, when the runtime says).
[[nodiscard]] std::string describe_cuda_devices();

// This process's local rank on its node: OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID or
// MPI_LOCALRANKID (MPICH/Intel MPI), else 0. One rank per GPU: device = local rank % count.
[[nodiscard]] int local_rank_from_env();

// Numerics switches. `tf32` lets cuDNN and cuBLAS use TF32 tensor cores for fp32 data
// (10-bit mantissa products, fp32 accumulation); `deterministic` (the `bitwise` mode) keeps
// only algorithms that give the same bits run to run. TF32 is always off when deterministic.
struct CudaOptions {
  bool tf32 = false;
  bool deterministic = true;
  std::size_t conv_workspace_limit = std::size_t{1} << 30;  // bytes per convolution
};

}  // namespace crackseg::cuda
