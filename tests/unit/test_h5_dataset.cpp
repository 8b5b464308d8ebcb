// ctest-labels: hdf5 unit
// ctest-link: crackseg_io
// HDF5 wrapper and dataset schema: error text carries the HDF5 stack, owners close their ids,
// writer -> reader round trip byte for byte, splits, attributes, temp-file-and-rename.
#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <set>
#include <thread>

#include "io/dataset/dataset.hpp"
#include "io/dataset/writer.hpp"
#include "io/h5/open.hpp"
#include "io/h5/util.hpp"
#include "src/core/rng.hpp"
#include "tests/support/paths.hpp"

using namespace crackseg;
using crackseg::test::TempDir;

namespace {

struct Sample {
  std::vector<uint8_t> image, mask;
  std::string name, source;
};

std::vector<Sample> random_samples(int n, int h, int w, uint64_t seed) {
  std::vector<Sample> out;
  for (int i = 0; i < n; ++i) {
    SampleRng rng(seed, 0, static_cast<uint64_t>(i), Purpose::noise);
    Sample s;
    s.image.resize(size_t(h) * w * 3);
    s.mask.resize(size_t(h) * w);
    for (auto& v : s.image) v = static_cast<uint8_t>(rng.next_u32());
    for (auto& v : s.mask) v = rng.bernoulli(0.1f) ? 1 : 0;
    s.name = "img_" + std::to_string(i) + ".png";
    s.source = i % 3 == 0 ? "alpha" : "beta";
    out.push_back(std::move(s));
  }
  return out;
}

std::filesystem::path write_file(const TempDir& dir, const std::vector<Sample>& samples, int h, int w) {
  const auto out = dir / "data.h5";
  io::DatasetWriter writer(out, h, w);
  for (const auto& s : samples) writer.append(s.image.data(), s.mask.data(), s.name, s.source);
  writer.finish({.fractions = {0.6, 0.2, 0.2}, .seed = 5});
  return out;
}

}  // namespace

TEST(H5Check, ErrorCarriesCallLocationAndHdf5Stack) {
  try {
    h5::File f{CRACKSEG_H5_CHECK(H5Fopen("/nonexistent/x.h5", H5F_ACC_RDONLY, H5P_DEFAULT))};
    FAIL() << "H5Fopen of a missing file succeeded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("HDF5 call `H5Fopen(\"/nonexistent/x.h5\""), std::string::npos) << what;
    EXPECT_NE(what.find("test_h5_dataset.cpp:"), std::string::npos) << what;
    EXPECT_NE(what.find("H5Fopen()"), std::string::npos) << what;        // stack entry
    EXPECT_NE(what.find("unable to open file"), std::string::npos) << what;  // HDF5's own text
  }
}

TEST(H5Id, MoveTransfersOwnershipAndDestructorCloses) {
  hid_t raw = -1;
  {
    h5::Dataspace a{CRACKSEG_H5_CHECK(H5Screate(H5S_SCALAR))};
    raw = a.get();
    EXPECT_GT(H5Iis_valid(raw), 0);
    h5::Dataspace b = std::move(a);
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw);
    h5::Dataspace c;
    c = std::move(b);
    EXPECT_EQ(c.get(), raw);
    EXPECT_GT(H5Iis_valid(raw), 0);
  }
  EXPECT_LE(H5Iis_valid(raw), 0);
  static_assert(!std::is_copy_constructible_v<h5::File>);
  static_assert(!std::is_copy_assignable_v<h5::Dataset>);
}

TEST(DatasetFile, RoundTripIsByteExact) {
  TempDir dir;
  const int h = 7, w = 9;
  const auto samples = random_samples(10, h, w, 3);
  const auto path = write_file(dir, samples, h, w);
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp." + std::to_string(getpid())));

  io::DatasetFile f(path);
  ASSERT_EQ(f.count(), 10u);
  EXPECT_EQ(f.height(), h);
  EXPECT_EQ(f.width(), w);
  EXPECT_EQ(f.format_version(), io::kDatasetFormatVersion);
  EXPECT_EQ(f.creator_version(), io::creator_version());
  EXPECT_EQ(io::hdf5_file_kind(path), "dataset");
  std::vector<uint8_t> img(f.image_bytes()), mask(f.mask_bytes());
  for (uint32_t i = 0; i < f.count(); ++i) {
    f.read_image(i, img.data());
    f.read_mask(i, mask.data());
    EXPECT_EQ(img, samples[i].image) << i;
    EXPECT_EQ(mask, samples[i].mask) << i;
    EXPECT_EQ(f.names()[i], samples[i].name);
    EXPECT_EQ(f.sources()[i], samples[i].source);
  }
  // Batched reads, unsorted with a repeat, land in consecutive slots.
  const std::vector<uint32_t> idx = {7, 2, 7, 0};
  std::vector<uint8_t> imgs(idx.size() * f.image_bytes()), masks(idx.size() * f.mask_bytes());
  f.read_images(idx, imgs.data());
  f.read_masks(idx, masks.data());
  for (size_t k = 0; k < idx.size(); ++k) {
    EXPECT_TRUE(std::equal(samples[idx[k]].image.begin(), samples[idx[k]].image.end(),
                           imgs.begin() + static_cast<long>(k * f.image_bytes())));
    EXPECT_TRUE(std::equal(samples[idx[k]].mask.begin(), samples[idx[k]].mask.end(),
                           masks.begin() + static_cast<long>(k * f.mask_bytes())));
  }
  EXPECT_THROW(f.read_image(10, img.data()), Error);

  // Directly written chunks are ordinary deflate chunks: HDF5's own filter path reads them.
  // (Opened like DatasetFile opens it, without a lock: HDF5 1.10.8 refuses a second open of
  // a file already open with other locking flags, "file locking flag values don't match".)
  h5::File raw = h5::open_read_only(path, "dataset");
  h5::Dataset d{CRACKSEG_H5_CHECK(H5Dopen2(raw.get(), "/images", H5P_DEFAULT))};
  std::vector<uint8_t> all(samples.size() * f.image_bytes());
  CRACKSEG_H5_CHECK(H5Dread(d.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()));
  for (size_t i = 0; i < samples.size(); ++i)
    EXPECT_TRUE(std::equal(samples[i].image.begin(), samples[i].image.end(),
                           all.begin() + static_cast<long>(i * f.image_bytes())));
}

TEST(DatasetFile, SplitsPartitionStratifiedAndFractionsMatchMasks) {
  TempDir dir;
  const int h = 5, w = 6;
  const auto samples = random_samples(20, h, w, 9);
  io::DatasetFile f(write_file(dir, samples, h, w));
  std::vector<uint32_t> all;
  for (const char* s : io::kSplitNames) {
    const auto idx = f.split(s);
    EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
    all.insert(all.end(), idx.begin(), idx.end());
    uint64_t crack = 0;
    for (uint32_t i : idx) crack += std::accumulate(samples[i].mask.begin(), samples[i].mask.end(), uint64_t{0});
    const double expected = idx.empty() ? 0.0 : double(crack) / double(idx.size() * h * w);
    EXPECT_DOUBLE_EQ(f.crack_fraction(s), expected) << s;
  }
  std::sort(all.begin(), all.end());
  std::vector<uint32_t> iota(20);
  std::iota(iota.begin(), iota.end(), 0u);
  EXPECT_EQ(all, iota);
  // alpha: 7 samples -> round(4.2)=4 train, round(5.6)-4=2 val, 1 test;
  // beta: 13 samples -> round(7.8)=8, round(10.4)-8=2, 3.
  auto count_source = [&](const std::vector<uint32_t>& idx, const std::string& src) {
    return std::count_if(idx.begin(), idx.end(), [&](uint32_t i) { return samples[i].source == src; });
  };
  EXPECT_EQ(count_source(f.split("train"), "alpha"), 4);
  EXPECT_EQ(count_source(f.split("val"), "alpha"), 2);
  EXPECT_EQ(count_source(f.split("test"), "alpha"), 1);
  EXPECT_EQ(count_source(f.split("train"), "beta"), 8);
  EXPECT_EQ(count_source(f.split("val"), "beta"), 2);
  EXPECT_EQ(count_source(f.split("test"), "beta"), 3);
  EXPECT_THROW((void)f.split("holdout"), InputError);
}

TEST(StratifiedSplit, DependsOnSeedAndOnEachSourceOnly) {
  std::vector<std::string> a(50, "x");
  const io::SplitSpec s1{{0.8, 0.1, 0.1}, 1}, s2{{0.8, 0.1, 0.1}, 2};
  EXPECT_EQ(io::stratified_split(a, s1), io::stratified_split(a, s1));
  EXPECT_NE(io::stratified_split(a, s1)[0], io::stratified_split(a, s2)[0]);
  // Adding another source after x leaves x's assignment unchanged.
  auto b = a;
  b.insert(b.end(), 30, "y");
  const auto sa = io::stratified_split(a, s1), sb = io::stratified_split(b, s1);
  for (int k = 0; k < 3; ++k) {
    std::vector<uint32_t> x_only;
    for (uint32_t i : sb[k])
      if (i < 50) x_only.push_back(i);
    EXPECT_EQ(x_only, sa[k]);
  }
}

TEST(SplitFractions, ParsesAndRejectsWithTheText) {
  const auto s = io::parse_split_fractions("0.7,0.2,0.1", 3);
  EXPECT_DOUBLE_EQ(s.fractions[0], 0.7);
  EXPECT_DOUBLE_EQ(s.fractions[2], 0.1);
  EXPECT_EQ(s.seed, 3u);
  for (const char* bad : {"0.8,0.1", "0.8,0.1,0.2", "a,b,c", "0.8,0.1,0.1,0", "-0.1,0.6,0.5", "0.8x,0.1,0.1"}) {
    try {
      (void)io::parse_split_fractions(bad, 1);
      ADD_FAILURE() << bad << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

TEST(DatasetWriter, UnfinishedWriterRemovesItsTempFileAndWritesNoOutput) {
  TempDir dir;
  const auto out = dir / "x.h5";
  const auto samples = random_samples(2, 4, 4, 1);
  std::filesystem::path tmp;
  {
    io::DatasetWriter w(out, 4, 4);
    tmp = w.temp_path();
    EXPECT_EQ(tmp.string(), out.string() + ".tmp." + std::to_string(getpid()));
    w.append(samples[0].image.data(), samples[0].mask.data(), "a", "s");
    EXPECT_TRUE(std::filesystem::exists(tmp));
    EXPECT_FALSE(std::filesystem::exists(out));
  }
  EXPECT_FALSE(std::filesystem::exists(tmp));
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(DatasetWriter, FinishReplacesAnExistingOutputAtomically) {
  TempDir dir;
  const auto out = dir / "x.h5";
  { std::ofstream(out) << "old"; }
  const auto samples = random_samples(3, 4, 4, 2);
  io::DatasetWriter w(out, 4, 4);
  for (const auto& s : samples) w.append(s.image.data(), s.mask.data(), s.name, s.source);
  // Before finish the old file is untouched.
  EXPECT_EQ(std::filesystem::file_size(out), 3u);
  w.finish({});
  EXPECT_EQ(io::DatasetFile(out).count(), 3u);
}

TEST(DatasetWriter, RejectsNonBinaryMasksDuplicateNamesAndEmptyOutput) {
  TempDir dir;
  io::DatasetWriter w(dir / "x.h5", 2, 2);
  const std::vector<uint8_t> img(12, 7), good = {0, 1, 1, 0}, bad = {0, 1, 255, 0};
  try {
    (void)w.encode(img.data(), bad.data(), "soft.png", "s");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("soft.png"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("255"), std::string::npos);
  }
  EXPECT_THROW(w.finish({}), InputError);  // nothing appended
  w.append(img.data(), good.data(), "a.png", "s");
  try {
    w.append(img.data(), good.data(), "a.png", "s");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("a.png"), std::string::npos);
  }
}

TEST(DatasetFile, BadFilesAreNamedInTheError) {
  TempDir dir;
  try {
    io::DatasetFile f(dir / "missing.h5");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.h5"), std::string::npos);
  }
  { std::ofstream(dir / "text.h5") << "not hdf5"; }
  try {
    io::DatasetFile f(dir / "text.h5");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("text.h5"), std::string::npos);
  }
  // An HDF5 file of another kind (e.g. a checkpoint) is refused by name.
  {
    h5::File f{CRACKSEG_H5_CHECK(H5Fcreate((dir / "ckpt.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
    h5::write_attribute(f.get(), "kind", std::string_view("checkpoint"));
  }
  EXPECT_EQ(io::hdf5_file_kind(dir / "ckpt.h5"), "checkpoint");
  try {
    io::DatasetFile f(dir / "ckpt.h5");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint"), std::string::npos) << e.what();
  }
}

TEST(DatasetFile, ThreadsWithTheirOwnFilesReadWhileAnotherWrites) {
  TempDir dir;
  const int h = 16, w = 16;
  const auto samples = random_samples(8, h, w, 4);
  const auto path = write_file(dir, samples, h, w);
  std::atomic<int> mismatches{0};
  auto reader = [&] {
    io::DatasetFile f(path);
    std::vector<uint8_t> img(f.image_bytes());
    for (int rep = 0; rep < 50; ++rep)
      for (uint32_t i = 0; i < f.count(); ++i) {
        f.read_image(i, img.data());
        mismatches += img != samples[i].image;
      }
  };
  std::thread t1(reader), t2(reader);
  for (int rep = 0; rep < 5; ++rep) {
    io::DatasetWriter wr(dir / ("w" + std::to_string(rep) + ".h5"), h, w);
    for (const auto& s : samples) wr.append(s.image.data(), s.mask.data(), s.name, s.source);
    wr.finish({});
  }
  t1.join();
  t2.join();
  EXPECT_EQ(mismatches.load(), 0);
}
