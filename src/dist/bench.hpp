// Communication micro-benchmarks for `crackseg bench` and the README's scaling model:
// allreduce time and bandwidth over message size, through the same non-blocking path the
// gradient sync uses, next to this node's memory-copy bandwidth. Collective: call on every
// rank. Numbers only, never asserted on in tests.
#pragma once
#include <cstddef>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/dist/communicator.hpp"

namespace crackseg::dist {

// One row per size: {"bytes", "iters", "seconds" (median per allreduce, max over ranks),
// "algbw_GBps" (bytes / seconds), "busbw_GBps" (algbw x 2(R-1)/R: the per-link traffic of a
// ring allreduce, comparable across rank counts as in nccl-tests), "correct" (the sum of
// rank-dependent integers came out exact)}. `seconds_budget` bounds each size's repeats.
[[nodiscard]] nlohmann::json allreduce_bandwidth(Communicator& comm, const std::vector<std::size_t>& sizes_bytes,
                                                 double seconds_budget = 0.5);

// Single-thread memcpy bandwidth of this rank for a buffer of `bytes` (GB/s, read + write
// counted once each, i.e. 2 x bytes per copy).
[[nodiscard]] double memcpy_bandwidth_GBps(std::size_t bytes, double seconds_budget = 0.2);

}  // namespace crackseg::dist
