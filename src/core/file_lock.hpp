// Advisory lock on a folder that one process at a time may write (a run folder `train.out`,
// a sweep folder): flock(2) on DIR/.crackseg.lock, which records the holder's pid and host
// so a refusal can name it. The lock dies with the process (exit, crash, SIGKILL, MPI_Abort),
// so a stale lock file never blocks anyone. File systems without flock (some Lustre mounts)
// give a warning and no lock.
#pragma once
#include <filesystem>
#include <string>

namespace crackseg {

class FolderLock {
 public:
  // Creates `dir` if needed and takes its lock without waiting; throws InputError naming the
  // folder and the holder ("pid 1234 on node7 since ...") when another process holds it.
  // `what` names the holder in the lock file ("crackseg train", "crackseg sweep plan").
  FolderLock(const std::filesystem::path& dir, const std::string& what);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

  [[nodiscard]] bool held() const { return fd_ >= 0; }
  [[nodiscard]] static std::filesystem::path lock_file(const std::filesystem::path& dir) {
    return dir / ".crackseg.lock";
  }

 private:
  int fd_ = -1;
};

}  // namespace crackseg
