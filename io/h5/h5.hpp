// HDF5 ids as move-only RAII owners, and CRACKSEG_H5_CHECK, which throws crackseg::Error with
// the failing call, file:line, rank/host and the HDF5 error stack (H5Ewalk2) as text.
//
//   h5::File f{CRACKSEG_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
//   h5::Dataset d{CRACKSEG_H5_CHECK(H5Dopen2(f.get(), "/images", H5P_DEFAULT))};
//
// Thread safety: Debian's parallel HDF5 1.10 is built without --enable-threadsafe, so two
// threads must never be inside the library at once (the prefetch thread reads while the main
// thread may write a checkpoint). CRACKSEG_H5_CHECK and every owner's close take one
// process-wide recursive lock (h5::lock()), which is what the thread-safe build does per API
// call. Multi-call sequences that share ids across threads still need their own h5::lock();
// the simple rule is: one set of ids (one File) per thread, every call through the macro.
#pragma once
#include <hdf5.h>

#include <concepts>
#include <mutex>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>

#include "src/core/error.hpp"

namespace crackseg::h5 {

// The process-wide HDF5 lock (recursive: an owner closed inside a locked region is fine).
[[nodiscard]] std::recursive_mutex& mutex();
[[nodiscard]] inline std::unique_lock<std::recursive_mutex> lock() {
  return std::unique_lock<std::recursive_mutex>(mutex());
}

// The current thread's HDF5 error stack as text, innermost call first, one line per entry
// ("H5Dread(): can't read data [Dataset: Read failed] at H5Dio.c:199").
[[nodiscard]] std::string error_stack();

// Silence HDF5's automatic stack printing to stderr (idempotent; the first h5::lock() does it).
void quiet_errors();

namespace detail {
// HDF5 signals failure by a negative hid_t / herr_t / htri_t / ssize_t.
template <std::signed_integral T>
T check(T rc, const char* call, const std::source_location& loc = std::source_location::current()) {
  if (rc >= 0) return rc;
  throw_library_error("HDF5", call, error_stack(), loc);
}
// Enums such as H5T_class_t use -1 (H5T_NO_CLASS, H5S_NO_CLASS...) for failure.
template <typename T>
  requires std::is_enum_v<T>
T check(T rc, const char* call, const std::source_location& loc = std::source_location::current()) {
  if (static_cast<std::underlying_type_t<T>>(rc) >= 0) return rc;
  throw_library_error("HDF5", call, error_stack(), loc);
}
}  // namespace detail

// Move-only owner of one HDF5 id, closed by `Close` (errors on close are ignored: destructors
// never throw, and a close only fails on an already broken id).
template <herr_t (*Close)(hid_t)>
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  ~Id() { reset(); }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  Id(Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }

  [[nodiscard]] hid_t get() const { return id_; }
  [[nodiscard]] bool valid() const { return id_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Give up ownership (the caller closes).
  [[nodiscard]] hid_t release() { return std::exchange(id_, H5I_INVALID_HID); }
  void reset(hid_t id = H5I_INVALID_HID) noexcept {
    if (id_ >= 0) {
      auto guard = lock();
      (void)Close(id_);
    }
    id_ = id;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using File = Id<H5Fclose>;
using Dataset = Id<H5Dclose>;
using Dataspace = Id<H5Sclose>;
using Datatype = Id<H5Tclose>;
using PropList = Id<H5Pclose>;
using Attribute = Id<H5Aclose>;
using Group = Id<H5Gclose>;

}  // namespace crackseg::h5

// Evaluates `call` under the HDF5 lock and throws crackseg::Error carrying the HDF5 error
// stack when it returns a negative value; otherwise yields the call's value.
#define CRACKSEG_H5_CHECK(call)                                              \
  ([&]() {                                                                   \
    auto crackseg_h5_guard_ = ::crackseg::h5::lock();                        \
    return ::crackseg::h5::detail::check((call), #call);                     \
  }())
