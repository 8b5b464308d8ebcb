#include "src/core/error.hpp"

#include <mpi.h>
#include <unistd.h>

#include <array>

namespace crackseg {

std::string where_am_i() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  int initialized = 0, finalized = 0, rank = -1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::string out = rank >= 0 ? "rank " + std::to_string(rank) : std::string("no MPI");
  return out + " on " + host.data();
}

std::string format_library_error(std::string_view library, std::string_view call,
                                 std::string_view message, const std::source_location& loc) {
  std::string file = loc.file_name();
  if (auto pos = file.rfind("crackseg/"); pos != std::string::npos) file = file.substr(pos + 9);
  std::string out;
  out += library;
  out += " call `";
  out += call;
  out += "` failed at " + file + ":" + std::to_string(loc.line()) + " (" + where_am_i() + ")";
  if (!message.empty()) {
    out += ": ";
    out += message;
  }
  return out;
}

void throw_library_error(std::string_view library, std::string_view call, std::string_view message,
                         const std::source_location& loc) {
  throw Error(format_library_error(library, call, message, loc));
}

}  // namespace crackseg
