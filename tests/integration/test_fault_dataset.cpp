// ctest-labels: fault integration
// ctest-timeout: 120
// Issue 12 item 5: dataset contents are checked when the file is opened. Masks stored 0/255,
// float32 images in [0,1] and uint16 images are refused with exit 2 naming the file, the
// dataset and the problem (before, they trained to nonsense with exit 0).
#include <gtest/gtest.h>

#include <hdf5.h>

#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

// Multiplies every mask by 255 (0/1 -> 0/255), in place.
void masks_to_255(const fs::path& file) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, "/masks", H5P_DEFAULT);
  const hid_t s = H5Dget_space(d);
  const auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(s));
  std::vector<uint8_t> m(n);
  H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data());
  for (auto& v : m) v = v ? 255 : 0;
  H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data());
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
}

// Replaces /images by a dataset of the same shape and element type `type` (values x / 255
// for floats, x * 257 for uint16), as another tool might have written it.
void retype_images(const fs::path& file, hid_t file_type, bool to_float) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "/images", H5P_DEFAULT);
  const hid_t s = H5Dget_space(d);
  const auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(s));
  std::vector<uint8_t> px(n);
  H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, px.data());
  H5Dclose(d);
  H5Ldelete(f, "/images", H5P_DEFAULT);
  hsize_t dims[4] = {};
  H5Sget_simple_extent_dims(s, dims, nullptr);
  const hid_t fixed = H5Screate_simple(4, dims, nullptr);  // the original is extendible (chunked)
  d = H5Dcreate2(f, "/images", file_type, fixed, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Sclose(fixed);
  if (to_float) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = px[i] / 255.0f;
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  } else {
    std::vector<uint16_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>(px[i] * 257);
    H5Dwrite(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  }
  H5Dclose(d);
  H5Sclose(s);
  H5Fclose(f);
}

void expect_refused(const test::TempDir& tmp, const fs::path& data, const std::string& what) {
  const fs::path out = tmp / "run";
  const fs::path cfg = test::tiny_config(tmp.path(), data, out, "");
  const auto r = test::run_for(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "train.log", 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find(data.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(what), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out / "checkpoint.h5"));
  const auto e = test::run_for(test::crackseg({"info", data.string()}), tmp / "info.log", 60);
  EXPECT_EQ(e.code, 2) << e.output;
  EXPECT_NE(e.output.find(what), std::string::npos) << e.output;
}

}  // namespace

TEST(FaultDataset, Masks0And255AreRefused) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path(), 16);
  masks_to_255(data);
  expect_refused(tmp, data, "/masks holds value 255");
}

TEST(FaultDataset, Float32ImagesAreRefused) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path(), 16);
  retype_images(data, H5T_IEEE_F32LE, true);
  expect_refused(tmp, data, "/images is stored as float32");
}

TEST(FaultDataset, Uint16ImagesAreRefused) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path(), 16);
  retype_images(data, H5T_STD_U16LE, false);
  expect_refused(tmp, data, "/images is stored as uint16");
}

TEST(FaultDataset, AGoodDatasetStillOpens) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path(), 16);
  const auto e = test::run_for(test::crackseg({"info", data.string()}), tmp / "info.log", 60);
  EXPECT_EQ(e.code, 0) << e.output;
}

// Issue 12 item 9: a dataset replaced mid-run is not evaluated (nor its checksum recorded).
TEST(FaultDataset, ADatasetReplacedMidRunIsRefusedAtTheNextEvaluation) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path(), 24);
  const fs::path out = tmp / "run";
  const fs::path cfg = test::tiny_config(tmp.path(), data, out, "");
  const auto p = test::spawn(test::crackseg({"train", cfg.string(), "train.epochs=100", "--quiet"}), tmp / "t.log");
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(out / "checkpoint.h5") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(90))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(out / "checkpoint.h5"));
  fs::copy_file(data, tmp / "copy.h5");
  fs::rename(tmp / "copy.h5", data);  // same contents, another file
  const auto r = test::wait_for(p, 90);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("was replaced or modified during the run"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out / "result.json"));
}
