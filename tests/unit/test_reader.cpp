// ctest-labels: unit hdf5
// ctest-link: crackseg_io
// Sharded reader: the documented sharding rule, every training sample exactly once per epoch
// for 1-4 ranks (readers for every rank built in one process), eval blocks without padding or
// duplicates, output bytes equal to augmenting the stored sample directly (so they do not
// depend on which rank read them), resume, prefetch depth, and input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include <hdf5.h>

#include "io/dataset/dataset.hpp"
#include "io/dataset/writer.hpp"
#include "io/reader/sharded_reader.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "support/paths.hpp"

using namespace crackseg;
using namespace crackseg::io;

namespace {

constexpr int kH = 24, kW = 32;

// A dataset of n random images/masks; all samples in the train split unless `fractions` says.
std::filesystem::path make_dataset(const test::TempDir& dir, int n, std::array<double, 3> fractions = {1, 0, 0}) {
  const auto path = dir / "r.h5";
  DatasetWriter w(path, kH, kW);
  for (int i = 0; i < n; ++i) {
    SampleRng r(99, 0, static_cast<uint64_t>(i), Purpose::synth);
    std::vector<uint8_t> img(kH * kW * 3), m(kH * kW);
    for (auto& v : img) v = static_cast<uint8_t>(r.next_u32());
    for (auto& v : m) v = r.uniform() < 0.2f ? 1 : 0;
    w.append(img.data(), m.data(), std::to_string(i) + ".png", "synth");
  }
  (void)w.finish(SplitSpec{.fractions = fractions, .seed = 1});
  return path;
}

std::vector<uint32_t> iota_split(uint32_t n, uint32_t offset = 0) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), offset);
  return v;
}

// All micro-batches of one epoch from a reader.
std::vector<MicroBatch> drain(ShardedReader& r, uint64_t epoch, uint64_t first_step = 0) {
  r.start_epoch(epoch, first_step);
  std::vector<MicroBatch> out;
  MicroBatch mb;
  while (r.next(mb)) out.push_back(mb);
  return out;
}

}  // namespace

TEST(TrainShard, FollowsTheDocumentedRoundRobinRule) {
  const auto split = iota_split(37, 100);  // dataset indices 100..136
  const int B = 8, m = 2, R = 2, a = B / (R * m);
  const auto perm = epoch_permutation(5, 3, 37);
  for (int r = 0; r < R; ++r) {
    const auto mine = train_shard(split, 5, 3, B, m, R, r);
    ASSERT_EQ(mine.size(), size_t(37 / B) * a * m);
    size_t i = 0;
    for (int t = 0; t < 37 / B; ++t)
      for (int k = 0; k < a; ++k)
        for (int j = 0; j < m; ++j) EXPECT_EQ(mine[i++], split[perm[t * B + (k * R + r) * m + j]]);
  }
}

TEST(TrainShard, EverySampleOnceForOneToFourRanksAndLastBatchDropped) {
  const auto split = iota_split(53);
  for (int m : {1, 2}) {
    const int B = 12 * m;  // divisible by R*m for R = 1, 2, 3, 4
    const size_t steps = 53 / B;
    const auto perm = epoch_permutation(126, 1, 53);
    std::set<uint32_t> expected(perm.begin(), perm.begin() + static_cast<ptrdiff_t>(steps * B));
    for (int R = 1; R <= 4; ++R) {
      std::multiset<uint32_t> seen;
      for (int r = 0; r < R; ++r) {
        const auto mine = train_shard(split, 126, 1, B, m, R, r);
        EXPECT_EQ(mine.size(), steps * B / R) << "equal shares";
        seen.insert(mine.begin(), mine.end());
      }
      EXPECT_EQ(seen.size(), steps * B) << "R=" << R << " m=" << m;
      EXPECT_EQ(std::set<uint32_t>(seen.begin(), seen.end()), expected) << "R=" << R << " m=" << m;
    }
  }
}

TEST(TrainShard, GlobalMicroBatchesDoNotDependOnRankCount) {
  // The batchnorm groups (global micro-batches) have the same members for 1, 2 and 4 ranks.
  const auto split = iota_split(40);
  auto groups = [&](int R) {
    std::set<std::vector<uint32_t>> g;
    for (int r = 0; r < R; ++r) {
      const auto mine = train_shard(split, 7, 0, 16, 2, R, r);
      for (size_t i = 0; i < mine.size(); i += 2) g.insert({mine[i], mine[i + 1]});
    }
    return g;
  };
  EXPECT_EQ(groups(1), groups(2));
  EXPECT_EQ(groups(1), groups(4));
}

TEST(TrainShard, EpochsGiveDifferentOrders) {
  const auto split = iota_split(64);
  EXPECT_NE(train_shard(split, 126, 0, 8, 4, 1, 0), train_shard(split, 126, 1, 8, 4, 1, 0));
  EXPECT_EQ(train_shard(split, 126, 1, 8, 4, 1, 0), train_shard(split, 126, 1, 8, 4, 1, 0));
}

TEST(TrainShard, RejectsIndivisibleBatchAndTooSmallSplit) {
  const auto split = iota_split(64);
  EXPECT_THROW((void)train_shard(split, 1, 0, 8, 4, 3, 0), InputError);  // 8 % (3*4) != 0
  EXPECT_THROW((void)train_shard(split, 1, 0, 6, 4, 1, 0), InputError);  // 6 % 4 != 0
  EXPECT_THROW((void)train_shard(iota_split(7), 1, 0, 8, 4, 1, 0), InputError);
  EXPECT_THROW((void)train_shard(split, 1, 0, 8, 4, 2, 2), InputError);  // rank out of range
  try {
    (void)train_shard(split, 1, 0, 10, 4, 2, 0);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("B=10"), std::string::npos) << e.what();
  }
}

TEST(EvalShard, ContiguousBlocksWithoutPaddingOrDuplicates) {
  for (uint32_t n : {0u, 1u, 3u, 10u, 17u})
    for (int R = 1; R <= 4; ++R) {
      const auto split = iota_split(n, 5);
      std::vector<uint32_t> joined;
      for (int r = 0; r < R; ++r) {
        const auto mine = eval_shard(split, R, r);
        EXPECT_EQ(mine.size(), (r + 1) * n / R - r * n / R);
        joined.insert(joined.end(), mine.begin(), mine.end());
      }
      EXPECT_EQ(joined, split) << "n=" << n << " R=" << R;
    }
}

TEST(ShardedReader, ReadersForEveryRankCoverTheEpochOnceWithRankIndependentBytes) {
  test::TempDir dir;
  const auto path = make_dataset(dir, 26);
  const DatasetFile file(path);
  const auto split = file.split("train");
  ASSERT_EQ(split.size(), 26u);
  const AugmentConfig aug{.crop = 16};
  std::map<uint64_t, std::pair<std::vector<float>, std::vector<uint8_t>>> reference;  // from R = 1
  for (int R = 1; R <= 4; ++R) {
    std::multiset<uint64_t> seen;
    for (int r = 0; r < R; ++r) {
      ShardedReader reader({.path = path, .rank = r, .world = R, .seed = 11, .global_batch = 12,
                            .micro_batch = 1, .augment = aug, .prefetch = 2});
      EXPECT_EQ(reader.steps_per_epoch(), 2u);
      EXPECT_EQ(reader.micro_batches_per_step(), 12 / R);
      const auto batches = drain(reader, 4);
      ASSERT_EQ(batches.size(), size_t(2 * 12 / R));
      const auto mine = train_shard(split, 11, 4, 12, 1, R, r);
      for (size_t b = 0; b < batches.size(); ++b) {
        const MicroBatch& mb = batches[b];
        ASSERT_EQ(mb.count, 1);
        EXPECT_EQ(mb.step, b / (12 / R));
        EXPECT_EQ(mb.micro, static_cast<int>(b % (12 / R)));
        EXPECT_EQ(mb.indices[0], mine[b]);
        ASSERT_EQ(mb.images.size(), 16u * 16 * 3);
        seen.insert(mb.indices[0]);
        auto [it, fresh] = reference.try_emplace(mb.indices[0], mb.images, mb.masks);
        if (!fresh) {  // read before by a reader of another rank count: identical bytes
          EXPECT_EQ(it->second.first, mb.images) << "sample " << mb.indices[0] << " R=" << R;
          EXPECT_EQ(it->second.second, mb.masks);
        }
      }
    }
    EXPECT_EQ(seen.size(), 24u) << "R=" << R;
    EXPECT_EQ(std::set<uint64_t>(seen.begin(), seen.end()).size(), 24u) << "R=" << R;
  }
  // And the bytes are exactly augment_sample of the stored sample under (seed, epoch, index).
  std::vector<uint8_t> img(file.image_bytes()), msk(file.mask_bytes());
  for (const auto& [idx, data] : reference) {
    file.read_image(static_cast<uint32_t>(idx), img.data());
    file.read_mask(static_cast<uint32_t>(idx), msk.data());
    std::vector<float> oi(16 * 16 * 3);
    std::vector<uint8_t> om(16 * 16);
    augment_sample(aug, 11, 4, idx, img, msk, kH, kW, oi, om);
    ASSERT_EQ(oi, data.first) << idx;
    ASSERT_EQ(om, data.second) << idx;
  }
}

TEST(ShardedReader, MicroBatchLayoutAndRestartResumeAndEpochs) {
  test::TempDir dir;
  const auto path = make_dataset(dir, 30);
  ShardedReader reader({.path = path, .rank = 1, .world = 2, .seed = 3, .global_batch = 8, .micro_batch = 2,
                        .augment = {.enabled = false}, .prefetch = 1});
  const auto e0 = drain(reader, 0);
  ASSERT_EQ(e0.size(), 3u * 2);  // 3 steps x a = 2
  const DatasetFile file(path);
  std::vector<uint8_t> img(file.image_bytes()), msk(file.mask_bytes());
  for (const auto& mb : e0) {  // no augmentation, no crop: x / 255 and the mask as stored
    ASSERT_EQ(mb.count, 2);
    ASSERT_EQ(mb.height, kH);
    ASSERT_EQ(mb.width, kW);
    for (int i = 0; i < 2; ++i) {
      file.read_image(static_cast<uint32_t>(mb.indices[i]), img.data());
      file.read_mask(static_cast<uint32_t>(mb.indices[i]), msk.data());
      for (size_t j = 0; j < img.size(); ++j) ASSERT_EQ(mb.images[i * img.size() + j], img[j] / 255.0f);
      for (size_t j = 0; j < msk.size(); ++j) ASSERT_EQ(mb.masks[i * msk.size() + j], msk[j]);
    }
  }
  // Restart mid-epoch (abandon after one batch), then resume from step 1 = the tail.
  reader.start_epoch(0);
  MicroBatch one;
  ASSERT_TRUE(reader.next(one));
  const auto tail = drain(reader, 0, 1);
  ASSERT_EQ(tail.size(), 4u);
  for (size_t i = 0; i < tail.size(); ++i) {
    EXPECT_EQ(tail[i].indices, e0[i + 2].indices);
    EXPECT_EQ(tail[i].step, e0[i + 2].step);
  }
  const auto e1 = drain(reader, 1);
  ASSERT_EQ(e1.size(), e0.size());
  bool differs = false;
  for (size_t i = 0; i < e0.size(); ++i) differs |= e0[i].indices != e1[i].indices;
  EXPECT_TRUE(differs);
  EXPECT_THROW(reader.start_epoch(0, 4), InputError);
}

TEST(ShardedReader, SeveralWorkersGiveTheSameBatchesInTheSameOrder) {
  test::TempDir dir;
  const auto path = make_dataset(dir, 40);
  auto run = [&](int workers, int prefetch) {
    ShardedReader reader({.path = path, .rank = 0, .world = 2, .seed = 8, .global_batch = 8, .micro_batch = 2,
                          .augment = {.crop = 16}, .prefetch = prefetch, .workers = workers});
    return drain(reader, 2);
  };
  const auto one = run(1, 1);
  ASSERT_EQ(one.size(), 5u * 2);
  for (auto [w, p] : {std::pair{3, 4}, std::pair{4, 2}, std::pair{2, 1}}) {
    const auto many = run(w, p);
    ASSERT_EQ(many.size(), one.size());
    for (size_t i = 0; i < one.size(); ++i) {
      EXPECT_EQ(many[i].step, one[i].step);
      EXPECT_EQ(many[i].micro, one[i].micro);
      EXPECT_EQ(many[i].indices, one[i].indices) << "workers " << w << " batch " << i;
      EXPECT_EQ(many[i].images, one[i].images) << "workers " << w << " batch " << i;
      EXPECT_EQ(many[i].masks, one[i].masks);
    }
  }
}

TEST(ShardedReader, EvalModeReadsEachSplitSampleOnceWholeAndUnaugmented) {
  test::TempDir dir;
  const auto path = make_dataset(dir, 40, {0.5, 0.5, 0.0});
  const DatasetFile file(path);
  const auto val = file.split("val");
  ASSERT_EQ(val.size(), 20u);
  for (int R = 1; R <= 4; ++R) {
    std::vector<uint64_t> joined;
    for (int r = 0; r < R; ++r) {
      ShardedReader reader({.path = path, .split = "val", .mode = ReaderMode::eval, .rank = r, .world = R,
                            .micro_batch = 3, .augment = {.crop = 8}});
      const auto batches = drain(reader, 0);
      const size_t local = (r + 1) * 20 / R - r * 20 / R;
      EXPECT_EQ(batches.size(), (local + 2) / 3);
      EXPECT_EQ(reader.micro_batches_per_step(), static_cast<int>((local + 2) / 3));
      for (const auto& mb : batches) {
        EXPECT_EQ(mb.height, kH);  // eval ignores crop
        EXPECT_EQ(mb.images.size(), static_cast<size_t>(mb.count) * kH * kW * 3);
        joined.insert(joined.end(), mb.indices.begin(), mb.indices.end());
      }
    }
    EXPECT_EQ(joined, std::vector<uint64_t>(val.begin(), val.end())) << "R=" << R;
  }
}

TEST(ShardedReader, ErrorOnThePrefetchThreadReachesTheConsumer) {
  // Overwrite the stored (deflated) chunk of sample 3's image with garbage, so inflating it
  // fails on a prefetch worker; next() must rethrow that error, naming the file.
  test::TempDir dir;
  const auto path = dir / "bad.h5";
  {
    DatasetWriter w(path, kH, kW);
    std::vector<uint8_t> img(kH * kW * 3), m(kH * kW, 0);
    for (int i = 0; i < 8; ++i) {
      std::fill(img.begin(), img.end(), static_cast<uint8_t>(10 * i));  // compresses well
      w.append(img.data(), m.data(), std::to_string(i) + ".png", "synth");
    }
    (void)w.finish(SplitSpec{.fractions = {1, 0, 0}});
  }
  haddr_t addr = 0;
  hsize_t size = 0;
  {
    const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t d = H5Dopen2(f, "/images", H5P_DEFAULT);
    hsize_t offset[4] = {};
    unsigned filter_mask = 0;
    const hid_t space = H5Dget_space(d);
    const herr_t rc = H5Dget_chunk_info(d, space, 3, offset, &filter_mask, &addr, &size);
    H5Sclose(space);
    ASSERT_GE(rc, 0);
    ASSERT_EQ(offset[0], 3u);
    ASSERT_EQ(filter_mask, 0u) << "chunk stored deflated";
    H5Dclose(d);
    H5Fclose(f);
  }
  {
    std::FILE* fp = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(fp, nullptr);
    ASSERT_EQ(std::fseek(fp, static_cast<long>(addr), SEEK_SET), 0);
    const std::vector<uint8_t> junk(size, 0xA5);
    ASSERT_EQ(std::fwrite(junk.data(), 1, junk.size(), fp), junk.size());
    std::fclose(fp);
  }
  for (int workers : {1, 3}) {
    ShardedReader reader({.path = path, .mode = ReaderMode::eval, .micro_batch = 1, .workers = workers});
    reader.start_epoch(0);
    MicroBatch mb;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(reader.next(mb));  // samples 0..2 are intact and come first
      EXPECT_EQ(mb.indices[0], static_cast<uint64_t>(i));
    }
    try {
      (void)reader.next(mb);
      FAIL() << "corrupt sample 3 was delivered";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
}

TEST(ShardedReader, RejectsBadGeometryWithClearMessages) {
  test::TempDir dir;
  const auto path = make_dataset(dir, 10);
  EXPECT_THROW(ShardedReader({.path = path, .world = 3, .global_batch = 8, .micro_batch = 2}), InputError);
  EXPECT_THROW(ShardedReader({.path = path, .global_batch = 16, .micro_batch = 2}), InputError);  // n < B
  EXPECT_THROW(ShardedReader({.path = path, .augment = {.crop = 64}}), InputError);
  EXPECT_THROW(ShardedReader({.path = path, .split = "val"}), InputError);  // empty split: n < B
  EXPECT_THROW(ShardedReader({.path = dir / "missing.h5"}), InputError);
  EXPECT_THROW(ShardedReader({.path = path, .global_batch = 4, .micro_batch = 2, .workers = 0}), InputError);
}

TEST(ShardedReader, HdfThreadSafetyMatchesTheBuildConfiguration) {
  // The reader serialises HDF5 through io/h5's lock either way; this pins what it reports.
#ifdef H5_HAVE_THREADSAFE
  EXPECT_TRUE(hdf5_is_threadsafe());
#else
  EXPECT_FALSE(hdf5_is_threadsafe());
#endif
}
