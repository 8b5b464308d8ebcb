// ctest-labels: fault integration mpi slurm
// ctest-timeout: 120
// Issue 12 item 1: a rank that fails alone (a corrupt chunk in a sample only rank 1 reads)
// prints its reason and aborts the job within seconds, instead of dying in MPI_Finalize
// while its peers wait out dist.timeout_s. Under mpiexec, and under srun --mpi=pmix on the
// project's private one-node SLURM cluster.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <algorithm>

#include "io/dataset/dataset.hpp"
#include "io/reader/sharded_reader.hpp"
#include "test_slurm_cluster.hpp"
#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

// Replaces the stored (deflated) chunk of image `index` with bytes zlib cannot inflate.
void corrupt_image_chunk(const fs::path& file, uint32_t index) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t d = H5Dopen2(f, "/images", H5P_DEFAULT);
  ASSERT_GE(d, 0);
  std::vector<unsigned char> junk(200, 0xA5);
  const hsize_t offset[4] = {index, 0, 0, 0};
  ASSERT_GE(H5Dwrite_chunk(d, H5P_DEFAULT, 0, offset, junk.size(), junk.data()), 0);
  H5Dclose(d);
  H5Fclose(f);
}

// The command line of a 2-rank training, given the launcher's own arguments.
using Launch = std::vector<std::string> (*)(int, std::vector<std::string>);

void corrupt_rank1_sample_ends_the_job(Launch launch) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path out = tmp / "run";
  // No validation or test evaluation: rank 0 reads only its own training samples.
  const fs::path cfg = test::tiny_config(tmp.path(), data, out,
                                         "[dist]\ntimeout_s = 60\n");
  const int B = 8, m = 4, R = 2;
  std::vector<uint32_t> r0, r1;
  {
    io::DatasetFile ds(data);
    const auto split = ds.split("train");
    r0 = io::train_shard(split, 5, 0, B, m, R, 0);
    r1 = io::train_shard(split, 5, 0, B, m, R, 1);
  }
  ASSERT_FALSE(r1.empty());
  const uint32_t victim = r1.front();  // rank 1's first sample
  ASSERT_EQ(std::count(r0.begin(), r0.end(), victim), 0) << "rank 0 would read it too";
  corrupt_image_chunk(data, victim);

  const auto r = test::run_for(
      launch(R, {"train", cfg.string(), "data.val_split=\"\"", "data.test_split=\"\"", "--quiet"}),
      tmp / "train.log", 40);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_LT(r.seconds, 10.0) << "a rank failing alone must end the job within seconds\n" << r.output;
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("corrupt chunk " + std::to_string(victim)), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("another rank is dead"), std::string::npos) << r.output;
}

// `srun --mpi=pmix -n N crackseg ARGS...` (a fresh allocation on the private cluster).
std::vector<std::string> srun_crackseg(int ranks, std::vector<std::string> args) {
  std::vector<std::string> a{"srun", "--mpi=pmix", "-n", std::to_string(ranks), "--export=ALL,OMP_NUM_THREADS=1",
                             test::binary().string()};
  a.insert(a.end(), args.begin(), args.end());
  return a;
}

}  // namespace

TEST(FaultRankAbort, CorruptChunkOnRank1EndsTheTwoRankJobWithinSecondsNamingIt) {
  corrupt_rank1_sample_ends_the_job(&test::mpi_crackseg);
}

TEST(FaultRankAbort, UnderSrunToo) {
  test::LocalCluster cluster;
  corrupt_rank1_sample_ends_the_job(&srun_crackseg);
}
