// ctest-link: crackseg_nn
// BlockPlan (src/graph/block_plan.hpp): the Graph's gradient buffers share blocks across
// shapes. Fails if two slots that are busy at the same time share a block (one gradient
// would overwrite another), if a block is smaller than a slot it served, or if a released
// block of the right size is not reused (the memory saving the plan exists for).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "src/graph/block_plan.hpp"

namespace crackseg {
namespace {

TEST(BlockPlan, RandomLifetimesNeverShareABlockWhileBusy) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    BlockPlan bp;
    std::vector<int> live;
    std::map<int, int64_t> elems;
    for (int step = 0; step < 60; ++step) {
      if (!live.empty() && rng() % 3 == 0) {
        const auto i = rng() % live.size();
        bp.release(live[i]);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        const int64_t e = 1 + static_cast<int64_t>(rng() % 1000);
        const int s = bp.acquire(e);
        elems[s] = e;
        live.push_back(s);
      }
      std::set<int> blocks;
      for (int s : live) EXPECT_TRUE(blocks.insert(bp.block_of(s)).second) << "two busy slots in one block";
    }
    for (const auto& [s, e] : elems) EXPECT_GE(bp.block_elems()[static_cast<std::size_t>(bp.block_of(s))], e);
  }
}

TEST(BlockPlan, ReusesAcrossShapesBestFit) {
  BlockPlan bp;
  // a U-Net's backward: the fine level first (two buffers of 100), then a coarser level (25)
  const int a = bp.acquire(100), b = bp.acquire(100);
  bp.release(a);
  const int c = bp.acquire(25);  // fits in a's block: no new block
  EXPECT_EQ(bp.block_of(c), bp.block_of(a));
  bp.release(b);
  bp.release(c);
  const int d = bp.acquire(30), e = bp.acquire(120);  // d best fit (either 100 block), e grows the other
  EXPECT_NE(bp.block_of(d), bp.block_of(e));
  EXPECT_EQ(bp.block_elems().size(), 2u);
  EXPECT_EQ(bp.total_elems(), 220);
  EXPECT_THROW(bp.release(a), std::logic_error);  // released twice: must not free d's or e's block
}

}  // namespace
}  // namespace crackseg
