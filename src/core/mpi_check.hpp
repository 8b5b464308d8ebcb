// MPI error checks with MPI_Error_string. Communicators are set to MPI_ERRORS_RETURN by
// Runtime so failures reach these checks instead of aborting the job.
#pragma once
#include <mpi.h>

#include <string>

#include "src/core/error.hpp"

namespace crackseg::detail {
inline void mpi_check(int rc, const char* call,
                      const std::source_location& loc = std::source_location::current()) {
  if (rc == MPI_SUCCESS) return;
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  throw_library_error("MPI", call, std::string(buf, static_cast<size_t>(len)), loc);
}
}  // namespace crackseg::detail

#define CRACKSEG_MPI_CHECK(call) ::crackseg::detail::mpi_check((call), #call)
