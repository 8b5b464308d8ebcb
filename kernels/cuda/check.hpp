// CUDA-side error checks and RAII owners. One check macro per library, all through
// crackseg::throw_library_error so a failure names the call, file:line, rank and host and
// carries the library's own message. Every C handle lives in a move-only Owner whose
// destructor never throws (destroy statuses are ignored: there is nothing useful to do
// with them while unwinding).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <atomic>
#include <cstddef>
#include <source_location>
#include <string>
#include <utility>

#include "src/core/error.hpp"

namespace crackseg::cuda::detail {

inline void cuda_check(cudaError_t rc, const char* call,
                       const std::source_location& loc = std::source_location::current()) {
  if (rc == cudaSuccess) return;
  (void)cudaGetLastError();  // clear the sticky-free error so the next call starts clean
  throw_library_error("CUDA", call, std::string(cudaGetErrorName(rc)) + ": " + cudaGetErrorString(rc), loc);
}
inline void cudnn_check(cudnnStatus_t rc, const char* call,
                        const std::source_location& loc = std::source_location::current()) {
  if (rc == CUDNN_STATUS_SUCCESS) return;
  std::string msg = cudnnGetErrorString(rc);
  char last[512] = {};
  cudnnGetLastErrorString(last, sizeof(last));  // cuDNN 9 keeps a per-thread detail message
  if (last[0] != '\0') msg += std::string(" (") + last + ")";
  throw_library_error("cuDNN", call, msg, loc);
}
inline void cublas_check(cublasStatus_t rc, const char* call,
                         const std::source_location& loc = std::source_location::current()) {
  if (rc == CUBLAS_STATUS_SUCCESS) return;
  throw_library_error("cuBLAS", call, std::string(cublasGetStatusName(rc)) + ": " + cublasGetStatusString(rc), loc);
}
inline void nccl_check(ncclResult_t rc, const char* call,
                       const std::source_location& loc = std::source_location::current()) {
  if (rc == ncclSuccess || rc == ncclInProgress) return;
  std::string msg = ncclGetErrorString(rc);
  if (const char* last = ncclGetLastError(nullptr); last != nullptr && last[0] != '\0')
    msg += std::string(" (") + last + ")";
  throw_library_error("NCCL", call, msg, loc);
}

}  // namespace crackseg::cuda::detail

#define CRACKSEG_CUDA_CHECK(call) ::crackseg::cuda::detail::cuda_check((call), #call)
#define CRACKSEG_CUDNN_CHECK(call) ::crackseg::cuda::detail::cudnn_check((call), #call)
#define CRACKSEG_CUBLAS_CHECK(call) ::crackseg::cuda::detail::cublas_check((call), #call)
#define CRACKSEG_NCCL_CHECK(call) ::crackseg::cuda::detail::nccl_check((call), #call)
// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define CRACKSEG_CUDA_CHECK_LAUNCH(what) ::crackseg::cuda::detail::cuda_check(cudaGetLastError(), what)

namespace crackseg::cuda {

// Move-only owner of a C handle `T` released by `Destroy`. A default (null) handle owns
// nothing.
template <typename T, void (*Destroy)(T) noexcept>
class Owner {
 public:
  Owner() = default;
  explicit Owner(T h) : h_(h) {}
  ~Owner() { reset(); }
  Owner(const Owner&) = delete;
  Owner& operator=(const Owner&) = delete;
  Owner(Owner&& o) noexcept : h_(std::exchange(o.h_, T{})) {}
  Owner& operator=(Owner&& o) noexcept {
    if (this != &o) reset(std::exchange(o.h_, T{}));
    return *this;
  }
  [[nodiscard]] T get() const { return h_; }
  [[nodiscard]] explicit operator bool() const { return h_ != T{}; }
  [[nodiscard]] T release() { return std::exchange(h_, T{}); }
  void reset(T h = T{}) noexcept {
    if (h_ != T{}) Destroy(h_);
    h_ = h;
  }

 private:
  T h_{};
};

namespace detail {
inline void destroy_stream(cudaStream_t s) noexcept { (void)cudaStreamDestroy(s); }
inline void destroy_event(cudaEvent_t e) noexcept { (void)cudaEventDestroy(e); }
inline void destroy_cudnn(cudnnHandle_t h) noexcept { (void)cudnnDestroy(h); }
inline void destroy_tensor_desc(cudnnTensorDescriptor_t d) noexcept { (void)cudnnDestroyTensorDescriptor(d); }
inline void destroy_filter_desc(cudnnFilterDescriptor_t d) noexcept { (void)cudnnDestroyFilterDescriptor(d); }
inline void destroy_conv_desc(cudnnConvolutionDescriptor_t d) noexcept {
  (void)cudnnDestroyConvolutionDescriptor(d);
}
inline void destroy_pool_desc(cudnnPoolingDescriptor_t d) noexcept { (void)cudnnDestroyPoolingDescriptor(d); }
inline void destroy_act_desc(cudnnActivationDescriptor_t d) noexcept {
  (void)cudnnDestroyActivationDescriptor(d);
}
inline void destroy_cublas(cublasHandle_t h) noexcept { (void)cublasDestroy(h); }
// Plain owner for tests and tools; NcclCommunicator manages its own communicator (abort on
// failure or unwinding, finalise + destroy otherwise: nccl_comm.hpp).
inline void destroy_nccl(ncclComm_t c) noexcept { (void)ncclCommDestroy(c); }
}  // namespace detail

using Stream = Owner<cudaStream_t, &detail::destroy_stream>;
using Event = Owner<cudaEvent_t, &detail::destroy_event>;
using CudnnHandle = Owner<cudnnHandle_t, &detail::destroy_cudnn>;
using TensorDesc = Owner<cudnnTensorDescriptor_t, &detail::destroy_tensor_desc>;
using FilterDesc = Owner<cudnnFilterDescriptor_t, &detail::destroy_filter_desc>;
using ConvDesc = Owner<cudnnConvolutionDescriptor_t, &detail::destroy_conv_desc>;
using PoolDesc = Owner<cudnnPoolingDescriptor_t, &detail::destroy_pool_desc>;
using ActivationDesc = Owner<cudnnActivationDescriptor_t, &detail::destroy_act_desc>;
using CublasHandle = Owner<cublasHandle_t, &detail::destroy_cublas>;
using NcclComm = Owner<ncclComm_t, &detail::destroy_nccl>;

// Factories: the owner exists only if creation succeeded.
[[nodiscard]] inline Stream make_stream() {
  cudaStream_t s{};
  CRACKSEG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}
// Timing off: these events only order streams, and timing-free events are cheaper.
[[nodiscard]] inline Event make_event(bool timing = false) {
  cudaEvent_t e{};
  CRACKSEG_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  return Event(e);
}
[[nodiscard]] inline CudnnHandle make_cudnn() {
  cudnnHandle_t h{};
  CRACKSEG_CUDNN_CHECK(cudnnCreate(&h));
  return CudnnHandle(h);
}
[[nodiscard]] inline TensorDesc make_tensor_desc() {
  cudnnTensorDescriptor_t d{};
  CRACKSEG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  return TensorDesc(d);
}
[[nodiscard]] inline FilterDesc make_filter_desc() {
  cudnnFilterDescriptor_t d{};
  CRACKSEG_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d));
  return FilterDesc(d);
}
[[nodiscard]] inline ConvDesc make_conv_desc() {
  cudnnConvolutionDescriptor_t d{};
  CRACKSEG_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d));
  return ConvDesc(d);
}
[[nodiscard]] inline PoolDesc make_pool_desc() {
  cudnnPoolingDescriptor_t d{};
  CRACKSEG_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&d));
  return PoolDesc(d);
}
[[nodiscard]] inline ActivationDesc make_activation_desc() {
  cudnnActivationDescriptor_t d{};
  CRACKSEG_CUDNN_CHECK(cudnnCreateActivationDescriptor(&d));
  return ActivationDesc(d);
}
[[nodiscard]] inline CublasHandle make_cublas() {
  cublasHandle_t h{};
  CRACKSEG_CUBLAS_CHECK(cublasCreate(&h));
  return CublasHandle(h);
}

// Frees device memory that kernels enqueued earlier may still read or write: the device is
// synchronised first, explicitly (cudaFree would too, implicitly; with stream-ordered or
// pooled allocators it does not, and the order should not rest on that).
// After an NCCL abort (nccl_comm.hpp) the job is ending and device work may never finish:
// frees are then skipped (cudaFree would synchronise too), leaving the memory to the driver.
inline std::atomic<bool>& device_work_abandoned() {
  static std::atomic<bool> flag{false};
  return flag;
}
inline void free_after_device_work(void* p) noexcept {
  if (!p || device_work_abandoned().load()) return;
  (void)cudaDeviceSynchronize();
  (void)cudaFree(p);
}

// Move-only device allocation of `bytes` bytes (cudaMalloc'd, so 256-byte aligned).
class DevicePtr {
 public:
  DevicePtr() = default;
  explicit DevicePtr(std::size_t bytes) : bytes_(bytes) {
    if (bytes > 0) CRACKSEG_CUDA_CHECK(cudaMalloc(&p_, bytes));
  }
  ~DevicePtr() { free_after_device_work(p_); }
  DevicePtr(const DevicePtr&) = delete;
  DevicePtr& operator=(const DevicePtr&) = delete;
  DevicePtr(DevicePtr&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DevicePtr& operator=(DevicePtr&& o) noexcept {
    if (this != &o) {
      free_after_device_work(p_);
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  [[nodiscard]] void* get() const { return p_; }
  template <typename T>
  [[nodiscard]] T* as() const { return static_cast<T*>(p_); }
  [[nodiscard]] std::size_t bytes() const { return bytes_; }
  // Grows (never shrinks) to at least `bytes`; contents are not kept.
  void reserve(std::size_t bytes) {
    if (bytes > bytes_) *this = DevicePtr(bytes);
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace crackseg::cuda
