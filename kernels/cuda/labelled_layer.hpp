// NVTX ranges around every CUDA layer's plan/forward/backward, named as the code is
// ("conv2d enc1.conv1 backward"), so an Nsight Systems timeline reads like the model. The
// backend wraps each layer it makes; without a profiler attached a push/pop costs a few
// nanoseconds (NVTX3 is header-only and no-ops until a tool injects itself).
#pragma once
#include <memory>
#include <string>

#include "src/graph/layer.hpp"

namespace crackseg::cuda {

[[nodiscard]] std::unique_ptr<Layer> labelled(std::unique_ptr<Layer> inner, const std::string& name);

// RAII NVTX range for other regions (loss, optimizer step, allreduce wait).
class NvtxRange {
 public:
  explicit NvtxRange(const char* label);
  ~NvtxRange();
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace crackseg::cuda
