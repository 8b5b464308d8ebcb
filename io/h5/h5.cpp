#include "io/h5/h5.hpp"

namespace crackseg::h5 {

std::recursive_mutex& mutex() {
  static std::recursive_mutex m;
  // Before anyone can take the lock, switch off HDF5's printing of error stacks to stderr:
  // errors travel in exceptions (with the stack text) instead.
  static const bool quiet = (H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr), true);
  (void)quiet;
  return m;
}

void quiet_errors() { (void)mutex(); }

namespace {
herr_t walk(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  char maj[128] = "", min[128] = "";
  H5Eget_msg(e->maj_num, nullptr, maj, sizeof maj);
  H5Eget_msg(e->min_num, nullptr, min, sizeof min);
  if (n > 0) *out += "\n  ";
  *out += std::string(e->func_name ? e->func_name : "?") + "(): " + (e->desc ? e->desc : "") +
          " [" + maj + ": " + min + "] at " + (e->file_name ? e->file_name : "?") + ":" +
          std::to_string(e->line);
  return 0;
}
}  // namespace

std::string error_stack() {
  auto guard = lock();
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk, &out);
  return out.empty() ? "(no HDF5 error stack)" : out;
}

}  // namespace crackseg::h5
