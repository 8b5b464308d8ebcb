// ctest-labels: train data
// ctest-timeout: 600
// The patch CNN learns real cracks: CrackForest from ../shared/data (skipped when absent) is
// ingested, a context-padded patch CNN (dense whole-image evaluation) trains briefly on 6
// images and is scored on the 3 held-out test images. The floors sit far above chance (crack
// is ~1.6% of the pixels: F1 of "all crack" ~0.03, AP ~0.02) and below what this short run
// reaches (measured numbers in the assertions' comments), so a broken sampler, label window,
// vote or dense path fails.
#include <gtest/gtest.h>

#include "io/ingest/ingest.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/trainer.hpp"
#include "support/paths.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

namespace {

const char* kPatchCnn = R"(
[data]
train_split = "train"
val_split = ""
test_split = "test"
crop = 0
augment = false
patch_ratio = 3
max_train = 6
[model]
name = "patch_cnn"
h = 13
s = 2
padding = "context"
[loss]
name = "bce"
[optim]
name = "adam"
lr = 1e-3
[train]
epochs = 1
steps = 300
batch = 128
micro_batch = 128
seed = 126
log_every = 1000
)";

}  // namespace

TEST(PatchCnnReal, CrackForestBeatsFloorAfterShortRun) {
  const auto root = test::shared_data();
  if (root.empty() || !std::filesystem::is_directory(root / "cfd")) GTEST_SKIP() << "no ../shared/data/cfd";
  const auto dir = test::shared_tmpdir("cfd");
  io::IngestOptions o;
  o.dir = root / "cfd";
  o.out = dir / "cfd.h5";
  o.layout = io::Layout::cfd;
  o.split.fractions = {0.95, 0.025, 0.025};
  (void)io::ingest(o);
  const auto cfg = test::tiny_config(kPatchCnn, {"data.path=\"" + o.out.string() + "\"", "train.out=\"" + (dir / "run").string() + "\""});
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  const auto outcome = train::run_training(cfg, comm, {.resume = false, .quiet = true});
  const auto& m = outcome.result.at("metrics");
  // Threshold-free scores: after 300 steps the vote map is still timid (few pixels reach
  // 0.5; the best fixed threshold was 0.45), so F1 at 0.5 is not yet meaningful. Measured:
  // AP 0.556, ODS 0.583 (2026-11-22, one thread).
  EXPECT_GT(m.at("test_map").get<double>(), 0.3) << m.dump();
  EXPECT_GT(m.at("test_ods").get<double>(), 0.35) << m.dump();
  std::filesystem::remove_all(dir);
}
