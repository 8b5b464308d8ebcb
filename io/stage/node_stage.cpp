#include "io/stage/node_stage.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
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

CopyResult copy_verified(const fs::path& source, const fs::path& dest, const StageOptions& opt,
                         std::atomic<uint64_t>& progress, const std::atomic<bool>& abandoned) {
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
    if ((opt.stop_requested && opt.stop_requested()) || abandoned.load()) return false;
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
    progress.fetch_add(1);
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
    progress.fetch_add(1);
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

// The node leader's work (folder, copy, check) on a worker thread that counts its progress.
// The caller gives up when the count stands still for options.stall_s: a read, write or mkdir
// that never returns (a stuck NFS source, a frozen node-local disk) would otherwise hold every
// rank of the job in the broadcast that waits for the leader. A given-up worker is detached;
// if its call ever returns it sees `abandoned`, stops and removes its folder (the caller never
// touches a folder on a stuck file system: that would block it too).
struct LeaderTask {
  std::atomic<uint64_t> progress{0};
  std::atomic<bool> done{false}, abandoned{false};
  CopyResult result;
};

CopyResult lead_copy(const fs::path& source, const StageOptions& options, const fs::path& folder, bool& folder_ours) {
  auto task = std::make_shared<LeaderTask>();
  std::thread worker([task, source, options, folder] {
    CopyResult r;
    try {
      if (!fs::is_regular_file(source)) throw InputError("dataset file " + source.string() + " does not exist");
      std::error_code ec;
      fs::create_directories(folder, ec);
      if (ec)
        throw Error("staging: cannot create " + folder.string() + ": " + ec.message() +
                    " (set data.stage_dir to a writable node-local folder)");
      task->progress.fetch_add(1);
      r = copy_verified(source, folder / source.filename(), options, task->progress, task->abandoned);
    } catch (const std::exception& e) {
      r.status = kFailed;
      r.message = e.what();
    }
    if (task->abandoned.load()) {
      std::error_code ec;
      fs::remove_all(folder, ec);
    }
    task->result = std::move(r);
    task->done.store(true, std::memory_order_release);
  });
  uint64_t seen = task->progress.load();
  auto since = std::chrono::steady_clock::now();
  while (!task->done.load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (const uint64_t p = task->progress.load(); p != seen) {
      seen = p;
      since = std::chrono::steady_clock::now();
    } else if (options.stall_s > 0 && seconds_since(since) > options.stall_s) {
      task->abandoned.store(true);
      worker.detach();
      folder_ours = false;
      CopyResult r;
      r.status = kFailed;
      char secs[32];
      std::snprintf(secs, sizeof secs, "%.3g", options.stall_s);
      r.message = "staging: no progress for " + std::string(secs) + " s (dist.timeout_s) staging " + source.string() +
                  " into " + folder.string() +
                  ": is a file system stuck? The copy is abandoned; set data.stage = \"none\" to read the shared "
                  "copy, or data.stage_dir to another node-local folder";
      return r;
    }
  }
  worker.join();
  folder_ours = true;
  return task->result;
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
    const fs::path base = stage_base_dir(options.dir);
    const char* job = std::getenv("SLURM_JOB_ID");
    const fs::path folder = base / ("crackseg-stage-" + std::string(job && *job ? job : "nojob") + "-" + node_name() +
                                    "-" + std::to_string(::getpid()));
    bool ours = false;
    local = lead_copy(source, options, folder, ours);
    if (ours) folder_ = folder;  // an abandoned copy's folder is its worker's to remove
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
