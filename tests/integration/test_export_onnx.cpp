// ctest-labels: integration train export
// ctest-timeout: 900
// scripts/export_onnx.py for every model family: a model trains a few steps (so batchnorm's
// running statistics are not the initial ones), the script rebuilds it in PyTorch from
// checkpoint.h5 with the same parameter names, exports ONNX, and checks both against
// `crackseg predict --save-npy` on an image (whole image, tiles, patch votes) within 1e-4.
// Runs only when the export venv ($CRACKSEG_EXPORT_VENV or <repo>/.venv-export) already has
// torch, onnx and onnxruntime; skipped otherwise (the build and CI never need PyTorch).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "support/cli.hpp"
#include "support/paths.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace {

fs::path venv_python() {
  const char* env = std::getenv("CRACKSEG_EXPORT_VENV");
  const fs::path venv = env && *env ? fs::path(env) : test::source_dir() / ".venv-export";
  return venv / "bin" / "python";
}

// Asked once per process: importing torch takes seconds.
bool have_torch(const fs::path& py) {
  static const bool have = [&] {
    if (!fs::exists(py)) return false;
    const std::string cmd = py.string() + " -c 'import torch, onnx, onnxruntime, h5py, numpy, PIL' >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
  }();
  return have;
}

test::CmdResult run_shell(const std::string& cmd) {
  test::CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

const char* kRun = R"(
[data]
augment = false
val_split = ""
test_split = ""
[loss]
name = "bce"
[optim]
lr = 1e-2
[train]
epochs = 1
steps = 3
batch = 2
micro_batch = 2
seed = 5
log_every = 1000
)";

class ExportOnnx : public ::testing::Test {
 protected:
  void SetUp() override {
    py_ = venv_python();
    if (!have_torch(py_)) GTEST_SKIP() << "no PyTorch export venv at " << py_.parent_path().parent_path();
    std::ofstream(t_ / "run.toml") << kRun;
  }

  // Trains `overrides` on a synthetic set of side `size`, then exports and checks.
  void export_and_check(const std::string& name, int size, const std::string& overrides) {
    const std::string data = (t_ / ("synth" + std::to_string(size) + ".h5")).string();
    if (!fs::exists(data)) {
      ASSERT_EQ(test::run_cli("synth --out " + data + " --count 6 --size " + std::to_string(size)).code, 0);
    }
    const std::string out = (t_ / name).string();
    auto r = test::run_cli("train " + (t_ / "run.toml").string() + " data.path='" + data + "' train.out='" + out + "' " +
                           overrides);
    ASSERT_EQ(r.code, 0) << r.output;
    r = run_shell(py_.string() + " " + (test::source_dir() / "scripts" / "export_onnx.py").string() + " " + out +
                  "/checkpoint.h5 --out " + out + "/model.onnx --check --no-install --crackseg " + test::binary().string());
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("check pytorch"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("check onnx"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("FAIL"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::exists(out + "/model.onnx"));
  }

  fs::path py_;
  test::TempDir t_;
};

}  // namespace

TEST_F(ExportOnnx, Unet) { export_and_check("unet", 32, "model.name=unet model.base=4 model.depth=2 data.crop=0"); }

TEST_F(ExportOnnx, FlexUnetSoftmax) {
  export_and_check("flex", 32,
                   "model.name=flex_unet model.layers=3 model.base=4 model.kernel=5 model.classes=2 loss.name=softmax_ce "
                   "data.crop=0");
}

TEST_F(ExportOnnx, SpiralNetTiled) {
  export_and_check("spiral", 32, "model.name=spiral_net 'model.depths=[1,2,1]' model.width=0.05 data.crop=15 eval.tile=15");
}

TEST_F(ExportOnnx, HourglassUnetTiled) {
  export_and_check("hourglass", 256, "model.name=hourglass_unet model.width=0.02 data.crop=255 eval.tile=255");
}

TEST_F(ExportOnnx, PatchCnnBothPaddings) {
  export_and_check("patch_context", 32, "model.name=patch_cnn model.padding=context");
  export_and_check("patch_same", 32, "model.name=patch_cnn model.padding=same");
}
