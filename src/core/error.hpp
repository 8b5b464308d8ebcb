// One error type and one generic check helper for every C library crackseg calls. Each
// library gets a thin macro (CRACKSEG_MPI_CHECK, CRACKSEG_H5_CHECK, CRACKSEG_DNNL_CALL,
// CRACKSEG_CUDA_CHECK...) that names the failing call, file:line, rank and host and carries
// the library's own message. Library code throws; only main() turns errors into exit codes.
#pragma once
#include <source_location>
#include <stdexcept>
#include <string>
#include <string_view>

namespace crackseg {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input (config key, file, value): the message names the thing at fault.
class InputError : public Error {
 public:
  using Error::Error;
};

// "rank R on HOST" for messages; works before and after MPI_Init.
[[nodiscard]] std::string where_am_i();

// Builds "<lib> call `<call>` failed at file:line (rank R on HOST): <message>".
[[nodiscard]] std::string format_library_error(std::string_view library, std::string_view call,
                                               std::string_view message,
                                               const std::source_location& loc);

[[noreturn]] void throw_library_error(std::string_view library, std::string_view call,
                                      std::string_view message,
                                      const std::source_location& loc = std::source_location::current());

}  // namespace crackseg

#define CRACKSEG_CHECK(cond, msg)                                                     \
  do {                                                                                \
    if (!(cond)) ::crackseg::throw_library_error("crackseg", #cond, (msg));           \
  } while (0)
