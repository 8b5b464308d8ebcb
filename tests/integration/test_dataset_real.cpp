// ctest-labels: data hdf5
// ctest-link: crackseg_io
// Ingest of the real folders in ../shared/data (CrackForest, masonry, ceramic): counts, sizes,
// sources and crack-pixel fractions, the fractions recomputed here independently from the
// original files. Skips when the data is absent.
#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "io/dataset/dataset.hpp"
#include "io/ingest/ingest.hpp"
#include "tests/support/paths.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace {

fs::path data_dir(const std::string& name) {
  const fs::path root = test::shared_data();
  if (root.empty() || !fs::is_directory(root / name)) return {};
  return root / name;
}

io::IngestResult ingest_to(const fs::path& dir, const fs::path& out, io::Layout layout) {
  io::IngestOptions o;
  o.dir = dir;
  o.out = out;
  o.layout = layout;
  return io::ingest(o);
}

// Stored per-split fractions weighted by split size give back the overall fraction.
void expect_split_fractions_consistent(const io::DatasetFile& f, double overall) {
  double weighted = 0;
  uint32_t n = 0;
  for (const char* s : io::kSplitNames) {
    const auto idx = f.split(s);
    weighted += f.crack_fraction(s) * double(idx.size());
    n += static_cast<uint32_t>(idx.size());
  }
  EXPECT_EQ(n, f.count());
  EXPECT_NEAR(weighted / n, overall, 1e-12);
}

std::vector<uint8_t> rgb_bytes(const fs::path& p) {
  cv::Mat bgr = cv::imread(p.string(), cv::IMREAD_COLOR), rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return std::vector<uint8_t>(rgb.datastart, rgb.dataend);
}

}  // namespace

TEST(RealData, CrackForestSegmentOne) {
  const fs::path dir = data_dir("cfd");
  if (dir.empty()) GTEST_SKIP() << "no ../shared/data/cfd";
  test::TempDir t;
  const auto res = ingest_to(dir, t / "cfd.h5", io::Layout::cfd);
  // Independent count: runs of segment 1 in every .seg file.
  uint64_t crack = 0;
  for (const auto& e : fs::directory_iterator(dir / "seg")) {
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line) && line.rfind("data", 0) != 0) {
    }
    long s, r, c0, c1;
    while (in >> s >> r >> c0 >> c1)
      if (s == 1) crack += static_cast<uint64_t>(c1 - c0 + 1);
  }
  const double expected = double(crack) / (118.0 * 480 * 320);
  EXPECT_EQ(res.written, 118u);
  EXPECT_TRUE(res.skipped.empty());
  EXPECT_DOUBLE_EQ(res.crack_fraction, expected);
  EXPECT_GT(expected, 0.01);  // the README says "about 1.2%"; segment 1 alone is 1.6%
  EXPECT_LT(expected, 0.02);
  io::DatasetFile f(t / "cfd.h5");
  EXPECT_EQ(f.count(), 118u);
  EXPECT_EQ(f.width(), 480);
  EXPECT_EQ(f.height(), 320);
  EXPECT_EQ(f.names()[0], "001.jpg");
  EXPECT_EQ(f.sources()[0], "cfd");
  expect_split_fractions_consistent(f, expected);
  std::vector<uint8_t> img(f.image_bytes());
  f.read_image(0, img.data());
  EXPECT_EQ(img, rgb_bytes(dir / "image/001.jpg"));
}

TEST(RealData, MasonryPairs) {
  const fs::path dir = data_dir("masonry");
  if (dir.empty()) GTEST_SKIP() << "no ../shared/data/masonry";
  test::TempDir t;
  const auto res = ingest_to(dir, t / "m.h5", io::Layout::pairs);
  uint64_t crack = 0;
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir / "masks")) {
    const cv::Mat m = cv::imread(e.path().string(), cv::IMREAD_GRAYSCALE);
    ASSERT_EQ(m.rows, 224);
    crack += static_cast<uint64_t>(cv::countNonZero(m > 127));
    ++n;
  }
  EXPECT_EQ(n, 240u);
  EXPECT_EQ(res.written, 240u);
  EXPECT_EQ(res.per_source.at("masonry"), 240u);
  EXPECT_DOUBLE_EQ(res.crack_fraction, double(crack) / (240.0 * 224 * 224));
  io::DatasetFile f(t / "m.h5");
  EXPECT_EQ(f.count(), 240u);
  EXPECT_EQ(f.height(), 224);
  EXPECT_EQ(f.width(), 224);
  expect_split_fractions_consistent(f, res.crack_fraction);
  // Stratified 0.8/0.1/0.1 of one source: 192 / 24 / 24.
  EXPECT_EQ(f.split("train").size(), 192u);
  EXPECT_EQ(f.split("val").size(), 24u);
  EXPECT_EQ(f.split("test").size(), 24u);
}

TEST(RealData, CeramicRgbaImagesAndSoftRgbMasks) {
  const fs::path dir = data_dir("ceramic");
  if (dir.empty()) GTEST_SKIP() << "no ../shared/data/ceramic";
  test::TempDir t;
  const auto res = ingest_to(dir, t / "c.h5", io::Layout::pairs);
  uint64_t crack = 0;
  for (const auto& e : fs::directory_iterator(dir / "masks")) {
    const cv::Mat m = cv::imread(e.path().string(), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(m.rows, 256);
    std::vector<cv::Mat> ch;
    cv::split(m, ch);
    ASSERT_GE(ch.size(), 3u);
    // Grey stored as RGB: the channels agree, so "value > 127" is unambiguous.
    ASSERT_EQ(cv::countNonZero(ch[0] != ch[1]) + cv::countNonZero(ch[0] != ch[2]), 0) << e.path();
    crack += static_cast<uint64_t>(cv::countNonZero(ch[0] > 127));
  }
  EXPECT_EQ(res.written, 100u);
  EXPECT_DOUBLE_EQ(res.crack_fraction, double(crack) / (100.0 * 256 * 256));
  io::DatasetFile f(t / "c.h5");
  EXPECT_EQ(f.height(), 256);
  expect_split_fractions_consistent(f, res.crack_fraction);
  // An image with transparency keeps its colour channels untouched.
  int checked = 0;
  std::vector<uint8_t> img(f.image_bytes());
  for (uint32_t i = 0; i < f.count() && checked == 0; ++i) {
    const cv::Mat rgba = cv::imread((dir / "images" / f.names()[i]).string(), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(rgba.channels(), 4);
    std::vector<cv::Mat> ch;
    cv::split(rgba, ch);
    double min_alpha = 0;
    cv::minMaxLoc(ch[3], &min_alpha);
    if (min_alpha == 255) continue;
    cv::Mat rgb;
    cv::cvtColor(rgba, rgb, cv::COLOR_BGRA2RGB);
    f.read_image(i, img.data());
    EXPECT_EQ(img, std::vector<uint8_t>(rgb.datastart, rgb.dataend)) << f.names()[i];
    ++checked;
  }
  EXPECT_EQ(checked, 1);
}
