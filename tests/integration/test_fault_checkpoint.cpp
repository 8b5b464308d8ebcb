// ctest-labels: fault integration
// ctest-timeout: 240
// Issue 12 item 10 (checkpoint part): a checkpoint whose position is invalid (step -5) or
// whose weights hold NaN is refused with exit 2 naming the file (before: "resume step
// 18446744073709551611", or a divergence naming that checkpoint as the last good one), and a
// leftover checkpoint.h5.tmp.<pid> of a killed writer is removed when the run resumes;
// `predict` refuses inputs whose outputs would overwrite each other (a.png, sub/a.png).
#include <gtest/gtest.h>

#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cmath>

#include "io/h5/util.hpp"
#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

struct Trained {
  test::TempDir tmp;
  fs::path out, cfg;
  Trained() {
    const fs::path data = test::tiny_dataset(tmp.path());
    out = tmp / "run";
    cfg = test::tiny_config(tmp.path(), data, out, "");
    const auto r = test::run_for(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "a.log", 120);
    if (r.code != 0) throw std::runtime_error(r.output);
  }
  test::ProcResult resume() const {
    return test::run_for(test::crackseg({"train", cfg.string(), "train.epochs=2", "--quiet"}), tmp / "b.log", 120);
  }
};

}  // namespace

TEST(FaultCheckpoint, NegativePositionIsRefused) {
  Trained t;
  {
    const hid_t f = H5Fopen((t.out / "checkpoint.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    const hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
    auto pos = nlohmann::json::parse(h5::read_string_attribute(g, "position"));
    pos["step_in_epoch"] = -5;
    H5Adelete(g, "position");
    h5::write_attribute(g, "position", std::string_view(pos.dump()));
    H5Gclose(g);
    H5Fclose(f);
  }
  const auto r = t.resume();
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("invalid position"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find((t.out / "checkpoint.h5").string()), std::string::npos) << r.output;
}

TEST(FaultCheckpoint, NaNWeightsAreRefused) {
  Trained t;
  {
    const hid_t f = H5Fopen((t.out / "checkpoint.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    char name[256] = {};
    ASSERT_GT(H5Lget_name_by_idx(f, "/params", H5_INDEX_NAME, H5_ITER_INC, 0, name, sizeof name, H5P_DEFAULT), 0);
    const hid_t d = H5Dopen2(f, (std::string("/params/") + name).c_str(), H5P_DEFAULT);
    const hid_t s = H5Dget_space(d);
    std::vector<float> v(static_cast<std::size_t>(H5Sget_simple_extent_npoints(s)));
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    v[0] = NAN;
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
  }
  const auto r = t.resume();
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("NaN"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("last good checkpoint"), std::string::npos) << r.output;
}

TEST(FaultCheckpoint, LeftoverTemporaryFilesAreRemoved) {
  Trained t;
  const fs::path stale = t.out / "checkpoint.h5.tmp.999999";
  std::ofstream(stale) << "half a checkpoint";
  const auto r = t.resume();
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_FALSE(fs::exists(stale)) << r.output;
}

TEST(FaultCheckpoint, PredictRefusesInputsWithTheSameOutputNames) {
  Trained t;
  fs::create_directories(t.tmp / "sub");
  const cv::Mat img(32, 32, CV_8UC3, cv::Scalar(90, 120, 150));
  ASSERT_TRUE(cv::imwrite((t.tmp / "a.png").string(), img));
  ASSERT_TRUE(cv::imwrite((t.tmp / "sub" / "a.png").string(), img));
  const auto r = test::run_for(test::crackseg({"predict", "--checkpoint", (t.out / "checkpoint.h5").string(),
                                               (t.tmp / "a.png").string(), (t.tmp / "sub" / "a.png").string(),
                                               "--out", (t.tmp / "pred").string()}),
                               t.tmp / "p.log", 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("would both write"), std::string::npos) << r.output;
}
