// SIGINT/SIGTERM during a long dataset write: the handler only sets a flag; the writing loop
// polls it between samples and throws Interrupted, so the writer's destructor removes its
// temporary file and no half-written output is ever left under the final name.
#pragma once
#include <string>

#include "src/core/error.hpp"

namespace crackseg::io {

class Interrupted : public Error {
 public:
  explicit Interrupted(int signal);
  [[nodiscard]] int signal() const { return signal_; }

 private:
  int signal_;
};

// Installs the flag-setting handlers for SIGINT and SIGTERM; restores the previous ones when
// destroyed. Not reentrant: one guard at a time (commands create one).
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
};

// The signal received since the guard was installed, or 0.
[[nodiscard]] int pending_interrupt();
// Throws Interrupted if a signal arrived.
void throw_if_interrupted();

}  // namespace crackseg::io
