#include "kernels/cuda/tensor_ops.hpp"

#include <array>
#include <cstring>
#include <string>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/staging_ring.hpp"

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
// One slot of the staging ring (staging_ring.hpp says when each wait is needed).
struct StagingBuffers {
  void* host = nullptr;  // pinned, lives as long as the process
  DevicePtr device;
  Event dma_done;  // copy stream, after the DMA host -> device
  Event consumed;  // compute stream, after the copy device slot -> destination
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
  // Never destroyed, like the Context: pinned memory and events live as long as the process.
  static auto* ring = new StagingRing(kStaging);
  static auto* buffers = new std::array<StagingBuffers, kStaging>();
  const std::size_t n = host.nbytes();
  const StagingStep step = ring->next(n);
  if (step.slot < 0) return;
  StagingBuffers& b = (*buffers)[static_cast<std::size_t>(step.slot)];
  try {
    if (!b.dma_done) b.dma_done = make_event();
    if (!b.consumed) b.consumed = make_event();
    // The pinned buffer is read by the slot's previous DMA until dma_done.
    if (step.wait_dma) CRACKSEG_CUDA_CHECK(cudaEventSynchronize(b.dma_done.get()));
    if (step.grow_to > 0) {
      if (b.host) CRACKSEG_CUDA_CHECK(cudaFreeHost(b.host));
      b.host = nullptr;
      CRACKSEG_CUDA_CHECK(cudaMallocHost(&b.host, step.grow_to));
      b.device = DevicePtr(step.grow_to);  // the old device buffer is freed after the device is idle
    }
    std::memcpy(b.host, host.raw(), n);
    const cudaStream_t copy_stream = ctx.copy_stream(), compute = ctx.stream();
    // The device slot is read by the slot's previous consumer (compute stream) until consumed.
    if (step.wait_consumed) CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(copy_stream, b.consumed.get(), 0));
    CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(b.device.get(), b.host, n, cudaMemcpyHostToDevice, copy_stream));
    CRACKSEG_CUDA_CHECK(cudaEventRecord(b.dma_done.get(), copy_stream));
    // The consumer: in compute-stream order, after the DMA; `dst` may still be read by earlier
    // compute work, which this copy follows in stream order.
    CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(compute, b.dma_done.get(), 0));
    CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), b.device.get(), n, cudaMemcpyDeviceToDevice, compute));
    CRACKSEG_CUDA_CHECK(cudaEventRecord(b.consumed.get(), compute));
  } catch (...) {
    ring->forget(step.slot);
    throw;
  }
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
