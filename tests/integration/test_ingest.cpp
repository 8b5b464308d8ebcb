// ctest-labels: hdf5 integration
// ctest-link: crackseg_io
// Ingestion: every layout round-trips through HDF5 (small folders made here with OpenCV), each
// bad-input case is reported by file name or skipped with --skip-bad, and no output is left
// behind when ingestion fails.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "io/dataset/dataset.hpp"
#include "io/image/image.hpp"
#include "io/ingest/ingest.hpp"
#include "io/ingest/interrupt.hpp"
#include "src/core/rng.hpp"
#include "tests/support/paths.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace {

// A random BGR photo and a 0/255 mask of the same size.
cv::Mat random_bgr(int h, int w, uint64_t seed) {
  cv::Mat m(h, w, CV_8UC3);
  SampleRng r(seed, 0, 0, Purpose::noise);
  for (auto it = m.begin<cv::Vec3b>(); it != m.end<cv::Vec3b>(); ++it)
    *it = cv::Vec3b(static_cast<uint8_t>(r.below(256)), static_cast<uint8_t>(r.below(256)), static_cast<uint8_t>(r.below(256)));
  return m;
}
cv::Mat random_mask255(int h, int w, uint64_t seed) {
  cv::Mat m(h, w, CV_8U);
  SampleRng r(seed, 0, 1, Purpose::noise);
  for (auto it = m.begin<uint8_t>(); it != m.end<uint8_t>(); ++it) *it = r.bernoulli(0.2f) ? 255 : 0;
  return m;
}
void write(const fs::path& p, const cv::Mat& m, const std::vector<int>& params = {}) {
  fs::create_directories(p.parent_path());
  ASSERT_TRUE(cv::imwrite(p.string(), m, params)) << p;
}
std::vector<uint8_t> bytes_of(const cv::Mat& m) { return std::vector<uint8_t>(m.datastart, m.dataend); }
cv::Mat to_rgb(const cv::Mat& bgr) {
  cv::Mat out;
  cv::cvtColor(bgr, out, cv::COLOR_BGR2RGB);
  return out;
}
cv::Mat to01(const cv::Mat& m255) { return m255 / 255; }

struct Read {
  std::vector<uint8_t> image, mask;
};
Read read(const io::DatasetFile& f, const std::string& name) {
  const auto& n = f.names();
  const auto it = std::find(n.begin(), n.end(), name);
  EXPECT_NE(it, n.end()) << name;
  if (it == n.end()) return {};
  Read r{std::vector<uint8_t>(f.image_bytes()), std::vector<uint8_t>(f.mask_bytes())};
  f.read_image(static_cast<uint32_t>(it - n.begin()), r.image.data());
  f.read_mask(static_cast<uint32_t>(it - n.begin()), r.mask.data());
  return r;
}

io::IngestOptions options(const fs::path& dir, const fs::path& out, io::Layout layout) {
  io::IngestOptions o;
  o.dir = dir;
  o.out = out;
  o.layout = layout;
  o.threads = 2;
  return o;
}

// Expects ingest to fail with an InputError whose text contains `needle`, leaving no output.
void expect_fails_naming(const io::IngestOptions& o, const std::string& needle) {
  try {
    (void)io::ingest(o);
    ADD_FAILURE() << "ingest accepted bad input, expected an error naming " << needle;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out));
  for (const auto& e : fs::directory_iterator(o.out.parent_path()))
    EXPECT_EQ(e.path().filename().string().find(o.out.filename().string() + ".tmp"), std::string::npos) << e.path();
}

}  // namespace

TEST(IngestPairs, EveryMaskEncodingRoundTrips) {
  test::TempDir t;
  const fs::path d = t / "walls";
  const int h = 24, w = 32;
  // a: RGB png + 8-bit gray mask in masks/.
  const cv::Mat a = random_bgr(h, w, 1), am = random_mask255(h, w, 1);
  write(d / "images/a.png", a);
  write(d / "masks/a.png", am);
  // b: gray image + 1-bit PNG mask named b_mask.png.
  cv::Mat b;
  cv::cvtColor(random_bgr(h, w, 2), b, cv::COLOR_BGR2GRAY);
  const cv::Mat bm = random_mask255(h, w, 2);
  write(d / "images/b.png", b);
  write(d / "masks/b_mask.png", bm, {cv::IMWRITE_PNG_BILEVEL, 1});
  // c: RGBA image (alpha must be ignored) + RGB soft mask: crack = value > 127.
  cv::Mat c = random_bgr(h, w, 3), ca;
  cv::cvtColor(c, ca, cv::COLOR_BGR2BGRA);
  for (int y = 0; y < h; ++y) ca.at<cv::Vec4b>(y, 0)[3] = 0;
  write(d / "images/c.png", ca);
  cv::Mat soft(h, w, CV_8U);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) soft.at<uint8_t>(y, x) = static_cast<uint8_t>((x * 8 + y) % 256);
  cv::Mat soft_rgb;
  cv::cvtColor(soft, soft_rgb, cv::COLOR_GRAY2BGR);
  write(d / "masks/c.png", soft_rgb);
  // d: RGBA mask beside the image (images/d_mask.png), opaque.
  const cv::Mat dimg = random_bgr(h, w, 4), dm = random_mask255(h, w, 4);
  cv::Mat dm_rgba;
  cv::cvtColor(dm, dm_rgba, cv::COLOR_GRAY2BGRA);
  write(d / "images/d.png", dimg);
  write(d / "images/d_mask.png", dm_rgba);

  const auto out = t / "pairs.h5";
  const auto res = io::ingest(options(d, out, io::Layout::pairs));
  EXPECT_EQ(res.written, 4u);
  EXPECT_TRUE(res.skipped.empty());
  io::DatasetFile f(out);
  ASSERT_EQ(f.count(), 4u);
  EXPECT_EQ(f.height(), h);
  EXPECT_EQ(f.width(), w);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a.png", "b.png", "c.png", "d.png"}));
  for (const auto& s : f.sources()) EXPECT_EQ(s, "walls");
  auto ra = read(f, "a.png");
  EXPECT_EQ(ra.image, bytes_of(to_rgb(a)));
  EXPECT_EQ(ra.mask, bytes_of(to01(am)));
  auto rb = read(f, "b.png");
  cv::Mat b_rgb;
  cv::cvtColor(b, b_rgb, cv::COLOR_GRAY2RGB);
  EXPECT_EQ(rb.image, bytes_of(b_rgb));
  EXPECT_EQ(rb.mask, bytes_of(to01(bm)));
  auto rc = read(f, "c.png");
  EXPECT_EQ(rc.image, bytes_of(to_rgb(c)));
  cv::Mat soft01 = soft > 127;
  EXPECT_EQ(rc.mask, bytes_of(to01(soft01)));
  auto rd = read(f, "d.png");
  EXPECT_EQ(rd.image, bytes_of(to_rgb(dimg)));
  EXPECT_EQ(rd.mask, bytes_of(to01(dm)));
}

TEST(IngestCrackSeg9k, SourceFromPrefixAndResize) {
  test::TempDir t;
  const fs::path d = t / "c9k";
  std::map<std::string, cv::Mat> imgs, masks;
  int k = 0;
  for (std::string name : {"CFD_001", "CFD_002", "Volker_7", "Rissbilder_for_Florian_9"}) {
    const int h = 30 + 2 * k, w = 40 - k;  // different sizes: --size makes them one
    imgs[name] = random_bgr(h, w, 10 + k);
    masks[name] = random_mask255(h, w, 10 + k);
    write(d / "images" / (name + ".jpg"), imgs[name]);
    write(d / "masks" / (name + ".png"), masks[name]);
    ++k;
  }
  auto o = options(d, t / "c9k.h5", io::Layout::crackseg9k);
  o.height = 20;
  o.width = 25;
  const auto res = io::ingest(o);
  EXPECT_EQ(res.written, 4u);
  EXPECT_EQ(res.per_source.at("CFD"), 2u);
  EXPECT_EQ(res.per_source.at("Volker"), 1u);
  EXPECT_EQ(res.per_source.at("Rissbilder"), 1u);
  io::DatasetFile f(o.out);
  EXPECT_EQ(f.height(), 20);
  EXPECT_EQ(f.width(), 25);
  for (uint32_t i = 0; i < f.count(); ++i) {
    const std::string stem = fs::path(f.names()[i]).stem().string();
    EXPECT_EQ(f.sources()[i], stem.substr(0, stem.find('_')));
    // Image: area interpolation of the decoded JPEG; mask: nearest neighbour, still 0/1.
    cv::Mat decoded = cv::imread((d / "images" / f.names()[i]).string(), cv::IMREAD_COLOR), small, msmall;
    cv::resize(to_rgb(decoded), small, cv::Size(25, 20), 0, 0, cv::INTER_AREA);
    cv::resize(to01(masks[stem]), msmall, cv::Size(25, 20), 0, 0, cv::INTER_NEAREST);
    auto r = read(f, f.names()[i]);
    EXPECT_EQ(r.image, bytes_of(small)) << f.names()[i];
    EXPECT_EQ(r.mask, bytes_of(msmall)) << f.names()[i];
  }
}

TEST(IngestCfd, SegmentOneIsCrackByDefaultAndMoreSegmentsOnRequest) {
  test::TempDir t;
  const fs::path d = t / "cfd";
  const int h = 6, w = 8;
  write(d / "image/001.jpg", random_bgr(h, w, 5));
  {
    fs::create_directories(d / "seg");
    std::ofstream s(d / "seg/001.seg");
    s << "format ascii cr\nwidth " << w << "\nheight " << h << "\nsegments 4\ninvert 0\nflipflop 0\ndata\n";
    // Row r: cols 0-1 segment 0, 2-3 segment 1, 4-5 segment 2, 6-7 segment 3.
    for (int r = 0; r < h; ++r)
      s << "0 " << r << " 0 1\n1 " << r << " 2 3\n2 " << r << " 4 5\n3 " << r << " 6 7\n";
  }
  auto o = options(d, t / "cfd.h5", io::Layout::cfd);
  (void)io::ingest(o);
  io::DatasetFile f(o.out);
  ASSERT_EQ(f.count(), 1u);
  EXPECT_EQ(f.sources()[0], "cfd");
  auto r = read(f, "001.jpg");
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) EXPECT_EQ(r.mask[size_t(y) * w + x], (x == 2 || x == 3) ? 1 : 0);
  o.cfd_segments = {1, 3};
  o.out = t / "cfd13.h5";
  (void)io::ingest(o);
  r = read(io::DatasetFile(o.out), "001.jpg");
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) EXPECT_EQ(r.mask[size_t(y) * w + x], (x == 2 || x == 3 || x >= 6) ? 1 : 0);
}

class BadInput : public ::testing::Test {
 protected:
  // Two good pairs; each test adds one bad item.
  void SetUp() override {
    for (std::string n : {"good1", "good2"}) {
      write(dir() / "images" / (n + ".png"), random_bgr(16, 16, n.size() + n.back()));
      write(dir() / "masks" / (n + ".png"), random_mask255(16, 16, n.back()));
    }
  }
  fs::path dir() const { return t_ / "in"; }
  fs::path out() const { return t_ / "out.h5"; }
  // Fails naming `needle`; with --skip-bad writes the two good pairs and lists `skipped`.
  void check(const std::string& needle, const std::string& skipped) {
    auto o = options(dir(), out(), io::Layout::pairs);
    expect_fails_naming(o, needle);
    o.skip_bad = true;
    const auto res = io::ingest(o);
    EXPECT_EQ(res.written, 2u);
    ASSERT_EQ(res.skipped.size(), 1u);
    EXPECT_EQ(res.skipped[0].first, skipped);
    EXPECT_NE(res.skipped[0].second.find(needle), std::string::npos) << res.skipped[0].second;
    EXPECT_EQ(io::DatasetFile(out()).count(), 2u);
  }
  test::TempDir t_;
};

TEST_F(BadInput, UnreadableImage) {
  { std::ofstream(dir() / "images/junk.png") << "this is not a png"; }
  write(dir() / "masks/junk.png", random_mask255(16, 16, 1));
  check("images/junk.png", "images/junk.png");
}

TEST_F(BadInput, TruncatedJpeg) {
  const fs::path full = t_ / "full.jpg";
  write(full, random_bgr(16, 16, 3));
  std::ifstream in(full, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(dir() / "images/cut.jpg", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  write(dir() / "masks/cut.png", random_mask255(16, 16, 1));
  check("truncated", "images/cut.jpg");
}

TEST_F(BadInput, TruncatedPngMask) {
  write(dir() / "images/m.png", random_bgr(16, 16, 3));
  write(t_ / "full.png", random_mask255(16, 16, 3));
  std::ifstream in(t_ / "full.png", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(dir() / "masks/m.png", std::ios::binary) << bytes.substr(0, bytes.size() - 20);
  check("masks/m.png", "images/m.png");
}

TEST_F(BadInput, MissingMask) {
  write(dir() / "images/lonely.png", random_bgr(16, 16, 3));
  check("missing mask for images/lonely.png", "images/lonely.png");
}

TEST_F(BadInput, SizeMismatchBetweenImageAndMask) {
  write(dir() / "images/odd.png", random_bgr(16, 16, 3));
  write(dir() / "masks/odd.png", random_mask255(16, 12, 3));
  check("size mismatch: images/odd.png is 16x16 but its mask masks/odd.png is 12x16", "images/odd.png");
}

TEST_F(BadInput, ImagesOfDifferentSizesWithoutResize) {
  write(dir() / "images/wide.png", random_bgr(16, 20, 3));
  write(dir() / "masks/wide.png", random_mask255(16, 20, 3));
  check("images/wide.png is 20x16", "images/wide.png");
}

TEST_F(BadInput, MaskWithNoUsableValues) {
  write(dir() / "images/blank.png", random_bgr(16, 16, 3));
  write(dir() / "masks/blank.png", cv::Mat(16, 16, CV_8U, cv::Scalar(255)));
  check("masks/blank.png has no usable values", "images/blank.png");
}

TEST_F(BadInput, TransparentRgbaMask) {
  write(dir() / "images/clear.png", random_bgr(16, 16, 3));
  write(dir() / "masks/clear.png", cv::Mat(16, 16, CV_8UC4, cv::Scalar(255, 255, 255, 0)));
  check("masks/clear.png has no usable values", "images/clear.png");
}

TEST_F(BadInput, DuplicateNames) {
  write(dir() / "images/good1.jpg", random_bgr(16, 16, 3));
  auto o = options(dir(), out(), io::Layout::pairs);
  expect_fails_naming(o, "duplicate name 'good1': images/good1.jpg images/good1.png");
  o.skip_bad = true;
  const auto res = io::ingest(o);
  EXPECT_EQ(res.written, 1u);
  EXPECT_EQ(res.skipped.size(), 2u);
}

TEST_F(BadInput, SymlinkLoopIsABadFileNotTheEndOfTheIngest) {
  fs::create_symlink("loop.png", dir() / "images/loop.png");  // ELOOP on every stat
  write(dir() / "masks/loop.png", random_mask255(16, 16, 9));
  check("images/loop.png", "images/loop.png");
}

TEST_F(BadInput, EmptyFolderIsAnErrorEvenWithSkipBad) {
  fs::create_directories(t_ / "empty/images");
  auto o = options(t_ / "empty", out(), io::Layout::pairs);
  expect_fails_naming(o, "empty/images (empty folder)");
  o.skip_bad = true;
  expect_fails_naming(o, "empty/images (empty folder)");
  expect_fails_naming(options(t_ / "nowhere", out(), io::Layout::pairs), "nowhere does not exist");
  expect_fails_naming(options(dir(), out(), io::Layout::cfd), "has no image/ folder");
}

TEST(IngestCfd, TruncatedOrBrokenSegFilesAreNamed) {
  test::TempDir t;
  const fs::path d = t / "cfd";
  write(d / "image/001.jpg", random_bgr(4, 4, 1));
  fs::create_directories(d / "seg");
  { std::ofstream(d / "seg/001.seg") << "width 4\nheight 4\ndata\n0 0 0 3\n0 1 0 3\n"; }
  auto o = options(d, t / "x.h5", io::Layout::cfd);
  expect_fails_naming(o, "001.seg: runs cover 8 of 16 pixels");
  { std::ofstream(d / "seg/001.seg") << "width 4\nheight 4\ndata\n0 0 0 3\n0 1 0 9\n"; }
  expect_fails_naming(o, "001.seg:5: bad run");
  { std::ofstream(d / "seg/001.seg") << "width 4\nheight 4\n"; }
  expect_fails_naming(o, "001.seg: no 'data' line");
  fs::remove(d / "seg/001.seg");
  expect_fails_naming(o, "missing mask for image/001.jpg");
}

TEST_F(BadInput, MissingOutputFolderIsNotABadInputFile) {
  auto o = options(dir(), t_ / "nofolder/out.h5", io::Layout::pairs);
  o.skip_bad = true;
  try {
    (void)io::ingest(o);
    FAIL() << "wrote into a missing folder";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("output folder " + (t_ / "nofolder").string() + " does not exist"),
              std::string::npos)
        << e.what();
  }
}

TEST(IngestInterrupt, SigintMidIngestLeavesNoOutput) {
  test::TempDir t;
  for (int i = 0; i < 40; ++i) {
    write(t / "in/images" / ("p" + std::to_string(i) + ".png"), random_bgr(8, 8, static_cast<uint64_t>(i)));
    write(t / "in/masks" / ("p" + std::to_string(i) + ".png"), random_mask255(8, 8, static_cast<uint64_t>(i)));
  }
  auto o = options(t / "in", t / "out.h5", io::Layout::pairs);
  o.threads = 1;  // batches of 8: the signal lands between batches
  int batches = 0;
  o.progress = [&](uint32_t, uint32_t) {
    if (++batches == 2) raise(SIGINT);  // the guard's handler only sets the flag
  };
  {
    io::InterruptGuard guard;
    EXPECT_THROW((void)io::ingest(o), io::Interrupted);
  }
  EXPECT_EQ(batches, 2);
  EXPECT_FALSE(fs::exists(o.out));
  for (const auto& e : fs::directory_iterator(t.path()))
    EXPECT_EQ(e.path().filename().string().find("out.h5"), std::string::npos) << e.path();
}
