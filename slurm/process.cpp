#include "slurm/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "src/core/error.hpp"

namespace crackseg::sweep {
namespace {

// Pipe pair closed on scope exit (both ends, whichever are still open).
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (pipe2(fd, O_CLOEXEC) != 0) throw Error(std::string("pipe2 failed: ") + std::strerror(errno));
  }
  ~Pipe() {
    for (int& f : fd)
      if (f >= 0) close(f);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  void close_end(int i) {
    if (fd[i] >= 0) close(fd[i]);
    fd[i] = -1;
  }
};

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv) {
  if (argv.empty()) throw Error("run_process: empty argv");
  Pipe out, err;
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  // Highest descriptor to close in the child if close_range is missing (kernels before 5.9).
  rlimit nofile{};
  const int max_fd = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
                             nofile.rlim_cur < (1u << 20)
                         ? static_cast<int>(nofile.rlim_cur)
                         : (1 << 16);
  const pid_t pid = fork();
  if (pid < 0) throw Error("fork failed for " + argv[0] + ": " + std::strerror(errno));
  if (pid == 0) {  // child: only async-signal-safe calls until exec
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out.fd[1], 1);
    dup2(err.fd[1], 2);
    // Nothing else of ours reaches the command: descriptors opened without O_CLOEXEC by
    // libraries (OpenMPI's singleton keeps a pipe to its orted that way; ctest hands a test
    // its log) would otherwise live on in every daemon the command starts (munged, slurmd of
    // slurm/local-cluster.sh), and a pipe kept open keeps its reader waiting: orted never saw
    // the test end, ctest never saw orted's output close, the test "timed out" after passing.
    if (close_range(3, ~0u, 0) != 0)
      for (int fd = 3; fd < max_fd; ++fd) close(fd);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  out.close_end(1);
  err.close_end(1);
  ProcessResult r;
  pollfd fds[2] = {{out.fd[0], POLLIN, 0}, {err.fd[0], POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[8192];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) r.exit_code = 128 + WTERMSIG(status);
  return r;
}

std::string run_checked(const std::vector<std::string>& argv) {
  auto r = run_process(argv);
  if (r.exit_code != 0) {
    std::string msg = "`";  // built by appends: GCC 12 misfires -Wrestrict on "lit" + string&&
    msg += shell_join(argv);
    msg += "` exited with " + std::to_string(r.exit_code);
    if (r.exit_code == 127 && r.err.empty()) msg += " (program not found on PATH)";
    if (!r.err.empty()) msg += ": " + r.err;
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    throw Error(msg);
  }
  return r.out;
}

std::string shell_quote(std::string_view text) {
  std::string q = "'";
  for (char c : text) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    const bool plain = !a.empty() && a.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,%@+") == std::string::npos;
    s += plain ? a : shell_quote(a);
  }
  return s;
}

}  // namespace crackseg::sweep
