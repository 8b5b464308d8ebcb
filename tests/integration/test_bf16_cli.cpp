// ctest-labels: train
// ctest-timeout: 300
// train.precision = "bf16" from the command line (issue 15 item 3):
//  - on a CPU without AVX512-BF16/AMX (here: oneDNN limited with DNNL_MAX_CPU_ISA, which is
//    how oneDNN itself decides what it may run) `train` and `bench --precision bf16` fail
//    with an error naming the key and the missing instruction set, and write no result;
//  - where bf16 runs, `crackseg eval` of the checkpoint reproduces the test metrics the run
//    recorded (it evaluates in bf16 too), and result.json names the arithmetic;
//  - the cuda-only tf32 is refused on the CPU instead of being ignored;
//  - train.conv_algorithm = "winograd" likewise: recorded in result.json, reproduced by eval
//    (which evaluates with Winograd too), refused by a backend without it.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "kernels/cpu/dnnl_common.hpp"
#include "support/cli.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace crackseg::onednn {
std::string missing_bf16_isa();
bool amx_bf16_available();
}

namespace {

const char* kUnet = R"(
[data]
crop = 0
augment = false
[model]
name = "unet"
base = 4
depth = 2
[loss]
name = "bce"
[optim]
name = "adam"
lr = 3e-3
[train]
epochs = 1
steps = 3
batch = 2
micro_batch = 2
seed = 3
log_every = 1000
[eval]
bins = 20
)";

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

struct Scratch {
  test::TempDir dir;
  fs::path data = dir / "s.h5", cfg = dir / "run.toml";
  Scratch() {
    const auto s = test::run_cli("synth --out " + data.string() + " --count 12 --size 32 --seed 5 --split 0.5,0.25,0.25");
    EXPECT_EQ(s.code, 0) << s.output;
    std::ofstream(cfg) << kUnet;
  }
  std::string train_args(const fs::path& out, const std::string& extra) const {
    return "train " + cfg.string() + " data.path=\"" + data.string() + "\" train.out=\"" + out.string() + "\" " + extra;
  }
};

TEST(Bf16Cli, RefusedWithoutBf16InstructionsNamingThem) {
  Scratch s;
  const auto out = s.dir / "no_isa";
  const auto t = test::run_cli_env("DNNL_MAX_CPU_ISA=AVX512_CORE", s.train_args(out, "train.precision=\"bf16\""));
  EXPECT_NE(t.code, 0) << t.output;
  EXPECT_NE(t.output.find("train.precision"), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("AVX512-BF16"), std::string::npos) << t.output;
  EXPECT_FALSE(fs::exists(out / "result.json"));
  EXPECT_FALSE(fs::exists(out / "checkpoint.h5"));
  const auto b = test::run_cli_env("DNNL_MAX_CPU_ISA=AVX2", "bench --case patch_cnn --steps 1 --warmup 1 --precision bf16");
  EXPECT_NE(b.code, 0) << b.output;
  EXPECT_NE(b.output.find("AVX512-BF16"), std::string::npos) << b.output;
  EXPECT_NE(b.output.find("AVX2"), std::string::npos) << b.output;
}

// bench-layers --precision (profiles of bf16 steps): the arithmetic it ran is printed and in the
// JSON; on an AMX CPU the patch CNN's 16-channel convolutions take our AMX weight gradient.
TEST(Bf16Cli, BenchLayersRunsAndRecordsThePrecision) {
  const std::string base = "bench-layers --model patch_cnn --size 27 --batch 8 --steps 1 --warmup 0 --no-peak --json";
  const auto f = test::run_cli(base);
  ASSERT_EQ(f.code, 0) << f.output;
  // fp32; on AVX-512 CPUs the patch CNN's three convolutions of <= 16 input channels run
  // oneDNN's jit:avx512_core forward (dnnl_common.hpp take_jit_forward), and the record says so
  const auto fp = nlohmann::json::parse(f.output)["precision"].get<std::string>();
  EXPECT_EQ(fp.rfind("fp32", 0), 0u) << fp;
  // (oneDNN's effective ISA: a DNNL_MAX_CPU_ISA limit counts; without AVX-512 kernels the line
  // names other choices, e.g. our AVX2 weight gradient, and none of these)
  if (onednn::onednn_has_avx512_core()) {
    EXPECT_NE(fp.find("forward of 3 convolutions on oneDNN's jit:avx512_core"), std::string::npos) << fp;
  }
  const auto nj = test::run_cli_env("CRACKSEG_NO_JIT_FORWARD=1", base);
  ASSERT_EQ(nj.code, 0) << nj.output;
  const auto njp = nlohmann::json::parse(nj.output)["precision"].get<std::string>();
  EXPECT_EQ(njp.rfind("fp32", 0), 0u) << njp;
  EXPECT_EQ(njp.find("jit:avx512_core"), std::string::npos) << njp;
  const auto bad = test::run_cli(base + " --precision fp8");
  EXPECT_NE(bad.code, 0) << bad.output;
  EXPECT_NE(bad.output.find("fp8"), std::string::npos) << bad.output;
  if (const std::string m = onednn::missing_bf16_isa(); !m.empty()) GTEST_SKIP() << "no bf16 kernels here: " << m;
  const auto b = test::run_cli(base + " --precision bf16");
  ASSERT_EQ(b.code, 0) << b.output;
  const auto p = nlohmann::json::parse(b.output)["precision"].get<std::string>();
  EXPECT_EQ(p.rfind("bf16 (", 0), 0u) << p;
  EXPECT_EQ(p.find("on our own AMX kernel") != std::string::npos, onednn::amx_bf16_available()) << p;
  // oneDNN's ISA limit keeps our AMX kernel off too (bf16 itself still runs on AVX512-BF16).
  const auto l = test::run_cli_env("DNNL_MAX_CPU_ISA=AVX512_CORE_BF16", base + " --precision bf16");
  ASSERT_EQ(l.code, 0) << l.output;
  const auto lp = nlohmann::json::parse(l.output)["precision"].get<std::string>();
  EXPECT_EQ(lp.rfind("bf16 (", 0), 0u) << lp;
  EXPECT_EQ(lp.find("on our own AMX kernel"), std::string::npos) << lp;
}

TEST(Bf16Cli, Tf32RefusedOnTheCpu) {
  Scratch s;
  const auto t = test::run_cli(s.train_args(s.dir / "tf32", "train.precision=\"tf32\""));
  EXPECT_NE(t.code, 0) << t.output;
  EXPECT_NE(t.output.find("tf32 is a CUDA tensor-core mode"), std::string::npos) << t.output;
}

TEST(Bf16Cli, RecordedTestMetricsReproducedByEval) {
  if (const std::string m = onednn::missing_bf16_isa(); !m.empty()) GTEST_SKIP() << "no bf16 kernels here: " << m;
  Scratch s;
  const auto out = s.dir / "bf16";
  const auto t = test::run_cli(s.train_args(out, "train.precision=\"bf16\""));
  ASSERT_EQ(t.code, 0) << t.output;
  const auto r = read_json(out / "result.json");
  EXPECT_EQ(r["arithmetic"]["precision"].get<std::string>().rfind("bf16 (", 0), 0u) << r["arithmetic"].dump();
  const auto e = test::run_cli("eval --checkpoint " + (out / "checkpoint.h5").string() + " --split test --out " +
                               (s.dir / "e.json").string());
  ASSERT_EQ(e.code, 0) << e.output;
  const auto ev = read_json(s.dir / "e.json");
  const auto& rec = r["final"]["test"];
  int compared = 0;
  for (const char* k : {"f1", "precision", "recall", "iou", "map"}) {
    ASSERT_TRUE(rec.contains(k) && ev.contains(k)) << k << " " << ev.dump();
    EXPECT_EQ(rec[k].dump(), ev[k].dump()) << k;
    ++compared;
  }
  EXPECT_EQ(compared, 5);
  // The same run in fp32 records other numbers: the comparison above can fail.
  const auto f = test::run_cli(s.train_args(s.dir / "fp32", ""));
  ASSERT_EQ(f.code, 0) << f.output;
  const auto rf = read_json(s.dir / "fp32" / "result.json");
  EXPECT_EQ(rf["arithmetic"]["precision"].get<std::string>().rfind("fp32", 0), 0u) << rf["arithmetic"].dump();
  EXPECT_NE(rf["final"]["test"]["loss"].dump(), rec["loss"].dump());
}

TEST(ConvAlgorithmCli, WinogradRecordedAndReproducedByEval) {
  if (!onednn::onednn_has_avx512_core()) GTEST_SKIP() << "no AVX-512 for oneDNN: 2.6 has no Winograd kernel here";
  Scratch s;
  const auto out = s.dir / "wino";
  const auto t = test::run_cli(s.train_args(out, "model.base=16 train.conv_algorithm=\"winograd\""));
  ASSERT_EQ(t.code, 0) << t.output;
  const auto r = read_json(out / "result.json");
  const std::string arith = r["arithmetic"]["precision"].get<std::string>();
  EXPECT_NE(arith.find("Winograd F(4x4, 3x3) for "), std::string::npos) << arith;
  EXPECT_EQ(arith.find("for 0 convolutions"), std::string::npos) << arith;  // some really ran it
  const auto e = test::run_cli("eval --checkpoint " + (out / "checkpoint.h5").string() + " --split test --out " +
                               (s.dir / "e.json").string());
  ASSERT_EQ(e.code, 0) << e.output;
  const auto ev = read_json(s.dir / "e.json");
  for (const char* k : {"f1", "precision", "recall", "iou", "map"}) {
    ASSERT_TRUE(ev.contains(k)) << k << " " << ev.dump();
    EXPECT_EQ(r["final"]["test"][k].dump(), ev[k].dump()) << k;
  }
  // direct records other numbers, so the comparison above can fail
  const auto d = test::run_cli(s.train_args(s.dir / "direct", "model.base=16"));
  ASSERT_EQ(d.code, 0) << d.output;
  EXPECT_NE(read_json(s.dir / "direct" / "result.json")["final"]["test"]["loss"].dump(), r["final"]["test"]["loss"].dump());
}

TEST(ConvAlgorithmCli, WinogradRefusedByTheReferenceBackend) {
  Scratch s;
  const auto t = test::run_cli(s.train_args(s.dir / "ref", "train.backend=\"reference\" train.conv_algorithm=\"winograd\""));
  EXPECT_NE(t.code, 0);
  EXPECT_NE(t.output.find("train.conv_algorithm"), std::string::npos) << t.output;
  EXPECT_FALSE(fs::exists(s.dir / "ref" / "result.json"));
}

}  // namespace
