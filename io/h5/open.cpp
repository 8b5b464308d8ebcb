#include "io/h5/open.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <regex>

namespace crackseg::h5 {

namespace fs = std::filesystem;

std::string locking_env() {
  const char* v = std::getenv("HDF5_USE_FILE_LOCKING");
  return v ? v : "";
}

namespace {

PropList fapl(bool lock, bool ignore_when_disabled) {
  PropList p{CRACKSEG_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS))};
  CRACKSEG_H5_CHECK(H5Pset_file_locking(p.get(), lock ? 1 : 0, ignore_when_disabled ? 1 : 0));
  return p;
}

// "errno = 37, error message = 'No locks available'" from HDF5's sec2 driver.
std::string lock_errno_text(const std::string& stack) {
  static const std::regex re(R"(errno = (\d+), error message = '([^']*)')");
  std::smatch m;
  if (std::regex_search(stack, m, re)) return "errno " + m[1].str() + ", " + m[2].str();
  return "";
}

}  // namespace

std::string open_failure_help(const fs::path& path, const std::string& hdf5_stack, bool for_write) {
  std::string help;
  // What the OS says about the file itself (missing folder, permissions, stale NFS handle...).
  const fs::path probe = for_write ? (path.has_parent_path() ? path.parent_path() : fs::path(".")) : path;
  const int fd = for_write ? ::open(probe.c_str(), O_RDONLY | O_DIRECTORY) : ::open(probe.c_str(), O_RDONLY);
  if (fd < 0) {
    help += "; the OS cannot open " + probe.string() + " either: " + std::strerror(errno);
  } else {
    ::close(fd);
  }
  const bool lock_failed = hdf5_stack.find("lock") != std::string::npos;
  const std::string env = locking_env();
  if (lock_failed) {
    const std::string err = lock_errno_text(hdf5_stack);
    help += "; HDF5 could not lock the file" + (err.empty() ? std::string() : " (" + err + ")") + ". ";
    if (!env.empty())
      help += "HDF5_USE_FILE_LOCKING=" + env +
              " in the environment turns locking on (crackseg opens read-only files without a lock): "
              "unset it or set HDF5_USE_FILE_LOCKING=FALSE";
    else
      help += "This file system does not support the locks HDF5 takes (Lustre without flock, NFS without "
              "lockd, some GPFS/DVS mounts) or another process holds one: set HDF5_USE_FILE_LOCKING=FALSE";
  } else {
    help += "; if " + path.string() +
            " is on a shared file system (Lustre, GPFS, NFS), try HDF5_USE_FILE_LOCKING=FALSE" +
            (env.empty() ? std::string() : " (it is '" + env + "' now)") +
            "; a truncated copy also fails here: compare its size and `crackseg info` with the original";
  }
  return help;
}

File open_read_only(const fs::path& path, std::string_view what) {
  const std::string role(what);
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(role + " file " + path.string() + " does not exist");
  if (!fs::is_regular_file(path, ec)) throw InputError(role + " " + path.string() + " is not a regular file");
  auto guard = lock();
  const PropList access = fapl(false, true);
  const htri_t is = H5Fis_hdf5(path.c_str());
  if (is == 0) throw InputError(role + " " + path.string() + " is not an HDF5 file");
  const hid_t id = is > 0 ? H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.get()) : hid_t{-1};
  if (id < 0) {
    const std::string stack = error_stack();
    throw Error("cannot open " + role + " " + path.string() + " read-only: " + stack +
                open_failure_help(path, stack, false));
  }
  return File{id};
}

File create_truncate(const fs::path& path, std::string_view what) {
  auto guard = lock();
  const PropList access = fapl(true, true);
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get());
  if (id < 0) {
    const std::string stack = error_stack();
    throw Error("cannot create " + std::string(what) + " " + path.string() + ": " + stack +
                open_failure_help(path, stack, true));
  }
  return File{id};
}

}  // namespace crackseg::h5
