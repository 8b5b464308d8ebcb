#include "src/train/signals.hpp"

#include <pthread.h>

#include <atomic>
#include <csignal>
#include <mutex>

#include "src/core/error.hpp"
#include "src/dist/communicator.hpp"

namespace crackseg {
namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the stop flag must be lock-free to be set in a handler");

extern "C" void on_stop_signal(int sig) { g_signal.store(sig, std::memory_order_relaxed); }

}  // namespace

void install_stop_signal_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // a signal must not fail a read() in HDF5 or MPI with EINTR
    for (int sig : {SIGUSR1, SIGTERM})
      if (sigaction(sig, &sa, nullptr) != 0)
        throw Error("sigaction(" + std::to_string(sig) + ") failed: cannot install the preemption handler");
  });
}

namespace {
sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void block_stop_signals() {
  const sigset_t set = stop_set();
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) throw Error("pthread_sigmask(SIG_BLOCK) failed");
}

void unblock_stop_signals() {
  const sigset_t set = stop_set();
  if (pthread_sigmask(SIG_UNBLOCK, &set, nullptr) != 0) throw Error("pthread_sigmask(SIG_UNBLOCK) failed");
}

bool stop_requested() { return g_signal.load(std::memory_order_relaxed) != 0; }
int stop_signal() { return g_signal.load(std::memory_order_relaxed); }
void clear_stop_request() { g_signal.store(0, std::memory_order_relaxed); }

bool agree_stop(dist::Communicator& comm) {
  return comm.allreduce_value(int64_t{stop_requested() ? 1 : 0}, dist::ReduceOp::max) != 0;
}

}  // namespace crackseg
