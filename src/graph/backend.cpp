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

void Backend::set_precision(const std::string& precision) {
  if (precision != "fp32")
    throw InputError("train.precision = \"" + precision + "\": the " + name() +
                     " backend computes in fp32 only (bf16 needs the onednn backend on a CPU with AVX512-BF16 or AMX)");
}

void Backend::set_conv_algorithm(const std::string& algorithm) {
  if (algorithm != "direct")
    throw InputError("train.conv_algorithm = \"" + algorithm + "\": the " + name() +
                     " backend runs direct convolutions only (winograd needs the onednn backend)");
}

// nchw <-> nhwc for f32 images (OpenMP over rows); anything else: Tensor::copy_from.
void Backend::copy(const Tensor& src, Tensor& dst) {
  if (src.device() != Device::cpu || dst.device() != Device::cpu || src.dtype() != DType::f32 ||
      src.format() == dst.format() || src.format() == Format::plain || dst.format() == Format::plain)
    return dst.copy_from(src);
  dst.expect_dims(src.dims(), "Backend::copy destination");
  const int64_t N = src.n(), C = src.c(), H = src.h(), W = src.w();
  const float* s = src.data<float>();
  float* d = dst.data<float>();
  const bool to_nhwc = dst.format() == Format::nhwc;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t w = 0; w < W; ++w) {
          const int64_t chw = ((n * C + c) * H + h) * W + w, hwc = ((n * H + h) * W + w) * C + c;
          if (to_nhwc) d[hwc] = s[chw];
          else d[chw] = s[hwc];
        }
}

void Backend::accumulate(Tensor& dst, const Tensor& src) {
  src.expect_dims(dst.dims(), "Backend::accumulate source");
  if (dst.device() != Device::cpu || src.device() != Device::cpu)
    throw Error("Backend::accumulate: " + name() + " backend got a " + to_string(dst.device()) + " destination and a " +
                to_string(src.device()) + " source; the CPU default needs both on the host");
  float* d = dst.data<float>();
  const float* s = src.data<float>();
  const int64_t n = dst.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) d[i] += s[i];
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
