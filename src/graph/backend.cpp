#include "src/graph/backend.hpp"

#include <map>
#include <mutex>

#include "src/core/error.hpp"

namespace crackseg {

// Built-in backends (kernels/reference/backend.cpp, kernels/cpu/backend.cpp).
std::unique_ptr<Backend> make_reference_backend(Format activation_format);
std::unique_ptr<Backend> make_onednn_backend();

namespace {
std::mutex g_mutex;
std::map<std::string, BackendFactory>& registry() {
  static std::map<std::string, BackendFactory> r{
      {"reference", [] { return make_reference_backend(Format::nchw); }},
      {"reference-nhwc", [] { return make_reference_backend(Format::nhwc); }},
      {"onednn", [] { return make_onednn_backend(); }},
  };
  return r;
}
}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
  std::lock_guard lock(g_mutex);
  registry()[name] = std::move(factory);
}

std::vector<std::string> backend_names() {
  std::lock_guard lock(g_mutex);
  std::vector<std::string> out;
  for (const auto& [k, v] : registry()) out.push_back(k);
  return out;
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  BackendFactory f;
  {
    std::lock_guard lock(g_mutex);
    auto it = registry().find(name);
    if (it != registry().end()) f = it->second;
  }
  if (!f) {
    std::string names;
    for (const auto& n : backend_names()) names += (names.empty() ? "" : ", ") + n;
    throw InputError("unknown backend '" + name + "'; available: " + names +
                     (name == "cuda" ? " (cuda: build with -DCRACKSEG_CUDA=ON and register it)" : ""));
  }
  return f();
}

NnCounters& nn_counters() {
  static NnCounters c;
  return c;
}

Tensor alloc_buffer(Dims dims, DType dtype, Format format, Device device) {
  Tensor t = Tensor::empty(std::move(dims), dtype, format, device);
  nn_counters().buffers_allocated.fetch_add(1, std::memory_order_relaxed);
  nn_counters().bytes_allocated.fetch_add(t.nbytes(), std::memory_order_relaxed);
  return t;
}

}  // namespace crackseg
