// ctest-labels: mpi train
// ctest-ranks: 4
// ctest-timeout: 600
// A recorded number is reproducible from the artefact it describes, at any rank count (issue
// 13 item 4): within one 4-rank job a U-Net with batchnorm trains on sub-communicators of 1, 2
// and 4 ranks, and the validation metrics result.json records (final.val for checkpoint.h5,
// best.val for best.h5) equal what `crackseg eval` computes from the saved checkpoint on the
// same ranks. Also: per-image rows (`eval --per-image`) are the same at 1, 2 and 4 ranks.
#include <gtest/gtest.h>

#include <fstream>

#include "src/dist/mpi_communicator.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/train_state.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

namespace {

const char* kUnet = R"(
[data]
crop = 32
augment = true
max_val = 5
[model]
name = "unet"
base = 4
depth = 2
dropout = 0.1
[loss]
name = "bce_dice"
[optim]
name = "adam"
lr = 3e-3
[train]
epochs = 3
batch = 4
micro_batch = 1
seed = 5
log_every = 1000
best_metric = "f1"
[eval]
bins = 16
threshold = 0.5
)";

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Every float metric of `recorded` equals the re-evaluated one; per-source entries too.
void expect_same_metrics(const nlohmann::json& recorded, const nlohmann::json& again, const std::string& what) {
  ASSERT_TRUE(recorded.is_object()) << what;
  for (auto it = recorded.begin(); it != recorded.end(); ++it) {
    if (!it->is_number()) continue;
    ASSERT_TRUE(again.contains(it.key())) << what << " " << it.key();
    EXPECT_EQ(it->dump(), again[it.key()].dump()) << what << ": " << it.key();
  }
}

}  // namespace

TEST(RecordsRanks, RecordedValidationEqualsReEvaluationAt1_2_4Ranks) {
  const auto dir = test::shared_tmpdir("recorded");
  const auto data = test::make_synth(dir, 24, 48);
  std::vector<std::vector<train::ImageRow>> rows_at;
  for (const int n : {1, 2, 4}) {
    const auto out = dir / ("r" + std::to_string(n));
    test::SubComm sub(n);
    if (sub.member()) {
      const auto cfg = test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"", "train.out=\"" + out.string() + "\""});
      dist::MpiCommunicator comm(sub.get(), 120.0);
      (void)train::run_training(cfg, comm, {.resume = false, .quiet = true});
      comm.barrier();
      std::ifstream f(out / "result.json");
      const auto result = nlohmann::json::parse(f);
      // What `crackseg eval --checkpoint X --split val` computes on these n ranks.
      for (const auto& [file, part] : {std::pair{"checkpoint.h5", "final"}, std::pair{"best.h5", "best"}}) {
        auto loaded = train::load_model_from_checkpoint(out / file, "onednn");
        const auto& c = loaded.cfg.values;
        const auto ev = train::evaluate_split(c, *loaded.model, comm, "val", c["data"]["max_val"].get<int64_t>());
        expect_same_metrics(result[part]["val"], ev.summary, std::to_string(n) + " ranks, " + file);
        if (std::string(file) == "checkpoint.h5") {
          const auto te = train::evaluate_split(c, *loaded.model, comm, "test", 0);
          expect_same_metrics(result["final"]["test"], te.summary, std::to_string(n) + " ranks, test");
        }
      }
      // Per-image rows of one checkpoint (the 1-rank run's) on n ranks.
      auto loaded = train::load_model_from_checkpoint(dir / "r1" / "checkpoint.h5", "onednn");
      const auto ev = train::evaluate_split(loaded.cfg.values, *loaded.model, comm, "test", 0);
      if (world_rank() == 0) rows_at.push_back(ev.per_image);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  if (world_rank() == 0) {
    ASSERT_EQ(rows_at.size(), 3u);
    ASSERT_FALSE(rows_at[0].empty());
    for (std::size_t k = 1; k < rows_at.size(); ++k) {
      ASSERT_EQ(rows_at[k].size(), rows_at[0].size());
      for (std::size_t i = 0; i < rows_at[0].size(); ++i) {
        const auto &a = rows_at[0][i], &b = rows_at[k][i];
        EXPECT_EQ(a.name, b.name);
        EXPECT_EQ(a.source, b.source);
        EXPECT_EQ(a.scores.counts, b.scores.counts) << a.name;
        EXPECT_EQ(a.scores.scores.f1, b.scores.scores.f1) << a.name;
        EXPECT_EQ(a.scores.ap, b.scores.ap) << a.name;
      }
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) std::filesystem::remove_all(dir);
}
