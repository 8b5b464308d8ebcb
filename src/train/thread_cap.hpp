// train.threads larger than the cores this process may run on (its CPU affinity: the node,
// or the cpuset srun/mpirun bound it to) only oversubscribes: 1000 OpenMP threads on a few
// cores make no progress and starve the signal checks. Capped, with a message.
#pragma once
#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace crackseg::train {

// Cores in this process's affinity mask (at least 1).
[[nodiscard]] inline int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

// min(requested, available_cores()); `say`: print a note when it caps.
[[nodiscard]] inline int capped_threads(int64_t requested, bool say) {
  const int cores = available_cores();
  if (requested <= cores) return static_cast<int>(requested);
  if (say)
    std::printf("note: train.threads = %lld exceeds the %d core(s) this rank may use; using %d\n",
                static_cast<long long>(requested), cores, cores);
  return cores;
}

}  // namespace crackseg::train
