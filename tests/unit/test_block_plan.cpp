// ctest-link: crackseg_nn
// BlockPlan (src/graph/block_plan.hpp): the Graph's gradient buffers are slices of one arena
// planned from their lifetimes. Fails if two slots whose lifetimes overlap overlap in memory
// (one gradient would overwrite another), if a slot runs past the arena or is misaligned, or
// if the arena is larger than the peak of live gradients on the U-Net's pattern (a wide
// concat gradient beside the upsampled and skip gradients, the skips held until the encoder).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "src/graph/block_plan.hpp"

namespace crackseg {
namespace {

struct Life {
  int slot;
  int64_t elems, start, end;
};

void expect_valid(const BlockPlan& bp, const std::vector<Life>& lives, int trial) {
  for (std::size_t a = 0; a < lives.size(); ++a) {
    const int64_t oa = bp.offset_of(lives[a].slot);
    EXPECT_EQ(oa % BlockPlan::kAlign, 0);
    EXPECT_LE(oa + lives[a].elems, bp.arena_elems());
    for (std::size_t b = a + 1; b < lives.size(); ++b) {
      const int64_t ob = bp.offset_of(lives[b].slot);
      const bool in_time = lives[a].start < lives[b].end && lives[b].start < lives[a].end;
      const bool in_memory = oa < ob + lives[b].elems && ob < oa + lives[a].elems;
      EXPECT_FALSE(in_time && in_memory) << "trial " << trial << ": slots " << a << " and " << b;
    }
  }
  EXPECT_GE(bp.arena_elems(), bp.peak_live_elems());
}

TEST(BlockPlan, OverlappingLifetimesNeverShareMemory) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    BlockPlan bp;
    std::vector<Life> lives;
    std::vector<std::size_t> open;
    int64_t t = 0;
    for (int step = 0; step < 60; ++step, ++t) {
      if (!open.empty() && rng() % 3 == 0) {
        const auto i = rng() % open.size();
        bp.release(lives[open[i]].slot);
        lives[open[i]].end = t;
        open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        const int64_t e = 1 + static_cast<int64_t>(rng() % 1000);
        lives.push_back({bp.acquire(e), e, t, 1 << 30});
        open.push_back(lives.size() - 1);
      }
    }
    bp.finish();
    expect_valid(bp, lives, trial);
  }
}

TEST(BlockPlan, UnetShapedBackwardNeedsOnlyItsPeak) {
  // Per decoder level of width s (64, 32, 16 elements, fine to coarse, as the Graph's
  // backward walks them): the chain gradient, the concat gradient (2s) beside the upsampled
  // and skip gradients (s each; the skip held until its encoder level), then the encoder
  // levels coarse to fine.
  BlockPlan bp;
  std::vector<Life> lives;
  int64_t t = 0;
  const auto acq = [&](int64_t e) {
    lives.push_back({bp.acquire(e), e, t++, 1 << 30});
    return lives.size() - 1;
  };
  const auto rel = [&](std::size_t i) {
    bp.release(lives[i].slot);
    lives[i].end = t++;
  };
  std::vector<std::size_t> skips;
  std::size_t prev = acq(64);
  for (int64_t s : {64, 32, 16}) {
    const std::size_t chain = acq(s);
    rel(prev);
    const std::size_t cat = acq(2 * s);
    rel(chain);
    const std::size_t up = acq(s), skip = acq(s);
    rel(cat);
    skips.push_back(skip);
    prev = acq(s / 2);
    rel(up);
  }
  for (auto it = skips.rbegin(); it != skips.rend(); ++it) {
    const std::size_t a = acq(64);
    rel(prev);
    rel(*it);
    prev = a;
  }
  rel(prev);
  bp.finish();
  expect_valid(bp, lives, 0);
  EXPECT_EQ(bp.peak_live_elems(), 128 + 64 + 64);  // the fine level's concat, up and skip
  EXPECT_EQ(bp.arena_elems(), bp.peak_live_elems());
  EXPECT_THROW(bp.release(lives[prev].slot), std::logic_error);  // released twice
}

}  // namespace
}  // namespace crackseg
