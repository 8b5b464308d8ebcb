// ctest-link: crackseg_base
// The staging ring of the cuda backend's batch uploads (kernels/cuda/staging_ring.hpp, issue
// 14 item 11), without a GPU: upload_async (tensor_ops.cu) does exactly what each step says.
// The DMA runs on a copy stream, so a slot's pinned buffer may still be read by its previous
// DMA and its device buffer by its previous consumer when the ring comes back to it. Fails
// if a reused slot is written without both waits, a slot comes back before the others were
// used, a buffer is too small for its upload, or a failed upload's slot is not reallocated.
#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <random>

#include "kernels/cuda/staging_ring.hpp"

using crackseg::cuda::StagingRing;
using crackseg::cuda::StagingStep;

TEST(StagingRing, SlotsInTurnFirstUseAllocatesWithoutWaiting) {
  StagingRing ring(4);
  for (int k = 0; k < 4; ++k) {
    const StagingStep s = ring.next(1000);
    EXPECT_EQ(s.slot, k);
    EXPECT_FALSE(s.wait_dma) << "slot " << k << ": nothing was recorded on it yet";
    EXPECT_FALSE(s.wait_consumed);
    EXPECT_EQ(s.grow_to, 1000u);
  }
  const StagingStep again = ring.next(1000);
  EXPECT_EQ(again.slot, 0);
  EXPECT_TRUE(again.wait_dma) << "the pinned buffer may still be read by its previous DMA";
  EXPECT_TRUE(again.wait_consumed) << "the device buffer may still be read by its previous consumer";
  EXPECT_EQ(again.grow_to, 0u) << "1000 bytes fit: no reallocation";
}

TEST(StagingRing, GrowsOnlyForLargerUploadsAndWaitsBeforeGrowing) {
  StagingRing ring(1);
  EXPECT_EQ(ring.next(100).grow_to, 100u);
  const StagingStep smaller = ring.next(40);  // last batch of an epoch
  EXPECT_EQ(smaller.grow_to, 0u);
  EXPECT_EQ(ring.capacity(0), 100u);
  const StagingStep larger = ring.next(300);
  EXPECT_EQ(larger.grow_to, 300u);
  EXPECT_TRUE(larger.wait_dma) << "freeing the pinned buffer while its DMA runs";
  EXPECT_EQ(ring.capacity(0), 300u);
}

TEST(StagingRing, EmptyUploadTakesNoSlot) {
  StagingRing ring(2);
  EXPECT_EQ(ring.next(0).slot, -1);
  EXPECT_EQ(ring.next(8).slot, 0);
  EXPECT_EQ(ring.next(0).slot, -1);
  EXPECT_EQ(ring.next(8).slot, 1);
}

TEST(StagingRing, FailedUploadReallocatesItsSlotNextTime) {
  StagingRing ring(2);
  const StagingStep s = ring.next(64);
  ring.forget(s.slot);  // e.g. cudaMallocHost failed part-way
  (void)ring.next(64);
  const StagingStep again = ring.next(64);
  EXPECT_EQ(again.slot, s.slot);
  EXPECT_EQ(again.grow_to, 64u);
  EXPECT_TRUE(again.wait_dma) << "events may have been recorded before the failure";
}

TEST(StagingRing, RejectsNoSlots) { EXPECT_THROW(StagingRing(0), crackseg::Error); }

// A replay of random uploads against a model of the two streams: every slot records which
// upload last used it; a reuse must wait on both of that upload's events, and must come only
// after every other slot was used once since (the ring's depth is what lets the host run
// ahead of the device by that many uploads).
TEST(StagingRing, RandomUploadsNeverOverwriteABufferInUse) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::size_t> size(0, 5000);
  StagingRing ring(4);
  std::map<int, int> last_use;  // slot -> upload index
  int uploads = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::size_t bytes = size(rng) < 200 ? 0 : size(rng);
    const StagingStep s = ring.next(bytes);
    if (bytes == 0) {
      EXPECT_EQ(s.slot, -1);
      continue;
    }
    ASSERT_GE(s.slot, 0);
    ASSERT_LT(s.slot, 4);
    EXPECT_GE(ring.capacity(s.slot), bytes);
    if (auto it = last_use.find(s.slot); it != last_use.end()) {
      EXPECT_TRUE(s.wait_dma && s.wait_consumed) << "upload " << uploads << " reuses slot " << s.slot;
      EXPECT_EQ(uploads - it->second, 4) << "slot " << s.slot << " came back early";
    } else {
      EXPECT_FALSE(s.wait_dma || s.wait_consumed);
    }
    last_use[s.slot] = uploads++;
  }
}
