// oneDNN error check: CRACKSEG_DNNL_CALL(expr) evaluates expr and rethrows dnnl::error as
// crackseg::Error naming the call, file:line, rank/host, dnnl's message and status code.
#pragma once
#include <dnnl.hpp>

#include <string>

#include "src/core/error.hpp"

namespace crackseg::detail {
[[noreturn]] inline void rethrow_dnnl(const dnnl::error& e, const char* call,
                                      const std::source_location& loc = std::source_location::current()) {
  throw_library_error("oneDNN", call, std::string(e.what()) + " (dnnl_status_t " + std::to_string(int(e.status)) + ")",
                      loc);
}
}  // namespace crackseg::detail

#define CRACKSEG_DNNL_CALL(expr)                                                                  \
  [&]() -> decltype(auto) {                                                                       \
    try {                                                                                         \
      return expr;                                                                                \
    } catch (const dnnl::error& crackseg_dnnl_e) {                                                \
      ::crackseg::detail::rethrow_dnnl(crackseg_dnnl_e, #expr, std::source_location::current()); \
    }                                                                                             \
  }()
