// The decisions of a device communicator's failure and shutdown paths, free of CUDA and NCCL
// so that a host test runs them in CI (tests/unit/test_comm_teardown.cpp). NcclCommunicator
// (kernels/cuda/nccl_comm.cpp) calls exactly these with NCCL/CUDA queries as callbacks.
//
// The rules (issue 14 item 3: a stuck or failed NCCL must end the job, never hang it):
//   - poll_until_done: a wait on background work (ncclInProgress, an event) has a deadline;
//     a timeout, an error reported by the status query, or the query itself throwing calls
//     `abort` exactly once and BEFORE the throw, so nothing that runs while the exception
//     unwinds can wait on the stuck operation;
//   - abort_on_throw: the same for an enqueue that fails outright;
//   - run_teardown (the owner's destructor): after an abort nothing more (no destroy, which
//     would flush the stuck operation, no stream synchronisation); while an exception is
//     unwinding: abort, no sync; only a clean exit finalises, destroys and synchronises, and
//     a finalisation that fails falls back to one abort.
#pragma once
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "src/dist/communicator.hpp"

namespace crackseg::dist {

enum class PollState { done, in_progress, error };

// One answer of a status query. `error`: what to throw once the communicator is aborted (an
// Error naming the operation when empty). A query may also just throw: the same rule applies.
struct PollStatus {
  PollState state = PollState::in_progress;
  std::exception_ptr error;
};

// Time source of a poll: monotonic seconds, and the pause between two queries. steady() is
// the real one; the host test passes a fake clock that advances on pause().
struct PollClock {
  std::function<double()> now_s;
  std::function<void()> pause;
  [[nodiscard]] static PollClock steady(std::chrono::microseconds pause_for) {
    return {[] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); },
            [pause_for] { std::this_thread::sleep_for(pause_for); }};
  }
};

// Runs `f`; if it throws, calls `abort` (never throws) and rethrows.
template <class F, class A>
void abort_on_throw(F&& f, A&& abort) {
  try {
    std::forward<F>(f)();
  } catch (...) {
    abort();
    throw;
  }
}

// Queries `status` until it answers done. Throws after calling `abort` once: the query's error
// (or its exception), or CollectiveTimeout naming `what` once more than timeout_s seconds
// passed (timeout_s <= 0: no deadline).
inline void poll_until_done(const std::function<PollStatus()>& status, const std::function<void()>& abort,
                            double timeout_s, const std::string& what, const PollClock& clock) {
  const double t0 = clock.now_s();
  for (;;) {
    PollStatus s;
    abort_on_throw([&] { s = status(); }, abort);
    if (s.state == PollState::done) return;
    if (s.state == PollState::error) {
      abort();
      if (s.error) std::rethrow_exception(s.error);
      throw Error(what + " failed (" + where_am_i() + ")");
    }
    if (const double waited = clock.now_s() - t0; timeout_s > 0 && waited > timeout_s) {
      abort();
      char secs[96];
      std::snprintf(secs, sizeof(secs), "%g s (waited %.3g s; ", timeout_s, waited);
      throw CollectiveTimeout(what + " did not complete within dist.timeout_s = " + secs + where_am_i() +
                              "): another rank is dead, stuck or skipped this collective; the communicator was "
                              "aborted and the job must end (crackseg calls MPI_Abort)");
    }
    clock.pause();
  }
}

// Whether an exception is propagating through the destructor of the object holding this
// probe (compared with the count when that object was built, so an object built inside a
// catch block is not taken as unwinding).
class UnwindProbe {
 public:
  UnwindProbe() : at_construction_(std::uncaught_exceptions()) {}
  [[nodiscard]] bool unwinding() const { return std::uncaught_exceptions() > at_construction_; }

 private:
  int at_construction_;
};

enum class TeardownPath {
  none,              // already aborted: nothing more may touch the communicator or its stream
  abort,             // unwinding: cancel, never wait
  finalize_destroy,  // clean exit: flush, destroy, then synchronise the stream
};

[[nodiscard]] inline TeardownPath teardown_path(bool aborted, bool unwinding) {
  if (aborted) return TeardownPath::none;
  return unwinding ? TeardownPath::abort : TeardownPath::finalize_destroy;
}

// The steps of a communicator owner's destructor. `aborted` says whether the communicator has
// been aborted by now (finalize may abort it itself through its own poll_until_done).
struct TeardownSteps {
  std::function<bool()> aborted;
  std::function<void()> finalize;  // may throw
  std::function<void()> destroy;   // only after a finalize that returned
  std::function<void()> abort;     // never throws
  std::function<void()> sync;      // the owner's stream; only when nothing was aborted
};

// Never throws. Returns the path taken.
inline TeardownPath run_teardown(bool unwinding, const TeardownSteps& s) noexcept {
  const TeardownPath path = teardown_path(s.aborted(), unwinding);
  if (path == TeardownPath::abort) {
    s.abort();
  } else if (path == TeardownPath::finalize_destroy) {
    try {
      s.finalize();
      s.destroy();
    } catch (...) {
      if (!s.aborted()) s.abort();
    }
    // After an abort the stream may hold cancelled work: synchronising could wait on it.
    if (!s.aborted()) {
      try {
        s.sync();
      } catch (...) {  // nothing to do with an error here
      }
    }
  }
  return path;
}

}  // namespace crackseg::dist
