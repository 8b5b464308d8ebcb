// Opening and creating HDF5 files the way shared cluster file systems need.
//
// HDF5 1.10 takes a flock() on every open by default. Lustre mounted without flock, NFS
// without lockd, some GPFS/DVS mounts and read-only media refuse or break that lock, and
// H5Fopen fails with "unable to lock file, errno = 37/38/524/30" (also errno 11 when another
// process holds an exclusive lock, e.g. a writer that died on NFS). crackseg never writes a
// file in place (every write goes to a temporary name that is renamed), so a reader gains
// nothing from the lock:
//   - read-only opens (datasets, checkpoints) disable locking (H5Pset_file_locking(0, 1),
//     HDF5 >= 1.10.7);
//   - creates lock "best effort": lock where the file system supports it, carry on where it
//     reports locks as unsupported;
//   - HDF5_USE_FILE_LOCKING in the environment wins over both, as HDF5 documents (TRUE/1:
//     always lock, FALSE/0: never, BEST_EFFORT), so a site policy still applies.
// When an open still fails, the error names the file, the OS error text and what to try.
// Open crackseg files only through these: HDF5 1.10.8 refuses a second open of a file that is
// already open in the process with other locking flags ("file locking flag values don't
// match"), so one H5Fopen with H5P_DEFAULT next to a DatasetFile of the same file fails.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

#include "io/h5/h5.hpp"

namespace crackseg::h5 {

// Opens `path` read-only without file locking (unless HDF5_USE_FILE_LOCKING says otherwise).
// `what` names the file's role in messages ("dataset", "checkpoint"). Throws InputError when
// the file is missing or not HDF5, Error otherwise; both carry the advice of open_failure_help.
[[nodiscard]] File open_read_only(const std::filesystem::path& path, std::string_view what);

// Creates (truncates) `path` for writing, with best-effort locking.
[[nodiscard]] File create_truncate(const std::filesystem::path& path, std::string_view what);

// The value of HDF5_USE_FILE_LOCKING, or "" when unset.
[[nodiscard]] std::string locking_env();

// The explanation appended to a failed open: the OS's view of the file (open(2) errno text),
// and, when the HDF5 error stack shows a lock failure, the lock's errno and the environment
// variable to set. Exposed for tests.
[[nodiscard]] std::string open_failure_help(const std::filesystem::path& path, const std::string& hdf5_stack,
                                            bool for_write);

}  // namespace crackseg::h5
