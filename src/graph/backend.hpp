// Backend registry and debug counters.
//
// make_backend (declared in layer.hpp) looks names up here. "reference", "reference-nhwc"
// and "onednn" are built in; other backends (the CUDA one, which lives in a library that
// links after crackseg_nn) register a factory before use:
//   crackseg::register_backend("cuda", [] { return std::make_unique<CudnnBackend>(); });
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/graph/layer.hpp"

namespace crackseg {

using BackendFactory = std::function<std::unique_ptr<Backend>()>;
// Adds or replaces the factory for `name`.
void register_backend(const std::string& name, BackendFactory factory);
[[nodiscard]] std::vector<std::string> backend_names();

// Process-wide counters that tests use to prove a steady-state step allocates no buffers and
// creates no primitives. Every buffer the Graph or a layer allocates goes through
// alloc_buffer; every oneDNN primitive is created through one counting helper.
struct NnCounters {
  std::atomic<uint64_t> buffers_allocated{0};
  std::atomic<uint64_t> bytes_allocated{0};
  std::atomic<uint64_t> primitives_created{0};
};
[[nodiscard]] NnCounters& nn_counters();

// Tensor::empty plus counting.
[[nodiscard]] Tensor alloc_buffer(Dims dims, DType dtype = DType::f32, Format format = Format::plain,
                                  Device device = Device::cpu);

}  // namespace crackseg
