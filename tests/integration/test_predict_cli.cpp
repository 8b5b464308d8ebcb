// ctest-labels: train
// ctest-timeout: 600
// `crackseg predict` end to end: a U-Net and a context-padded patch CNN train briefly on
// synthetic data, then predict photos of sizes the models were not trained on (not a
// multiple of anything). Checks the three PNGs per image (sizes, mask = probability >=
// threshold, overlay = photo where no crack), metrics when masks are given, the patch CNN's
// dense and per-patch modes giving the same map, and the errors for bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "io/dataset/dataset.hpp"
#include "io/image/image.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/trainer.hpp"
#include "support/cli.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace {

const char* kRun = R"(
[data]
crop = 0
augment = false
val_split = ""
[loss]
name = "bce"
[optim]
name = "adam"
lr = 3e-3
[train]
epochs = 100
batch = 8
micro_batch = 8
seed = 126
log_every = 1000
)";

// Writes the first `n` test images of `data` cropped to h x w as PNG photos and masks.
std::vector<fs::path> write_photos(const fs::path& data, const fs::path& dir, int n, int h, int w) {
  const io::DatasetFile file(data);
  const auto idx = file.split("test");
  std::vector<uint8_t> img(file.image_bytes()), mask(file.mask_bytes());
  fs::create_directories(dir / "photos");
  fs::create_directories(dir / "masks");
  std::vector<fs::path> out;
  for (int k = 0; k < n; ++k) {
    file.read_image(idx[static_cast<std::size_t>(k)], img.data());
    file.read_mask(idx[static_cast<std::size_t>(k)], mask.data());
    std::vector<uint8_t> ci(static_cast<std::size_t>(h) * w * 3), cm(static_cast<std::size_t>(h) * w);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        for (int c = 0; c < 3; ++c) ci[(y * w + x) * 3 + c] = img[(y * file.width() + x) * 3 + c];
        cm[y * w + x] = mask[y * file.width() + x];
      }
    const fs::path p = dir / "photos" / ("p" + std::to_string(k) + ".png");
    io::save_image_rgb(p, ci.data(), h, w);
    io::save_mask01(dir / "masks" / ("p" + std::to_string(k) + "_mask.png"), cm.data(), h, w);
    out.push_back(p);
  }
  return out;
}

fs::path train_model(const fs::path& data, const fs::path& out, const std::string& model_toml, int steps) {
  const auto cfg = test::tiny_config(std::string(kRun) + model_toml,
                                     {"data.path=\"" + data.string() + "\"", "train.out=\"" + out.string() + "\"",
                                      "train.steps=" + std::to_string(steps)});
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  (void)train::run_training(cfg, comm, {.resume = false, .quiet = true});
  return out / "checkpoint.h5";
}

std::string join(const std::vector<fs::path>& ps) {
  std::string s;
  for (const auto& p : ps) s += " " + p.string();
  return s;
}

}  // namespace

TEST(PredictCli, UnetWritesProbabilityMaskOverlayAndMetrics) {
  test::TempDir t;
  const auto data = test::make_synth(t.path(), 32, 64);
  const auto ckpt = train_model(data, t / "unet", "[model]\nname = \"unet\"\nbase = 4\ndepth = 2\n", 80);
  const auto photos = write_photos(data, t.path(), 2, 45, 61);
  const auto r = test::run_cli("predict --checkpoint " + ckpt.string() + join(photos) + " --out " + (t / "pred").string() +
                               " --mask-dir " + (t / "masks").string() + " --threshold 0.4");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("2 image(s) with masks: F1"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(t / "pred" / "metrics.json"));
  int crack = 0, background = 0;
  for (const auto& photo : photos) {
    const std::string base = (t / "pred" / photo.stem()).string();
    const cv::Mat prob = io::load_image_rgb(base + "_prob.png"), overlay = io::load_image_rgb(base + "_overlay.png");
    const cv::Mat mask = cv::imread(base + "_pred_mask.png", cv::IMREAD_GRAYSCALE) / 255, rgb = io::load_image_rgb(photo);
    ASSERT_EQ(prob.rows, 45);
    ASSERT_EQ(prob.cols, 61);
    ASSERT_EQ(mask.rows, 45);
    ASSERT_EQ(overlay.cols, 61);
    for (int y = 0; y < 45; ++y)
      for (int x = 0; x < 61; ++x) {
        const int g = prob.at<cv::Vec3b>(y, x)[0];
        // The gray level is round(255 p); the mask p >= 0.4 (102 = 0.4 x 255 sits on the edge).
        if (g != 102) {
          EXPECT_EQ(mask.at<uint8_t>(y, x), g > 102 ? 1 : 0) << x << "," << y;
        }
        (mask.at<uint8_t>(y, x) ? crack : background) += 1;
        if (!mask.at<uint8_t>(y, x)) {
          EXPECT_EQ(overlay.at<cv::Vec3b>(y, x), rgb.at<cv::Vec3b>(y, x)) << x << "," << y;
        }
      }
  }
  // After 80 steps the maps are not degenerate, so both checks above saw both kinds of pixel.
  EXPECT_GT(crack, 0);
  EXPECT_GT(background, 0);
}

TEST(PredictCli, PatchCnnDenseEqualsPerPatchAndBadInputIsNamed) {
  test::TempDir t;
  const auto data = test::make_synth(t.path(), 16, 48);
  const auto ckpt = train_model(data, t / "patch",
                                "[model]\nname = \"patch_cnn\"\nh = 13\ns = 2\npadding = \"context\"\n", 12);
  const auto photos = write_photos(data, t.path(), 1, 30, 41);
  std::string modes[2] = {"dense", "patch"};
  cv::Mat prob[2];
  for (int i = 0; i < 2; ++i) {
    const auto out = t / ("pred_" + modes[i]);
    const auto r = test::run_cli("predict --checkpoint " + ckpt.string() + join(photos) + " --out " + out.string() +
                                 " --patch-mode " + modes[i]);
    ASSERT_EQ(r.code, 0) << r.output;
    prob[i] = io::load_image_rgb(out / "p0_prob.png");
  }
  ASSERT_EQ(prob[0].rows, 30);
  ASSERT_EQ(prob[0].cols, 41);
  cv::Mat diff;
  cv::absdiff(prob[0], prob[1], diff);
  double worst = 0;
  cv::minMaxLoc(diff.reshape(1), nullptr, &worst);
  EXPECT_LE(worst, 1.0);  // the same probabilities to ~1e-7: at most one rounding step apart

  // Bad input: an unknown mode, a missing image, a non-image file.
  auto r = test::run_cli("predict --checkpoint " + ckpt.string() + join(photos) + " --out " + (t / "x").string() +
                         " --patch-mode sparse");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("sparse"), std::string::npos) << r.output;
  r = test::run_cli("predict --checkpoint " + ckpt.string() + " " + (t / "nope.png").string() + " --out " + (t / "x").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("nope.png"), std::string::npos) << r.output;
  std::ofstream(t / "junk.png") << "not a png";
  r = test::run_cli("predict --checkpoint " + ckpt.string() + " " + (t / "junk.png").string() + " --out " + (t / "x").string());
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("junk.png"), std::string::npos) << r.output;
}
