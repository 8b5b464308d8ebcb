// ctest-labels: train
// ctest-timeout: 600
// End to end on one rank: a small U-Net on a small synthetic set learns (validation F1 far
// above chance); divergence stops the run with a message naming the step and the last good
// checkpoint, which stays intact; result.json carries provenance and metrics.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "io/dataset/dataset.hpp"
#include "io/image/image.hpp"
#include "io/image/prediction.hpp"
#include "src/checkpoint/checkpoint.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/inference.hpp"
#include "src/train/trainer.hpp"
#include "support/paths.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

namespace {

const char* kUnet = R"(
[data]
crop = 0
augment = true
[model]
name = "unet"
base = 8
depth = 3
dropout = 0.0
[loss]
name = "bce_dice"
[optim]
name = "adam"
lr = 5e-3
[train]
epochs = 12
batch = 8
micro_batch = 4
seed = 126
log_every = 1000
val_every = 4
)";

}  // namespace

TEST(TrainLearns, UnetOnSyntheticReachesHighValidationF1) {
  const auto dir = test::shared_tmpdir("learn");
  const auto data = test::make_synth(dir, 96, 64);
  const auto cfg = test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"", "train.out=\"" + (dir / "run").string() + "\""});
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  const auto outcome = train::run_training(cfg, comm, {.resume = false, .quiet = true});
  const auto& r = outcome.result;
  // Chance level: predicting crack everywhere gives F1 ~ 2 f / (1 + f) ~ 0.06 at f ~ 3%.
  const double f1 = r.at("metrics").at("val_f1").get<double>();
  EXPECT_GT(f1, 0.6) << r.at("metrics").dump();
  EXPECT_GT(r.at("metrics").at("test_f1").get<double>(), 0.5);
  // Provenance.
  std::ifstream f(dir / "run" / "result.json");
  const auto j = nlohmann::json::parse(f);
  for (const char* k : {"config", "config_hash", "versions", "world_size", "seed", "determinism", "dataset", "timings"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["config_hash"].get<std::string>(), cfg.hash);
  EXPECT_EQ(j["dataset"]["checksum"].get<std::string>(), train::file_checksum(data));
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "metrics.csv"));
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "best.h5"));
  // `crackseg info` describes the checkpoint; `info --devices` answers without a GPU.
  const std::string cmd = test::binary().string() + " info " + (dir / "run" / "checkpoint.h5").string() + " 2>&1";
  std::string text;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (fgets(buf, sizeof buf, p)) text += buf;
    EXPECT_EQ(pclose(p), 0) << text;
  }
  EXPECT_NE(text.find("crackseg checkpoint"), std::string::npos) << text;
  EXPECT_NE(text.find(cfg.hash), std::string::npos) << text;
  EXPECT_NE(text.find("\"unet\""), std::string::npos) << text;
  std::filesystem::remove_all(dir);
}

TEST(TrainLearns, PredictImagesWritesOnePanelPerImageAndEpoch) {
  const auto dir = test::shared_tmpdir("panels");
  const auto data = test::make_synth(dir, 24, 64);
  const auto out = dir / "run";
  const auto cfg = test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"", "train.out=\"" + out.string() + "\"",
                                             "train.epochs=2", "train.val_every=1", "train.predict_images=2"});
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  (void)train::run_training(cfg, comm, {.resume = false, .quiet = true});
  const io::DatasetFile file(data);
  const auto val = file.split("val");
  ASSERT_GE(val.size(), 2u);
  std::vector<uint8_t> img(file.image_bytes()), mask(file.mask_bytes());
  cv::Mat prob_panel[2];
  for (int epoch = 1; epoch <= 2; ++epoch)
    for (int k = 0; k < 2; ++k) {
      const auto path = out / "predictions" / ("val_" + std::to_string(k) + "_epoch00" + std::to_string(epoch) + ".png");
      ASSERT_TRUE(std::filesystem::exists(path)) << path;
      const cv::Mat panel = io::load_image_rgb(path);
      ASSERT_EQ(panel.rows, 64 + io::panel_label_height(64));  // panels, then their labels
      ASSERT_EQ(panel.cols, 4 * 64);
      file.read_image(val[static_cast<std::size_t>(k)], img.data());
      file.read_mask(val[static_cast<std::size_t>(k)], mask.data());
      for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x) {
          const uint8_t* row = panel.ptr<uint8_t>(y);
          for (int c = 0; c < 3; ++c) ASSERT_EQ(row[x * 3 + c], img[(y * 64 + x) * 3 + c]) << "photo panel at " << x << "," << y;
          ASSERT_EQ(row[(64 + x) * 3], mask[y * 64 + x] ? 255 : 0) << "ground-truth panel at " << x << "," << y;
        }
      if (k == 0) prob_panel[epoch - 1] = panel.colRange(128, 192).clone();
    }
  EXPECT_FALSE(std::filesystem::exists(out / "predictions" / "val_2_epoch001.png"));
  // The probability panel changes as the network trains.
  EXPECT_GT(cv::norm(prob_panel[0], prob_panel[1], cv::NORM_L1), 0.0);
  // The last epoch's probability panel is the trained model's prediction: the final
  // checkpoint (same weights) through the Predictor gives the same gray levels.
  auto loaded = train::load_model_from_checkpoint(out / "checkpoint.h5", "onednn");
  train::Predictor predictor(*loaded.model, train::inference_options(cfg.values));
  file.read_image(val[0], img.data());
  std::vector<float> x(img.begin(), img.end());
  for (auto& v : x) v /= 255.0f;
  const std::vector<float> p = predictor.predict(x.data(), 64, 64);
  for (int y = 0; y < 64; ++y)
    for (int xx = 0; xx < 64; ++xx) {
      const int want = static_cast<int>(std::lround(std::clamp(p[y * 64 + xx], 0.0f, 1.0f) * 255.0f));
      ASSERT_LE(std::abs(prob_panel[1].at<cv::Vec3b>(y, xx)[0] - want), 1) << "probability panel at " << xx << "," << y;
    }
  std::filesystem::remove_all(dir);
}

TEST(TrainLearns, DivergenceStopsWithStepAndLastGoodCheckpoint) {
  const auto dir = test::shared_tmpdir("diverge");
  const auto data = test::make_synth(dir, 24, 32);
  const auto out = dir / "run";
  // SGD with an absurd learning rate (1e8) overflows within a few steps; a checkpoint every step.
  const auto cfg = test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"", "train.out=\"" + out.string() + "\"",
                                             "optim.name=\"sgd\"", "optim.lr=1e8", "train.checkpoint_every=1"});
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  try {
    (void)train::run_training(cfg, comm, {.resume = false, .quiet = true});
    FAIL() << "training with lr=1e8 did not diverge";
  } catch (const train::DivergedError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("step"), std::string::npos) << msg;
    // The first step's loss is finite, so its update lands and is checkpointed; the blow-up
    // comes after it, and the message must point at that checkpoint.
    ASSERT_TRUE(std::filesystem::exists(out / "checkpoint.h5")) << msg;
    EXPECT_NE(msg.find((out / "checkpoint.h5").string()), std::string::npos) << msg;
    // The last good checkpoint is intact and finite.
    auto loaded = train::load_model_from_checkpoint(out / "checkpoint.h5", "onednn");
    for (const Param* p : loaded.model->graph.params())
      for (float v : p->value.span<float>()) ASSERT_TRUE(std::isfinite(v)) << p->name;
  }
  EXPECT_FALSE(std::filesystem::exists(out / "result.json"));
  std::filesystem::remove_all(dir);
}

// The communication benchmark runs and its sums are exact (a 1-rank job here; test_dist covers
// the collectives at 2 and 4 ranks).
TEST(TrainLearns, BenchAllreduceReportsExactSums) {
  const std::string cmd = test::binary().string() + " bench-allreduce --json --budget 0.01 --max-mb 1 2>/dev/null";
  std::string text;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (fgets(buf, sizeof buf, p)) text += buf;
    ASSERT_EQ(pclose(p), 0) << text;
  }
  const auto j = nlohmann::json::parse(text);
  EXPECT_GT(j.at("memcpy_GBps").get<double>(), 0.0);
  ASSERT_GE(j.at("allreduce").size(), 4u);
  for (const auto& r : j.at("allreduce")) EXPECT_TRUE(r.at("correct").get<bool>()) << r.dump();
}
