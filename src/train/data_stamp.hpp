// Validation and the final test evaluation reopen data.path. A dataset replaced or rewritten
// while a run trains would then be evaluated (and its checksum recorded) although training
// read the old one. The stamp (device, inode, size, modification time) taken when training
// opened the file is compared before every evaluation; a change is refused, naming the file.
#pragma once
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "src/core/error.hpp"

namespace crackseg::train {

struct DataStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  long long mtime_ns = 0;
  bool operator==(const DataStamp&) const = default;
};

[[nodiscard]] inline DataStamp data_stamp(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0)
    throw InputError("dataset file " + p.string() + " is gone: " + std::strerror(errno) +
                     " (it was opened when training started)");
  return {st.st_dev, st.st_ino, st.st_size,
          static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec};
}

// Throws InputError when `p` is no longer the file stamped `then` (`what`: "validation").
inline void check_same_data(const std::filesystem::path& p, const DataStamp& then, const std::string& what) {
  if (data_stamp(p) == then) return;
  throw InputError("dataset file " + p.string() + " was replaced or modified during the run; refusing to run " +
                   what + " on a different file than training read (restore it, or start a new run; rerunning "
                   "the command resumes from the last checkpoint)");
}

}  // namespace crackseg::train
