#include "kernels/cuda/device.hpp"

#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <cstdlib>
#include <string>

#include "src/core/node_rank.hpp"

namespace crackseg::cuda {

int cuda_device_count() noexcept {
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: not an error for the caller
    return 0;
  }
  return n;
}

std::vector<DeviceInfo> cuda_devices() {
  std::vector<DeviceInfo> out;
  const int n = cuda_device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    out.push_back({i, p.name, p.major, p.minor, p.totalGlobalMem, p.multiProcessorCount});
  }
  return out;
}

std::string cuda_device_uuid(int device) noexcept {
  try {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
      (void)cudaGetLastError();
      return "";
    }
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (char b : p.uuid.bytes) {
      const auto u = static_cast<unsigned char>(b);
      s += hex[u >> 4];
      s += hex[u & 15];
    }
    return s;
  } catch (...) {
    return "";
  }
}

std::string describe_cuda_devices() {
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  int runtime = 0, driver = 0, nccl = 0;
  (void)cudaRuntimeGetVersion(&runtime);
  (void)cudaDriverGetVersion(&driver);
  (void)ncclGetVersion(&nccl);
  const std::size_t cudnn = cudnnGetVersion();
  std::string s = "CUDA runtime " + version(runtime) + ", driver " + (driver ? version(driver) : "none") +
                  ", cuDNN " + std::to_string(cudnn / 10000) + "." + std::to_string(cudnn % 10000 / 100) +
                  "." + std::to_string(cudnn % 100) + ", NCCL " + std::to_string(nccl / 10000) + "." +
                  std::to_string(nccl % 10000 / 100) + "." + std::to_string(nccl % 100) + "\n";
  int n = 0;
  const cudaError_t rc = cudaGetDeviceCount(&n);
  if (rc != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    s += std::string("no CUDA devices") + (rc != cudaSuccess ? std::string(" (") + cudaGetErrorString(rc) + ")" : "") + "\n";
    return s;
  }
  for (const auto& d : cuda_devices())
    s += "cuda:" + std::to_string(d.index) + "  " + d.name + "  sm_" + std::to_string(d.cc_major) +
         std::to_string(d.cc_minor) + "  " + std::to_string(d.memory_bytes >> 20) + " MiB  " +
         std::to_string(d.multiprocessors) + " SMs\n";
  return s;
}

int local_rank_from_env() { return process_local_rank(); }

}  // namespace crackseg::cuda
