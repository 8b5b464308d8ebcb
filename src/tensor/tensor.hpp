// Tensor: a shaped, typed view of memory on one device. Shapes are logical: a 4-D tensor is
// always (N, C, H, W) whatever its memory format; `format` says how it is laid out:
//   nchw  -> offset = ((n*C + c)*H + h)*W + w
//   nhwc  -> offset = ((n*H + h)*W + w)*C + c        (channels-last; CPU activations use it)
//   plain -> row-major over dims (any rank; 2-D (N, F) activations, weights, masks)
// Storage is shared (copying a Tensor copies the handle, not the data); clone() copies data.
// CPU memory is 64-byte aligned. CUDA memory comes from an allocator the CUDA backend
// registers (set_device_allocator), so this header has no CUDA dependency.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace crackseg {

enum class Device : uint8_t { cpu, cuda };
enum class DType : uint8_t { f32, u8, i32, f64, bf16 };  // bf16: raw 16-bit patterns (bf16 activations)
enum class Format : uint8_t { plain, nchw, nhwc };

[[nodiscard]] std::size_t dtype_size(DType t);
[[nodiscard]] const char* to_string(Device d);
[[nodiscard]] const char* to_string(DType t);
[[nodiscard]] const char* to_string(Format f);

using Dims = std::vector<int64_t>;
[[nodiscard]] std::string to_string(const Dims& d);  // "(4, 3, 256, 256)"
[[nodiscard]] int64_t numel(const Dims& d);

template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }

struct DeviceAllocator {
  std::function<void*(std::size_t)> allocate;
  std::function<void(void*)> deallocate;
};
void set_device_allocator(Device d, DeviceAllocator a);

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised storage. 4-D tensors default to nchw; pass Format::nhwc for channels-last.
  [[nodiscard]] static Tensor empty(Dims dims, DType dtype = DType::f32, Format format = Format::plain,
                                    Device device = Device::cpu);
  [[nodiscard]] static Tensor zeros(Dims dims, DType dtype = DType::f32, Format format = Format::plain,
                                    Device device = Device::cpu);
  // Wraps memory it does not own (e.g. a oneDNN or HDF5 buffer); caller keeps it alive.
  [[nodiscard]] static Tensor wrap(void* data, Dims dims, DType dtype, Format format,
                                   Device device = Device::cpu);

  [[nodiscard]] bool defined() const { return static_cast<bool>(storage_); }
  [[nodiscard]] const Dims& dims() const { return dims_; }
  [[nodiscard]] int64_t dim(int i) const { return dims_.at(static_cast<std::size_t>(i)); }
  [[nodiscard]] int rank() const { return static_cast<int>(dims_.size()); }
  [[nodiscard]] int64_t numel() const { return crackseg::numel(dims_); }
  [[nodiscard]] std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  [[nodiscard]] DType dtype() const { return dtype_; }
  [[nodiscard]] Format format() const { return format_; }
  [[nodiscard]] Device device() const { return device_; }
  // 4-D accessors (throw unless rank()==4).
  [[nodiscard]] int64_t n() const;
  [[nodiscard]] int64_t c() const;
  [[nodiscard]] int64_t h() const;
  [[nodiscard]] int64_t w() const;

  template <typename T>
  [[nodiscard]] T* data() {
    check_type(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <typename T>
  [[nodiscard]] const T* data() const {
    check_type(dtype_of<T>());
    return static_cast<const T*>(raw());
  }
  template <typename T>
  [[nodiscard]] std::span<T> span() { return {data<T>(), static_cast<std::size_t>(numel())}; }
  template <typename T>
  [[nodiscard]] std::span<const T> span() const { return {data<T>(), static_cast<std::size_t>(numel())}; }
  [[nodiscard]] void* raw() { return static_cast<std::byte*>(storage_.get()) + offset_bytes_; }
  [[nodiscard]] const void* raw() const { return static_cast<const std::byte*>(storage_.get()) + offset_bytes_; }

  // Offset in elements of (n, c, h, w) for a 4-D tensor in its format.
  [[nodiscard]] int64_t offset(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return format_ == Format::nhwc ? ((n * dims_[2] + h) * dims_[3] + w) * dims_[1] + c
                                   : ((n * dims_[1] + c) * dims_[2] + h) * dims_[3] + w;
  }
  [[nodiscard]] float& at(int64_t n, int64_t c, int64_t h, int64_t w) {
    return data<float>()[offset(n, c, h, w)];
  }
  [[nodiscard]] float at(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return data<float>()[offset(n, c, h, w)];
  }

  // Same storage, new logical dims (element count must match; format becomes `format`).
  [[nodiscard]] Tensor reshape(Dims dims, Format format = Format::plain) const;
  // Items [begin, end) along dim 0, sharing storage (contiguous for every format).
  [[nodiscard]] Tensor slice0(int64_t begin, int64_t end) const;
  // Deep copy; to_format converts between nchw and nhwc (CPU only).
  [[nodiscard]] Tensor clone() const;
  [[nodiscard]] Tensor to_format(Format f) const;
  void zero_();
  void fill_(float v);
  void copy_from(const Tensor& src);  // same dims, dtype; converts format on CPU

  // Throws with both shapes when dims differ: "conv2d input: expected (4, 3, 32, 32), got ...".
  void expect_dims(const Dims& expected, const char* what) const;

 private:
  void check_type(DType t) const;
  void expect_rank4() const;
  std::shared_ptr<void> storage_;
  std::size_t offset_bytes_ = 0;
  Dims dims_;
  DType dtype_ = DType::f32;
  Format format_ = Format::plain;
  Device device_ = Device::cpu;
};

}  // namespace crackseg
