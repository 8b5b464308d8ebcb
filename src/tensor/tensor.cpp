#include "src/tensor/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>

#include <sys/mman.h>
#include <unistd.h>

#include "src/core/error.hpp"

namespace crackseg {

namespace {
std::mutex g_alloc_mutex;
DeviceAllocator g_cuda_alloc;
}  // namespace

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
  }
  return 0;
}
const char* to_string(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }
const char* to_string(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
  }
  return "?";
}
const char* to_string(Format f) {
  switch (f) {
    case Format::plain: return "plain";
    case Format::nchw: return "nchw";
    case Format::nhwc: return "nhwc";
  }
  return "?";
}
std::string to_string(const Dims& d) {
  std::string s = "(";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + ")";
}
int64_t numel(const Dims& d) {
  int64_t n = 1;
  for (auto x : d) n *= x;
  return n;
}

void set_device_allocator(Device d, DeviceAllocator a) {
  if (d != Device::cuda) throw Error("set_device_allocator: only the cuda allocator can be set");
  std::lock_guard lock(g_alloc_mutex);
  g_cuda_alloc = std::move(a);
}

namespace {
// Buffers of 4 MB and more (activations, gradient arena, scratchpad) start on a 2 MB boundary
// and are marked for transparent huge pages: where THP is "madvise" (Debian's default) they
// would otherwise get 4 KB pages, and kernels streaming tens of MB through them miss the TLB
// (U-Net bench case 3-5% faster, peak RSS unchanged; docs/PERFORMANCE.md). Where THP is
// "always" or "never" the advice changes nothing. CRACKSEG_THP=0 turns it off (read per
// allocation, so a test can compare).
constexpr std::size_t kHugePage = std::size_t{2} << 20;
bool wants_huge_pages(std::size_t bytes) {
  if (bytes < 2 * kHugePage) return false;
  const char* v = std::getenv("CRACKSEG_THP");
  return !(v && std::string_view(v) == "0");
}
// CRACKSEG_GUARD_PAGES=1 (debugging aid, docs/DEBUGGING.md): every CPU tensor ends exactly at
// an inaccessible page, so a write past its (64-byte rounded) end faults at the write, in our
// code or in a library's JIT kernel, instead of corrupting the heap for a later free to find.
// CRACKSEG_GUARD_PAGES=w makes the page read-only instead: only writes past the end fault
// (oneDNN 2.6's AMX kernels read whole tiles past some buffers' ends; see the DEBUGGING doc).
int guard_page_mode() {  // 0 off, 1 no access, 2 read-only
  const char* v = std::getenv("CRACKSEG_GUARD_PAGES");
  if (!v) return 0;
  const std::string_view m(v);
  return m == "1" ? 1 : m == "w" ? 2 : 0;
}
std::shared_ptr<void> guarded_alloc(std::size_t bytes, int mode) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t body = (bytes + page - 1) / page * page, total = body + page;
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) throw Error("Tensor::empty: mmap of " + std::to_string(total) + " bytes failed");
  std::byte* guard = static_cast<std::byte*>(base) + body;
  if (mprotect(guard, page, mode == 2 ? PROT_READ : PROT_NONE) != 0) {
    munmap(base, total);
    throw Error("Tensor::empty: mprotect of the guard page failed");
  }
  return std::shared_ptr<void>(guard - bytes, [base, total](void*) { munmap(base, total); });
}
}  // namespace

Tensor Tensor::empty(Dims dims, DType dtype, Format format, Device device) {
  for (auto x : dims)
    if (x < 0) throw Error("Tensor::empty: negative dimension in " + to_string(dims));
  if (format != Format::plain && dims.size() != 4)
    throw Error(std::string("Tensor::empty: format ") + to_string(format) + " needs 4 dims, got " +
                to_string(dims));
  Tensor t;
  t.dims_ = std::move(dims);
  t.dtype_ = dtype;
  t.format_ = format;
  t.device_ = device;
  const std::size_t bytes = std::max<std::size_t>(64, (t.nbytes() + 63) / 64 * 64);
  if (const int guard = device == Device::cpu ? guard_page_mode() : 0) {
    t.storage_ = guarded_alloc(bytes, guard);
  } else if (device == Device::cpu) {
    const bool huge = wants_huge_pages(bytes);
    void* p = huge ? std::aligned_alloc(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage)
                   : std::aligned_alloc(64, bytes);
    if (p && huge) (void)madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure is harmless
    if (!p) throw Error("Tensor::empty: out of memory allocating " + std::to_string(bytes) + " bytes");
    t.storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    DeviceAllocator a;
    {
      std::lock_guard lock(g_alloc_mutex);
      a = g_cuda_alloc;
    }
    if (!a.allocate)
      throw Error("Tensor::empty: no CUDA allocator (built without CUDA or no device initialised)");
    void* p = a.allocate(bytes);
    t.storage_ = std::shared_ptr<void>(p, [dealloc = a.deallocate](void* q) { dealloc(q); });
  }
  return t;
}

Tensor Tensor::zeros(Dims dims, DType dtype, Format format, Device device) {
  Tensor t = empty(std::move(dims), dtype, format, device);
  t.zero_();
  return t;
}

Tensor Tensor::wrap(void* data, Dims dims, DType dtype, Format format, Device device) {
  Tensor t;
  t.storage_ = std::shared_ptr<void>(data, [](void*) {});
  t.dims_ = std::move(dims);
  t.dtype_ = dtype;
  t.format_ = format;
  t.device_ = device;
  return t;
}

int64_t Tensor::n() const { expect_rank4(); return dims_[0]; }
int64_t Tensor::c() const { expect_rank4(); return dims_[1]; }
int64_t Tensor::h() const { expect_rank4(); return dims_[2]; }
int64_t Tensor::w() const { expect_rank4(); return dims_[3]; }

void Tensor::expect_rank4() const {
  if (dims_.size() != 4) throw Error("Tensor: expected a 4-D (N, C, H, W) tensor, got " + to_string(dims_));
}

void Tensor::check_type(DType t) const {
  if (t != dtype_)
    throw Error(std::string("Tensor: accessed as ") + to_string(t) + " but holds " + to_string(dtype_) +
                " " + to_string(dims_));
}

Tensor Tensor::reshape(Dims dims, Format format) const {
  if (crackseg::numel(dims) != numel())
    throw Error("Tensor::reshape: " + to_string(dims_) + " has " + std::to_string(numel()) +
                " elements, cannot become " + to_string(dims));
  Tensor t = *this;
  t.dims_ = std::move(dims);
  t.format_ = format;
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  if (dims_.empty() || begin < 0 || end > dims_[0] || begin > end)
    throw Error("Tensor::slice0: [" + std::to_string(begin) + ", " + std::to_string(end) +
                ") out of range for " + to_string(dims_));
  Tensor t = *this;
  const int64_t per = dims_[0] ? numel() / dims_[0] : 0;
  t.offset_bytes_ += static_cast<std::size_t>(begin * per) * dtype_size(dtype_);
  t.dims_[0] = end - begin;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(dims_, dtype_, format_, device_);
  if (device_ != Device::cpu) throw Error("Tensor::clone: only CPU tensors can be cloned here");
  std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::to_format(Format f) const {
  if (f == format_) return clone();
  Tensor t = empty(dims_, dtype_, f, device_);
  t.copy_from(*this);
  return t;
}

void Tensor::zero_() {
  if (device_ != Device::cpu) throw Error("Tensor::zero_: CPU only; use the device backend");
  std::memset(raw(), 0, nbytes());
}

void Tensor::fill_(float v) {
  auto s = span<float>();
  std::fill(s.begin(), s.end(), v);
}

void Tensor::copy_from(const Tensor& src) {
  if (src.dims_ != dims_ || src.dtype_ != dtype_)
    throw Error("Tensor::copy_from: destination " + to_string(dims_) + " " + to_string(dtype_) +
                ", source " + to_string(src.dims_) + " " + to_string(src.dtype_));
  if (device_ != Device::cpu || src.device_ != Device::cpu)
    throw Error("Tensor::copy_from: CPU only; use the device backend");
  const bool same = src.format_ == format_ || dims_.size() != 4 ||
                    (dims_[1] == 1) || (dims_[2] * dims_[3] == 1);
  if (same) {
    std::memcpy(raw(), src.raw(), nbytes());
    return;
  }
  const std::size_t es = dtype_size(dtype_);
  auto* d = static_cast<std::byte*>(raw());
  auto* s = static_cast<const std::byte*>(src.raw());
  for (int64_t n = 0; n < dims_[0]; ++n)
    for (int64_t c = 0; c < dims_[1]; ++c)
      for (int64_t h = 0; h < dims_[2]; ++h)
        for (int64_t w = 0; w < dims_[3]; ++w)
          std::memcpy(d + offset(n, c, h, w) * es, s + src.offset(n, c, h, w) * es, es);
}

void Tensor::expect_dims(const Dims& expected, const char* what) const {
  if (dims_ != expected)
    throw Error(std::string(what) + ": expected " + to_string(expected) + ", got " + to_string(dims_));
}

}  // namespace crackseg
