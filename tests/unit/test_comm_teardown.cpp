// ctest-link: crackseg_base
// The NCCL communicator's failure and shutdown decisions (issue 14 item 3), without a GPU:
// src/dist/comm_teardown.hpp is what kernels/cuda/nccl_comm.cpp calls, with NCCL/CUDA
// queries as callbacks; here the callbacks are a fake communicator that logs every action
// (its abort is NOT idempotent, so a second call shows) and a fake clock. Fails if: a
// timeout, a status error or a throwing status query throws without aborting first; abort
// runs twice; destroy or a stream sync runs after an abort; destroy or sync runs while an
// exception is unwinding; a clean exit does not finalise, destroy and sync in that order.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/dist/comm_teardown.hpp"

using namespace crackseg;
using dist::PollState;
using dist::PollStatus;
using dist::TeardownPath;

namespace {

struct FakeClock {
  double t = 100.0;  // not 0: the poll must measure from its start
  double step = 1.0;
  int pauses = 0;
  dist::PollClock clock() {
    return {[this] { return t; },
            [this] {
              t += step;
              ++pauses;
            }};
  }
};

struct FakeComm {
  std::vector<std::string> log;
  bool aborted = false;
  bool finalize_fails = false;   // finalize throws without aborting
  bool finalize_hangs = false;   // finalize polls (with this abort) until the deadline
  FakeClock clock;
  void abort() {
    log.push_back("abort");
    aborted = true;
  }
  [[nodiscard]] int count(const std::string& what) const {
    return static_cast<int>(std::count(log.begin(), log.end(), what));
  }
  dist::TeardownSteps steps() {
    return {.aborted = [this] { return aborted; },
            .finalize =
                [this] {
                  log.push_back("finalize");
                  if (finalize_fails) throw Error("ncclCommFinalize failed");
                  if (finalize_hangs)
                    dist::poll_until_done([] { return PollStatus{PollState::in_progress, nullptr}; },
                                          [this] { abort(); }, 5.0, "NCCL finalisation", clock.clock());
                },
            .destroy = [this] { log.push_back("destroy"); },
            .abort = [this] { abort(); },
            .sync = [this] { log.push_back("sync"); }};
  }
};

using Log = std::vector<std::string>;

// Runs a poll whose status answers in_progress `busy` times, then `last`.
void poll(FakeComm& c, int busy, PollStatus last, double timeout_s) {
  int calls = 0;
  dist::poll_until_done(
      [&] {
        c.log.push_back("status");
        return calls++ < busy ? PollStatus{PollState::in_progress, nullptr} : last;
      },
      [&] { c.abort(); }, timeout_s, "NCCL allreduce of 8 floats", c.clock.clock());
}

}  // namespace

TEST(CommPoll, ReturnsWhenDoneWithoutAborting) {
  FakeComm c;
  poll(c, 3, {PollState::done, nullptr}, 10.0);
  EXPECT_EQ(c.count("status"), 4);
  EXPECT_EQ(c.count("abort"), 0);
  EXPECT_EQ(c.clock.pauses, 3);
}

TEST(CommPoll, TimeoutAbortsOnceBeforeThrowingAndNotBeforeTheDeadline) {
  FakeComm c;
  try {
    poll(c, 1 << 30, {PollState::done, nullptr}, 5.0);
    FAIL() << "no CollectiveTimeout";
  } catch (const dist::CollectiveTimeout& e) {
    EXPECT_EQ(c.count("abort"), 1) << "the timeout must abort exactly once before throwing";
    EXPECT_EQ(c.log.back(), "abort") << "nothing may run between the abort and the throw";
    const std::string msg = e.what();
    EXPECT_NE(msg.find("NCCL allreduce of 8 floats"), std::string::npos) << msg;
    EXPECT_NE(msg.find("dist.timeout_s = 5 s"), std::string::npos) << msg;
  }
  // 1 s per pause: 5 s waited is not yet past the deadline, 6 s is.
  EXPECT_EQ(c.clock.pauses, 6);
  EXPECT_GT(c.clock.t - 100.0, 5.0);
}

TEST(CommPoll, NoDeadlineWhenTimeoutIsZero) {
  FakeComm c;
  poll(c, 10000, {PollState::done, nullptr}, 0.0);
  EXPECT_EQ(c.count("abort"), 0);
  EXPECT_EQ(c.clock.pauses, 10000);
}

TEST(CommPoll, ReportedErrorAbortsOnceThenThrowsThatError) {
  FakeComm c;
  auto err = std::make_exception_ptr(std::runtime_error("NCCL: unhandled system error"));
  try {
    poll(c, 2, {PollState::error, err}, 10.0);
    FAIL() << "no throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "NCCL: unhandled system error");
    EXPECT_EQ(c.count("abort"), 1);
    EXPECT_EQ(c.log.back(), "abort");
  }
}

TEST(CommPoll, ReportedErrorWithoutDetailStillAbortsAndNamesTheOperation) {
  FakeComm c;
  try {
    poll(c, 0, {PollState::error, nullptr}, 10.0);
    FAIL() << "no throw";
  } catch (const dist::CollectiveTimeout&) {
    FAIL() << "an error is not a timeout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL allreduce of 8 floats failed"), std::string::npos) << e.what();
    EXPECT_EQ(c.count("abort"), 1);
  }
}

TEST(CommPoll, ThrowingStatusQueryAbortsOnceAndPropagates) {
  // What nccl_comm.cpp does: the query throws the library error (CRACKSEG_NCCL_CHECK /
  // CRACKSEG_CUDA_CHECK) from inside the status callback.
  FakeComm c;
  int calls = 0;
  try {
    dist::poll_until_done(
        [&]() -> PollStatus {
          if (++calls == 3) throw Error("CUDA error: cudaErrorLaunchFailure");
          return {PollState::in_progress, nullptr};
        },
        [&] { c.abort(); }, 10.0, "NCCL broadcast", c.clock.clock());
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "CUDA error: cudaErrorLaunchFailure");
    EXPECT_EQ(c.count("abort"), 1);
  }
}

TEST(CommPoll, SteadyClockTimesOutForReal) {
  int aborts = 0;
  EXPECT_THROW(dist::poll_until_done([] { return PollStatus{PollState::in_progress, nullptr}; }, [&] { ++aborts; },
                                     0.05, "NCCL barrier", dist::PollClock::steady(std::chrono::microseconds(100))),
               dist::CollectiveTimeout);
  EXPECT_EQ(aborts, 1);
}

TEST(CommEnqueue, FailedEnqueueAbortsOnceAndRethrows) {
  FakeComm c;
  EXPECT_NO_THROW(dist::abort_on_throw([&] { c.log.push_back("enqueue"); }, [&] { c.abort(); }));
  EXPECT_EQ(c.log, (Log{"enqueue"}));
  EXPECT_THROW(dist::abort_on_throw([] { throw Error("ncclAllReduce: invalid argument"); }, [&] { c.abort(); }),
               Error);
  EXPECT_EQ(c.log, (Log{"enqueue", "abort"}));
}

TEST(CommTeardown, Paths) {
  EXPECT_EQ(dist::teardown_path(false, false), TeardownPath::finalize_destroy);
  EXPECT_EQ(dist::teardown_path(false, true), TeardownPath::abort);
  EXPECT_EQ(dist::teardown_path(true, false), TeardownPath::none);
  EXPECT_EQ(dist::teardown_path(true, true), TeardownPath::none);
}

TEST(CommTeardown, CleanExitFinalizesDestroysThenSyncs) {
  FakeComm c;
  EXPECT_EQ(dist::run_teardown(false, c.steps()), TeardownPath::finalize_destroy);
  EXPECT_EQ(c.log, (Log{"finalize", "destroy", "sync"}));
}

TEST(CommTeardown, UnwindingAbortsWithoutDestroyOrSync) {
  FakeComm c;
  EXPECT_EQ(dist::run_teardown(true, c.steps()), TeardownPath::abort);
  EXPECT_EQ(c.log, (Log{"abort"}));
}

TEST(CommTeardown, AfterAnAbortNothingRuns) {
  FakeComm c;
  c.abort();  // a timeout aborted it earlier
  c.log.clear();
  EXPECT_EQ(dist::run_teardown(false, c.steps()), TeardownPath::none);
  EXPECT_EQ(dist::run_teardown(true, c.steps()), TeardownPath::none);
  EXPECT_TRUE(c.log.empty()) << "a second abort, a destroy or a sync after an abort";
}

TEST(CommTeardown, FailedFinalizeAbortsInsteadOfDestroying) {
  FakeComm c;
  c.finalize_fails = true;
  EXPECT_NO_THROW((void)dist::run_teardown(false, c.steps()));
  EXPECT_EQ(c.log, (Log{"finalize", "abort"}));
}

TEST(CommTeardown, FinalizeThatTimesOutAbortsOnlyOnce) {
  // finalize's own poll aborts before it throws: the policy must not abort again, destroy, or sync.
  FakeComm c;
  c.finalize_hangs = true;
  EXPECT_NO_THROW((void)dist::run_teardown(false, c.steps()));
  EXPECT_EQ(c.log, (Log{"finalize", "abort"}));
}

TEST(CommTeardown, SyncErrorDoesNotEscape) {
  FakeComm c;
  auto s = c.steps();
  s.sync = [] { throw Error("cudaStreamSynchronize failed"); };
  EXPECT_NO_THROW((void)dist::run_teardown(false, s));
}

namespace {
// An owner like NcclCommunicator: the probe decides, in the destructor, whether an
// exception is unwinding through it.
struct Owner {
  FakeComm& c;
  dist::UnwindProbe probe;
  explicit Owner(FakeComm& comm) : c(comm) {}
  ~Owner() { (void)dist::run_teardown(probe.unwinding(), c.steps()); }
};
}  // namespace

TEST(CommTeardown, RealUnwindingIsSeenByTheProbe) {
  FakeComm c;
  try {
    Owner o(c);
    throw Error("CollectiveTimeout elsewhere");
  } catch (const Error&) {
  }
  EXPECT_EQ(c.log, (Log{"abort"}));
}

TEST(CommTeardown, OwnerLivingInsideAnUnwindingDestructorExitsCleanly) {
  // Built and destroyed while another exception unwinds (inside a destructor that runs during
  // unwinding): nothing unwinds through the owner itself, so it finalises as on a clean exit.
  struct Guard {
    FakeComm& c;
    ~Guard() { Owner o(c); }
  };
  FakeComm c;
  try {
    Guard g{c};
    throw Error("unrelated failure");
  } catch (const Error&) {
  }
  EXPECT_EQ(c.log, (Log{"finalize", "destroy", "sync"}));
}
