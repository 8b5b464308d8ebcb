#include "src/core/file_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "src/core/error.hpp"

namespace crackseg {

namespace {

std::string read_holder(int fd) {
  std::array<char, 512> buf{};
  const ssize_t n = ::pread(fd, buf.data(), buf.size() - 1, 0);
  std::string s = n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s.empty() ? "another process (holder unknown)" : s;
}

}  // namespace

FolderLock::FolderLock(const std::filesystem::path& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InputError("cannot create folder " + dir.string() + ": " + ec.message());
  const auto path = lock_file(dir);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError("cannot open lock file " + path.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const std::string holder = read_holder(fd);
      ::close(fd);
      throw InputError(dir.string() + " is in use by " + holder + " (lock " + path.string() +
                       "); wait for it to finish or stop it, or use another folder");
    }
    ::close(fd);
    if (err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS) {
      std::fprintf(stderr, "%s: warning: %s does not support flock (%s); %s is not protected against a second writer\n",
                   what.c_str(), path.c_str(), std::strerror(err), dir.c_str());
      return;
    }
    throw Error("flock " + path.string() + " failed: " + std::strerror(err));
  }
  fd_ = fd;
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  std::array<char, 32> when{};
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(when.data(), when.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  const std::string me = what + " (pid " + std::to_string(::getpid()) + " on " + host.data() + " since " +
                         when.data() + ")\n";
  // Best effort: the lock itself is the flock, the text only names the holder.
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, me.data(), me.size(), 0);
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace crackseg
