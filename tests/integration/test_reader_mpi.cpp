// ctest-labels: mpi hdf5
// ctest-ranks: 2 4
// ctest-link: crackseg_io
// Sharded reader under real MPI: every rank reads its own shard of one file; the gathered
// indices cover each training sample of the epoch exactly once (training) and each split
// sample exactly once in order (eval), and match the single-process sharding rule.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <memory>
#include <set>
#include <vector>

#include "io/dataset/dataset.hpp"
#include "io/dataset/writer.hpp"
#include "io/reader/sharded_reader.hpp"
#include "src/core/rng.hpp"
#include "support/paths.hpp"

using namespace crackseg;
using namespace crackseg::io;

namespace {

int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// Rank 0 writes a dataset into its temporary folder; every rank gets the path.
class SharedDataset {
 public:
  explicit SharedDataset(int n) {
    std::string path;
    if (rank() == 0) {
      dir_ = std::make_unique<test::TempDir>();
      path = (*dir_ / "mpi.h5").string();
      DatasetWriter w(path, 20, 20);
      for (int i = 0; i < n; ++i) {
        SampleRng r(3, 0, static_cast<uint64_t>(i), Purpose::synth);
        std::vector<uint8_t> img(20 * 20 * 3), m(20 * 20);
        for (auto& v : img) v = static_cast<uint8_t>(r.next_u32());
        for (auto& v : m) v = r.uniform() < 0.1f ? 1 : 0;
        w.append(img.data(), m.data(), std::to_string(i) + ".png", "synth");
      }
      (void)w.finish(SplitSpec{.fractions = {0.75, 0.25, 0.0}, .seed = 2});
    }
    int len = static_cast<int>(path.size());
    MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
    path.resize(static_cast<size_t>(len));
    MPI_Bcast(path.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = path;
  }
  ~SharedDataset() { MPI_Barrier(MPI_COMM_WORLD); }  // nobody reads when rank 0 deletes it
  const std::string& path() const { return path_; }

 private:
  std::unique_ptr<test::TempDir> dir_;
  std::string path_;
};

std::vector<uint64_t> read_all(ShardedReader& reader, uint64_t epoch) {
  reader.start_epoch(epoch);
  std::vector<uint64_t> out;
  MicroBatch mb;
  while (reader.next(mb)) out.insert(out.end(), mb.indices.begin(), mb.indices.end());
  return out;
}

}  // namespace

TEST(ShardedReaderMpi, TrainingShardsCoverTheEpochExactlyOnce) {
  const SharedDataset data(70);
  const int R = world(), r = rank();
  const int B = 8, m = 2;  // divisible by R*m for R = 2 and 4
  ShardedReader reader({.path = data.path(), .rank = r, .world = R, .seed = 126, .global_batch = B,
                        .micro_batch = m, .augment = {.crop = 12}});
  const DatasetFile file(data.path());
  const auto split = file.split("train");
  for (uint64_t epoch : {0u, 1u}) {
    const auto mine = read_all(reader, epoch);
    const auto want = train_shard(split, 126, epoch, B, m, R, r);
    ASSERT_EQ(mine, std::vector<uint64_t>(want.begin(), want.end()));
    std::vector<uint64_t> all(mine.size() * static_cast<size_t>(R));
    MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_UINT64_T, all.data(),
                  static_cast<int>(mine.size()), MPI_UINT64_T, MPI_COMM_WORLD);
    const size_t covered = split.size() / B * B;
    ASSERT_EQ(all.size(), covered);
    EXPECT_EQ(std::set<uint64_t>(all.begin(), all.end()).size(), covered) << "a sample read twice";
    const auto perm = epoch_permutation(126, epoch, static_cast<uint32_t>(split.size()));
    std::set<uint64_t> expected;
    for (size_t p = 0; p < covered; ++p) expected.insert(split[perm[p]]);
    EXPECT_EQ(std::set<uint64_t>(all.begin(), all.end()), expected);
  }
}

TEST(ShardedReaderMpi, EvalShardsAreTheSplitInOrderWithoutPadding) {
  const SharedDataset data(50);
  const int R = world(), r = rank();
  ShardedReader reader({.path = data.path(), .split = "val", .mode = ReaderMode::eval, .rank = r, .world = R,
                        .micro_batch = 3});
  const auto mine = read_all(reader, 0);
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(R)), displs(static_cast<size_t>(R));
  MPI_Allgather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
  for (int i = 1; i < R; ++i) displs[i] = displs[i - 1] + counts[i - 1];
  std::vector<uint64_t> all(static_cast<size_t>(displs[R - 1] + counts[R - 1]));
  MPI_Allgatherv(mine.data(), count, MPI_UINT64_T, all.data(), counts.data(), displs.data(), MPI_UINT64_T,
                 MPI_COMM_WORLD);
  const auto val = DatasetFile(data.path()).split("val");
  EXPECT_EQ(all, std::vector<uint64_t>(val.begin(), val.end()));
}
