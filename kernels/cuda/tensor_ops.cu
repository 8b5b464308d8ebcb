#include "kernels/cuda/tensor_ops.hpp"

#include <array>
#include <cstring>
#include <string>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/launch.cuh"

namespace crackseg::cuda {

namespace {

__global__ void k_nchw_to_nhwc(const float* src, float* dst, int64_t n, int64_t c, int64_t s, float beta) {
  const int64_t total = n * c * s;
  CRACKSEG_GRID_STRIDE(i, total) {  // i indexes dst (N, S, C): writes coalesce
    const int64_t ci = i % c, si = (i / c) % s, ni = i / (c * s);
    const float v = src[(ni * c + ci) * s + si];
    dst[i] = beta == 0.0f ? v : v + beta * dst[i];
  }
}
__global__ void k_nhwc_to_nchw(const float* src, float* dst, int64_t n, int64_t c, int64_t s, float beta) {
  const int64_t total = n * c * s;
  CRACKSEG_GRID_STRIDE(i, total) {  // i indexes dst (N, C, S)
    const int64_t si = i % s, ci = (i / s) % c, ni = i / (c * s);
    const float v = src[(ni * s + si) * c + ci];
    dst[i] = beta == 0.0f ? v : v + beta * dst[i];
  }
}
__global__ void k_add_into(float* dst, const float* src, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) dst[i] += src[i];
}
__global__ void k_fill(float* dst, float v, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) dst[i] = v;
}

void expect_device(const Tensor& t, const char* what) {
  if (t.device() != Device::cuda)
    throw Error(std::string(what) + ": expected a cuda tensor, got a cpu tensor " + to_string(t.dims()));
}
void expect_same(const Tensor& a, const Tensor& b, const char* what) {
  if (a.dims() != b.dims() || a.dtype() != b.dtype())
    throw Error(std::string(what) + ": source " + to_string(a.dims()) + " " + to_string(a.dtype()) +
                ", destination " + to_string(b.dims()) + " " + to_string(b.dtype()));
}

}  // namespace

void nchw_to_nhwc(const float* src, float* dst, int64_t n, int64_t c, int64_t s, float beta) {
  k_nchw_to_nhwc<<<grid_for(n * c * s), kThreads, 0, Context::get().stream()>>>(src, dst, n, c, s, beta);
  CRACKSEG_CUDA_CHECK_LAUNCH("nchw_to_nhwc");
}
void nhwc_to_nchw(const float* src, float* dst, int64_t n, int64_t c, int64_t s, float beta) {
  k_nhwc_to_nchw<<<grid_for(n * c * s), kThreads, 0, Context::get().stream()>>>(src, dst, n, c, s, beta);
  CRACKSEG_CUDA_CHECK_LAUNCH("nhwc_to_nchw");
}
void add_into(float* dst, const float* src, int64_t count) {
  if (count == 0) return;
  k_add_into<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(dst, src, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("add_into");
}
void fill_f32(float* dst, float value, int64_t count) {
  if (count == 0) return;
  k_fill<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(dst, value, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("fill_f32");
}

bool same_layout(const Tensor& a, const Tensor& b) {
  if (a.rank() != 4 || a.c() == 1 || a.h() * a.w() == 1) return true;
  return (a.format() == Format::nhwc) == (b.format() == Format::nhwc);
}

void copy(const Tensor& src, Tensor& dst) {
  expect_same(src, dst, "cuda::copy");
  if (!same_layout(src, dst))
    throw Error(std::string("cuda::copy: formats differ (") + to_string(src.format()) + " -> " +
                to_string(dst.format()) + "); use convert_format");
  const auto kind = src.device() == Device::cuda
                        ? (dst.device() == Device::cuda ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                        : (dst.device() == Device::cuda ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  auto& ctx = Context::get();
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), kind, ctx.stream()));
  // Host memory here is pageable and may be freed by the caller right after: finish now.
  if (kind != cudaMemcpyDeviceToDevice) ctx.synchronize();
}

namespace {
struct Staging {
  void* p = nullptr;
  std::size_t bytes = 0;
  Event done;  // recorded after the DMA that reads p
};
constexpr int kStaging = 4;  // image + target of two micro-batches in flight
}  // namespace

void upload_async(const Tensor& host, Tensor& dst) {
  expect_same(host, dst, "cuda::upload_async");
  if (host.device() != Device::cpu || dst.device() != Device::cuda)
    throw Error("cuda::upload_async: needs a host source and a cuda destination");
  if (!same_layout(host, dst))
    throw Error(std::string("cuda::upload_async: formats differ (") + to_string(host.format()) + " -> " +
                to_string(dst.format()) + "); use convert_format");
  auto& ctx = Context::get();
  static auto* ring = new std::array<Staging, kStaging>();  // pinned memory lives as long as the process
  static int next = 0;
  Staging& s = (*ring)[static_cast<std::size_t>(next)];
  next = (next + 1) % kStaging;
  const std::size_t n = host.nbytes();
  if (n == 0) return;
  if (s.done) CRACKSEG_CUDA_CHECK(cudaEventSynchronize(s.done.get()));  // its last DMA has read it
  else s.done = make_event();
  if (s.bytes < n) {
    if (s.p) CRACKSEG_CUDA_CHECK(cudaFreeHost(s.p));
    s.p = nullptr;
    s.bytes = 0;
    CRACKSEG_CUDA_CHECK(cudaMallocHost(&s.p, n));
    s.bytes = n;
  }
  std::memcpy(s.p, host.raw(), n);
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), s.p, n, cudaMemcpyHostToDevice, ctx.stream()));
  CRACKSEG_CUDA_CHECK(cudaEventRecord(s.done.get(), ctx.stream()));
}

Tensor to_device(const Tensor& host) {
  (void)Context::get();  // registers the allocator
  Tensor d = Tensor::empty(host.dims(), host.dtype(), host.format(), Device::cuda);
  copy(host, d);
  return d;
}

Tensor to_host(const Tensor& device) {
  Tensor h = Tensor::empty(device.dims(), device.dtype(), device.format(), Device::cpu);
  copy(device, h);
  return h;
}

void zero(Tensor& t) {
  if (t.device() == Device::cpu) {
    t.zero_();
    return;
  }
  CRACKSEG_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), Context::get().stream()));
}

void fill(Tensor& t, float value) {
  expect_device(t, "cuda::fill");
  fill_f32(t.data<float>(), value, t.numel());
}

void accumulate(Tensor& dst, const Tensor& src) {
  expect_device(dst, "cuda::accumulate");
  expect_device(src, "cuda::accumulate");
  expect_same(src, dst, "cuda::accumulate");
  if (!same_layout(src, dst)) throw Error("cuda::accumulate: formats differ for " + to_string(src.dims()));
  add_into(dst.data<float>(), src.data<float>(), src.numel());
}

void convert_format(const Tensor& src, Tensor& dst) {
  expect_device(src, "cuda::convert_format");
  expect_device(dst, "cuda::convert_format");
  expect_same(src, dst, "cuda::convert_format");
  if (same_layout(src, dst)) {
    copy(src, dst);
    return;
  }
  const int64_t n = src.n(), c = src.c(), s = src.h() * src.w();
  if (dst.format() == Format::nhwc)  // src nchw or plain (the same order)
    nchw_to_nhwc(src.data<float>(), dst.data<float>(), n, c, s, 0.0f);
  else
    nhwc_to_nchw(src.data<float>(), dst.data<float>(), n, c, s, 0.0f);
}

}  // namespace crackseg::cuda
