// The dropout mask shared by every backend: element i (logical (c, h, w) order, i.e.
// (c*H + h)*W + w, or the feature index of a 2-D input) of batch item n is dropped when
//   rng_uniform(seed ^ (salt << 32), epoch, sample_ids[n], Purpose::dropout, i) < p,
// with salt = name_salt(node name). The mask thus depends on the sample, never on the rank,
// the thread, the batch composition or the memory format. Kept elements scale by 1/(1-p).
// Why the salt sits in the key and not in the counter (salt * 2^32 + i, as first planned):
// rng_word keeps only 32 bits of the block index i/4, which would leave 2 bits of the salt
// and correlate the masks of different layers; the 64-bit key keeps all of it.
// The (key, counter) rule itself lives in src/core/dropout_rng.hpp (host and device code).
// An empty ctx.sample_ids means "item n is sample n" (unit tests, single-batch tools).
#pragma once
#include <cstdint>

#include "src/core/dropout_rng.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "src/graph/layer.hpp"

namespace crackseg {

[[nodiscard]] inline uint64_t dropout_sample_id(const StepContext& ctx, int64_t n) {
  if (ctx.sample_ids.empty()) return static_cast<uint64_t>(n);
  if (static_cast<std::size_t>(n) >= ctx.sample_ids.size())
    throw Error("dropout: StepContext.sample_ids has " + std::to_string(ctx.sample_ids.size()) +
                " ids but the batch has item " + std::to_string(n));
  return ctx.sample_ids[static_cast<std::size_t>(n)];
}

[[nodiscard]] inline bool dropout_dropped(const StepContext& ctx, uint64_t sample, uint32_t salt, uint64_t i, float p) {
  return dropout_drops(ctx.seed, salt, ctx.epoch, sample, i, p);
}

}  // namespace crackseg
