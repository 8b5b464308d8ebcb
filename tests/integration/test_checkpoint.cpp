// ctest-labels: hdf5
// ctest-link: crackseg_train
// Checkpoints: bitwise round trip, temp-file + rename (no partial file and the previous
// checkpoint intact on failure), and errors naming the file and dataset for missing,
// extra, mis-shaped, mistyped and corrupt content.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "io/h5/h5.hpp"
#include "src/checkpoint/checkpoint.hpp"
#include "src/core/rng.hpp"
#include "support/paths.hpp"

using namespace crackseg;
using namespace crackseg::checkpoint;
namespace fs = std::filesystem;

namespace {

Tensor random_tensor(Dims dims, uint64_t salt) {
  Tensor t = Tensor::empty(std::move(dims));
  auto s = t.span<float>();
  // Wide exponent range, random mantissas.
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = std::ldexp(rng_uniform(7, 0, salt, Purpose::init, i) - 0.5f, static_cast<int>(i % 40) - 20);
  return t;
}

// A small model's checkpoint content; `v` varies every value.
Contents make_contents(uint64_t v) {
  Contents c;
  c.params = {{"enc1.conv1.weight", random_tensor({16, 3, 3, 3}, v + 1)},
              {"enc1.conv1.bias", random_tensor({16}, v + 2)},
              {"enc1.bn1.scale", random_tensor({16}, v + 3)},
              {"head.weight", random_tensor({1, 16, 1, 1}, v + 4)}};
  // Values that must survive bit for bit.
  float* w = c.params[0].second.data<float>();
  w[0] = -0.0f;
  w[1] = std::numeric_limits<float>::denorm_min();
  w[2] = std::numeric_limits<float>::infinity();
  w[3] = std::numeric_limits<float>::max();
  c.buffers = {{"enc1.bn1.running_mean", random_tensor({16}, v + 5)},
               {"enc1.bn1.running_var", random_tensor({16}, v + 6)}};
  c.optim = {{"adam.m.enc1.conv1.weight", random_tensor({16, 3, 3, 3}, v + 7)},
             {"adam.v.enc1.conv1.weight", random_tensor({16, 3, 3, 3}, v + 8)},
             {"adam.scalar", random_tensor({}, v + 9)}};
  c.optim_step = 1234 + static_cast<int64_t>(v);
  c.state = {{"position", {{"epoch", 3}, {"step_in_epoch", 17}, {"global_step", 1234 + v}}},
             {"scheduler", {{"name", "plateau"}, {"best", 0.25}, {"bad_epochs", 2}, {"lr", 1e-4}}},
             {"early_stop", {{"best", 0.5}, {"bad_epochs", 1}}},
             {"best", {{"metric", "f1"}, {"value", 0.71}, {"epoch", 2}}}};
  c.config_json = R"({"train":{"seed":)" + std::to_string(126 + v) + "}}";
  c.config_hash = "0123456789abcdef";
  return c;
}

// The same names and dims, zero data: what a freshly built model offers to read into.
Contents empty_like(const Contents& c) {
  Contents out;
  const auto zeros = [](const NamedTensors& in) {
    NamedTensors o;
    for (const auto& [n, t] : in) o.emplace_back(n, Tensor::zeros(t.dims()));
    return o;
  };
  out.params = zeros(c.params);
  out.buffers = zeros(c.buffers);
  out.optim = zeros(c.optim);
  return out;
}

bool same_bits(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.dims() != b[i].second.dims() ||
        std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()) != 0)
      return false;
  return true;
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

template <typename E, typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return {};
}

}  // namespace

TEST(Checkpoint, RoundTripIsBitwise) {
  test::TempDir dir;
  const fs::path path = dir / "run" / "last.h5";
  const Contents c = make_contents(0);
  write_checkpoint(path, c);
  EXPECT_EQ(files_in(dir / "run"), std::vector<std::string>{"last.h5"});
  EXPECT_TRUE(is_checkpoint(path));

  Contents r = empty_like(c);
  read_checkpoint(path, r);
  EXPECT_TRUE(same_bits(r.params, c.params));
  EXPECT_TRUE(same_bits(r.buffers, c.buffers));
  EXPECT_TRUE(same_bits(r.optim, c.optim));
  EXPECT_EQ(r.optim_step, c.optim_step);
  EXPECT_EQ(r.state, c.state);
  EXPECT_EQ(r.config_json, c.config_json);
  EXPECT_EQ(r.config_hash, c.config_hash);
  EXPECT_TRUE(std::signbit(r.params[0].second.data<float>()[0]));

  const Info info = read_info(path);
  EXPECT_EQ(info.format_version, kFormatVersion);
  ASSERT_EQ(info.params.size(), 4u);
  EXPECT_EQ(info.params[0].name, "enc1.bn1.scale");  // name order
  EXPECT_EQ(info.params[1].dims, (Dims{16}));
  EXPECT_EQ(info.optim[1].name, "adam.scalar");
  EXPECT_EQ(info.optim[1].dims, Dims{});  // a scalar dataset
  EXPECT_EQ(info.state["position"]["global_step"], 1234);
  EXPECT_FALSE(info.crackseg_version.empty());

  // Weights only (eval/predict): the optimizer state is not asked for.
  Contents w = empty_like(c);
  w.optim.clear();
  read_checkpoint(path, w, {.params = true, .buffers = true, .optim = false});
  EXPECT_TRUE(same_bits(w.params, c.params));
}

TEST(Checkpoint, OverwriteReplacesTheWholeFile) {
  test::TempDir dir;
  const fs::path path = dir / "last.h5";
  write_checkpoint(path, make_contents(0));
  const Contents c1 = make_contents(1);
  write_checkpoint(path, c1);
  Contents r = empty_like(c1);
  read_checkpoint(path, r);
  EXPECT_TRUE(same_bits(r.params, c1.params));
  EXPECT_EQ(r.optim_step, c1.optim_step);
  EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"last.h5"});
}

TEST(Checkpoint, FailureMidWriteLeavesThePreviousCheckpointAndNoTempFile) {
  test::TempDir dir;
  const fs::path path = dir / "last.h5";
  const Contents c0 = make_contents(0);
  write_checkpoint(path, c0);
  for (const char* fail_at : {"params", "optim", "state", "closed"}) {
    WriteOptions opts;
    opts.after_stage = [&](std::string_view s) {
      if (s == fail_at) throw Error(std::string("injected failure after ") + fail_at);
    };
    const std::string msg = error_of<Error>([&] { write_checkpoint(path, make_contents(1), opts); });
    EXPECT_NE(msg.find("injected failure"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"last.h5"}) << fail_at;
    Contents r = empty_like(c0);
    read_checkpoint(path, r);
    EXPECT_TRUE(same_bits(r.params, c0.params)) << fail_at;
    EXPECT_TRUE(same_bits(r.optim, c0.optim)) << fail_at;
  }
}

TEST(Checkpoint, FailedRenameLeavesNoTempFile) {
  test::TempDir dir;
  const fs::path path = dir / "last.h5";
  fs::create_directories(path / "occupied");  // a non-empty directory: rename onto it fails
  const std::string msg = error_of<Error>([&] { write_checkpoint(path, make_contents(0)); });
  EXPECT_NE(msg.find("cannot rename"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_EQ(files_in(dir.path()), std::vector<std::string>{"last.h5"});
  EXPECT_TRUE(fs::is_directory(path));
}

TEST(Checkpoint, MissingExtraAndMisshapenDatasetsAreNamed) {
  test::TempDir dir;
  const fs::path path = dir / "c.h5";
  Contents c = make_contents(0);
  c.params.pop_back();  // the file lacks head.weight
  write_checkpoint(path, c);

  Contents want = empty_like(make_contents(0));
  std::string msg = error_of<InputError>([&] { read_checkpoint(path, want); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("no dataset /params/head.weight"), std::string::npos) << msg;
  // Nothing was read: the check precedes every read.
  for (const auto& [n, t] : want.params)
    for (float x : t.span<float>()) ASSERT_EQ(x, 0.0f) << n;

  Contents fewer = empty_like(c);
  fewer.buffers.pop_back();
  msg = error_of<InputError>([&] { read_checkpoint(path, fewer); });
  EXPECT_NE(msg.find("dataset /buffers/enc1.bn1.running_var matches no tensor"), std::string::npos) << msg;

  Contents misshapen = empty_like(c);
  misshapen.params[0].second = Tensor::zeros({32, 3, 3, 3});
  msg = error_of<InputError>([&] { read_checkpoint(path, misshapen); });
  EXPECT_NE(msg.find("dataset /params/enc1.conv1.weight has dims (16, 3, 3, 3), the model's tensor has (32, 3, 3, 3)"),
            std::string::npos)
      << msg;
}

TEST(Checkpoint, CorruptAndForeignFilesAreNamed) {
  test::TempDir dir;
  const fs::path path = dir / "c.h5";
  const Contents c = make_contents(0);
  write_checkpoint(path, c);

  // A dataset replaced by integers of the same shape.
  {
    h5::File f{CRACKSEG_H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
    CRACKSEG_H5_CHECK(H5Ldelete(f.get(), "/buffers/enc1.bn1.running_mean", H5P_DEFAULT));
    const hsize_t n = 16;
    h5::Dataspace s{CRACKSEG_H5_CHECK(H5Screate_simple(1, &n, nullptr))};
    h5::Dataset d{CRACKSEG_H5_CHECK(H5Dcreate2(f.get(), "/buffers/enc1.bn1.running_mean", H5T_STD_I32LE, s.get(),
                                               H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
  }
  Contents r = empty_like(c);
  std::string msg = error_of<InputError>([&] { read_checkpoint(path, r); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("/buffers/enc1.bn1.running_mean is not a floating-point dataset"), std::string::npos) << msg;

  // Truncated: HDF5 cannot open it; the error names the file and carries HDF5's stack.
  write_checkpoint(path, c);
  fs::resize_file(path, fs::file_size(path) / 2);
  msg = error_of<Error>([&] { read_checkpoint(path, r); });
  EXPECT_NE(msg.find("reading checkpoint " + path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("HDF5"), std::string::npos) << msg;
  EXPECT_FALSE(is_checkpoint(path));

  // Not HDF5 at all, and missing.
  std::ofstream(dir / "text.h5") << "not hdf5\n";
  msg = error_of<Error>([&] { (void)read_info(dir / "text.h5"); });
  EXPECT_NE(msg.find("text.h5"), std::string::npos) << msg;
  msg = error_of<InputError>([&] { (void)read_info(dir / "absent.h5"); });
  EXPECT_NE(msg.find("absent.h5 does not exist"), std::string::npos) << msg;

  // HDF5, but a dataset file rather than a checkpoint.
  {
    h5::File f{CRACKSEG_H5_CHECK(H5Fcreate((dir / "data.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
  }
  msg = error_of<InputError>([&] { (void)read_info(dir / "data.h5"); });
  EXPECT_NE(msg.find("is not a crackseg checkpoint"), std::string::npos) << msg;
  EXPECT_FALSE(is_checkpoint(dir / "data.h5"));
}

TEST(Checkpoint, RejectsUnwritableContentBeforeCreatingAFile) {
  test::TempDir dir;
  Contents c = make_contents(0);
  c.params.push_back({"bad/name", Tensor::zeros({2})});
  std::string msg = error_of<Error>([&] { write_checkpoint(dir / "c.h5", c); });
  EXPECT_NE(msg.find("bad/name"), std::string::npos) << msg;
  c = make_contents(0);
  c.params.push_back(c.params[0]);
  msg = error_of<Error>([&] { write_checkpoint(dir / "c.h5", c); });
  EXPECT_NE(msg.find("appears twice"), std::string::npos) << msg;
  EXPECT_TRUE(files_in(dir.path()).empty());
}
