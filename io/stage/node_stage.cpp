#include "io/stage/node_stage.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "src/core/error.hpp"
#include "src/core/mpi_check.hpp"

namespace crackseg::io {

namespace fs = std::filesystem;

namespace {

std::mutex& redirect_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, fs::path>& redirects() {
  static std::map<std::string, fs::path> m;
  return m;
}
std::string redirect_key(const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p), ec);
  return (ec ? fs::absolute(p).lexically_normal() : c).string();
}

// Move-only owner of a communicator made by split.
class Comm {
 public:
  explicit Comm(MPI_Comm c) : c_(c) {}
  ~Comm() {
    if (c_ != MPI_COMM_NULL) MPI_Comm_free(&c_);
  }
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  [[nodiscard]] MPI_Comm get() const { return c_; }

 private:
  MPI_Comm c_;
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull, kFnvPrime = 0x100000001b3ull;
uint64_t fnv1a(uint64_t h, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
  return h;
}
std::string hex64(uint64_t h) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(h));
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string node_name() {
  if (const char* n = std::getenv("SLURMD_NODENAME"); n && *n) return n;
  char h[256] = {};
  ::gethostname(h, sizeof h - 1);
  return h[0] ? h : "node";
}

enum Status : int { kOk = 0, kStopped = 1, kFailed = 2 };

struct CopyResult {
  int status = kOk;
  std::string message;
  uint64_t bytes = 0, checksum = 0;
  double copy_s = 0, verify_s = 0;
};

// Reads `fd` to the end in `buf`-sized chunks; `chunk` sees every chunk; false when stopped.
bool read_all(int fd, const fs::path& what, std::vector<unsigned char>& buf,
              const std::function<bool(const unsigned char*, std::size_t)>& chunk) {
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("read error on " + what.string() + ": " + std::strerror(errno));
    }
    if (n == 0) return true;
    if (!chunk(buf.data(), static_cast<std::size_t>(n))) return false;
  }
}

CopyResult copy_verified(const fs::path& source, const fs::path& dest, const StageOptions& opt) {
  CopyResult r;
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t size = fs::file_size(source);
  const auto space = fs::space(dest.parent_path());
  if (space.available < size)
    throw Error("staging " + source.string() + " to " + dest.parent_path().string() + ": needs " +
                std::to_string(size) + " bytes, " + std::to_string(space.available) +
                " free; set data.stage_dir to a larger node-local folder or data.stage = \"none\"");
  Fd in{::open(source.c_str(), O_RDONLY)};
  if (in.fd < 0) throw Error("staging: cannot open " + source.string() + ": " + std::strerror(errno));
  const fs::path part = dest.string() + ".part";
  Fd out{::open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600)};
  if (out.fd < 0) throw Error("staging: cannot create " + part.string() + ": " + std::strerror(errno));
  std::vector<unsigned char> buf(8u << 20);
  uint64_t h = kFnvOffset;
  const bool done = read_all(in.fd, source, buf, [&](const unsigned char* p, std::size_t n) {
    if (opt.stop_requested && opt.stop_requested()) return false;
    h = fnv1a(h, p, n);
    for (std::size_t off = 0; off < n;) {
      const ssize_t w = ::write(out.fd, p + off, n - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw Error("staging: write to " + part.string() + " failed after " + std::to_string(r.bytes + off) +
                    " of " + std::to_string(size) + " bytes: " + std::strerror(errno));
      }
      off += static_cast<std::size_t>(w);
    }
    r.bytes += n;
    return true;
  });
  if (!done) {
    r.status = kStopped;
    return r;
  }
  if (::close(std::exchange(out.fd, -1)) != 0)
    throw Error("staging: closing " + part.string() + " failed: " + std::strerror(errno));
  // Verify what landed on the node-local disk, not what we meant to write.
  const auto tv = std::chrono::steady_clock::now();
  Fd back{::open(part.c_str(), O_RDONLY)};
  if (back.fd < 0) throw Error("staging: cannot reopen " + part.string() + ": " + std::strerror(errno));
  uint64_t hv = kFnvOffset;
  (void)read_all(back.fd, part, buf, [&](const unsigned char* p, std::size_t n) {
    hv = fnv1a(hv, p, n);
    return true;
  });
  if (hv != h)
    throw Error("staging: the copy " + part.string() + " has checksum " + hex64(hv) + " but " + source.string() +
                " read as " + hex64(h) + " (node-local disk or memory fault?)");
  fs::rename(part, dest);
  r.checksum = h;
  r.verify_s = seconds_since(tv);
  r.copy_s = seconds_since(t0);
  return r;
}

}  // namespace

nlohmann::json StageRecord::to_json() const {
  return {{"mode", "node"},       {"source", source.string()}, {"path", path.string()},
          {"bytes", bytes},       {"copy_s", copy_s},          {"verify_s", verify_s},
          {"checksum", checksum}, {"nodes", nodes},            {"ranks_on_node", ranks_on_node}};
}

fs::path stage_base_dir(const fs::path& configured) {
  if (!configured.empty()) return configured;
  for (const char* var : {"SLURM_TMPDIR", "TMPDIR"})
    if (const char* v = std::getenv(var); v && *v) return v;
  return "/tmp";
}

fs::path redirected_dataset(const fs::path& path) {
  std::lock_guard g(redirect_mutex());
  if (redirects().empty()) return path;
  auto it = redirects().find(redirect_key(path));
  return it == redirects().end() ? path : it->second;
}

NodeStage::NodeStage(const fs::path& source, const StageOptions& options, MPI_Comm world) {
  record_.source = source;
  MPI_Comm node_c = MPI_COMM_NULL;
  CRACKSEG_MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node_c));
  Comm node(node_c);
  int node_rank = 0;
  CRACKSEG_MPI_CHECK(MPI_Comm_rank(node.get(), &node_rank));
  CRACKSEG_MPI_CHECK(MPI_Comm_size(node.get(), &record_.ranks_on_node));
  leader_ = node_rank == 0;

  CopyResult local;
  if (leader_) {
    try {
      if (!fs::is_regular_file(source)) throw InputError("dataset file " + source.string() + " does not exist");
      const fs::path base = stage_base_dir(options.dir);
      const char* job = std::getenv("SLURM_JOB_ID");
      folder_ = base / ("crackseg-stage-" + std::string(job && *job ? job : "nojob") + "-" + node_name() + "-" +
                        std::to_string(::getpid()));
      std::error_code ec;
      fs::create_directories(folder_, ec);
      if (ec)
        throw Error("staging: cannot create " + folder_.string() + ": " + ec.message() +
                    " (set data.stage_dir to a writable node-local folder)");
      local = copy_verified(source, folder_ / source.filename(), options);
    } catch (const std::exception& e) {
      local.status = kFailed;
      local.message = e.what();
    }
  }
  // The node's ranks learn the leader's outcome (and wait for it here).
  double nums[2] = {local.copy_s, local.verify_s};
  unsigned long long ints[3] = {static_cast<unsigned long long>(local.status), local.bytes, local.checksum};
  CRACKSEG_MPI_CHECK(MPI_Bcast(ints, 3, MPI_UNSIGNED_LONG_LONG, 0, node.get()));
  CRACKSEG_MPI_CHECK(MPI_Bcast(nums, 2, MPI_DOUBLE, 0, node.get()));
  // Every rank learns the worst outcome of any node, the number of nodes and the slowest copy.
  int worst = static_cast<int>(ints[0]);
  CRACKSEG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, world));
  int nodes = leader_ ? 1 : 0;
  CRACKSEG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &nodes, 1, MPI_INT, MPI_SUM, world));
  CRACKSEG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, nums, 2, MPI_DOUBLE, MPI_MAX, world));
  record_.nodes = nodes;
  record_.copy_s = nums[0];
  record_.verify_s = nums[1];
  record_.bytes = ints[1];
  record_.checksum = hex64(ints[2]);

  // The leader broadcasts its folder name so every rank of the node opens the same copy.
  std::string folder = folder_.string();
  int len = static_cast<int>(folder.size());
  CRACKSEG_MPI_CHECK(MPI_Bcast(&len, 1, MPI_INT, 0, node.get()));
  folder.resize(static_cast<std::size_t>(len));
  CRACKSEG_MPI_CHECK(MPI_Bcast(folder.data(), len, MPI_CHAR, 0, node.get()));
  record_.path = fs::path(folder) / source.filename();

  if (worst == kFailed) {
    remove_now();
    if (local.status == kFailed) throw Error(local.message);
    throw Error("data staging of " + source.string() + " failed on another node (its error is above); "
                "set data.stage = \"none\" to read the shared copy");
  }
  if (worst == kStopped) {
    stopped_ = true;
    remove_now();
    return;
  }
  std::lock_guard g(redirect_mutex());
  redirects()[redirect_key(source)] = record_.path;
  redirected_ = true;
}

void NodeStage::remove_now() noexcept {
  try {
    if (redirected_) {
      std::lock_guard g(redirect_mutex());
      redirects().erase(redirect_key(record_.source));
      redirected_ = false;
    }
    if (leader_ && !folder_.empty()) {
      std::error_code ec;
      fs::remove_all(folder_, ec);  // open readers keep their inode until they close it
      folder_.clear();
    }
  } catch (...) {
  }
}

NodeStage::~NodeStage() { remove_now(); }

}  // namespace crackseg::io
