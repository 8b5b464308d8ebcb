// ctest-labels: integration
// ctest-timeout: 300
// `crackseg bench-predict` runs for every model family on a tiny size and prints one sane
// JSON object: the family, the path predict takes (whole image, tiles, dense / per-patch),
// positive ms/image and images/s that agree with each other, probabilities in [0, 1]. No
// timing is asserted (CI machines are shared).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli.hpp"

using namespace crackseg;

namespace {

nlohmann::json bench(const std::string& args) {
  const auto r = test::run_cli("bench-predict --json --repeat 1 " + args);
  EXPECT_EQ(r.code, 0) << args << "\n" << r.output;
  const auto brace = r.output.rfind("\n{");
  const auto start = brace == std::string::npos ? r.output.find('{') : brace + 1;
  if (start == std::string::npos) return nlohmann::json::object();
  const std::string line = r.output.substr(start);
  auto j = nlohmann::json::parse(line, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.output;
  return j.is_discarded() ? nlohmann::json::object() : j;
}

void expect_sane(const nlohmann::json& j, const std::string& family, int w, int h) {
  ASSERT_TRUE(j.contains("ms_per_image")) << j.dump();
  EXPECT_EQ(j["family"], family);
  EXPECT_EQ(j["width"], w);
  EXPECT_EQ(j["height"], h);
  const double ms = j["ms_per_image"].get<double>(), ips = j["images_per_s"].get<double>();
  EXPECT_GT(ms, 0);
  EXPECT_NEAR(ips * ms, 1000.0, 1e-6 * 1000.0);
}

}  // namespace

TEST(BenchPredict, WholeImageFamilies) {
  auto u = bench("--model unet base=4 depth=2 --width 30 --height 22");
  expect_sane(u, "unet", 30, 22);
  EXPECT_EQ(u["path"], "whole");
  EXPECT_GE(u["prob_min"].get<double>(), 0.0);
  EXPECT_LE(u["prob_max"].get<double>(), 1.0);
  auto f = bench("--model flex_unet layers=3 base=4 kernel=5 --size 26");
  expect_sane(f, "flex_unet", 26, 26);
  EXPECT_EQ(f["path"], "whole");
}

TEST(BenchPredict, TiledFamilies) {
  auto s = bench("--model spiral_net depths=[1,2] width=0.05 --tile 15 --width 40 --height 23");
  expect_sane(s, "spiral_net", 40, 23);
  EXPECT_EQ(s["path"], "tiled");
  EXPECT_EQ(s["tile"], 15);
  EXPECT_GE(s["prob_min"].get<double>(), 0.0);
  EXPECT_LE(s["prob_max"].get<double>(), 1.0);
  auto h = bench("--model hourglass_unet width=0.02 --tile 255 --width 270 --height 255");
  expect_sane(h, "hourglass_unet", 270, 255);
  EXPECT_EQ(h["path"], "tiled");
  // A tile the family cannot take is named.
  const auto bad = test::run_cli("bench-predict --json --model spiral_net depths=[1,2] width=0.05 --tile 16 --size 20");
  EXPECT_EQ(bad.code, 2) << bad.output;
}

TEST(BenchPredict, PatchCnnDenseAndPerPatch) {
  auto p = bench("--model patch_cnn --padding context --size 12 --mode both");
  expect_sane(p, "patch_cnn", 12, 12);
  EXPECT_GT(p["dense_s"].get<double>(), 0);
  EXPECT_GT(p["patch_s"].get<double>(), 0);
  EXPECT_LT(p["max_abs_diff"].get<double>(), 1e-4);  // the same function, up to rounding
  auto same = bench("--model patch_cnn --padding same --size 10 --mode patch");
  expect_sane(same, "patch_cnn", 10, 10);
}
