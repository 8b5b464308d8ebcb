// ctest-labels: integration train
// ctest-timeout: 300
// Datasets the way papers use them: `ingest --layout split-folders` keeps a dataset's own
// train/val/test folders as its splits (names unique across splits, val carved from train on
// request), `data.test_path` evaluates the final test on a separate dataset file (and a
// missing one fails before training), and `eval --data a.h5 --data b.h5` gives one column /
// one JSON entry per dataset, each equal to evaluating that dataset alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "io/dataset/dataset.hpp"
#include "io/ingest/ingest.hpp"
#include "src/core/error.hpp"
#include "support/cli.hpp"
#include "support/paths.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace {

// A 24x20 photo with a crack line at row `row`, and its mask.
void write_pair(const fs::path& split_dir, const std::string& stem, int row) {
  fs::create_directories(split_dir / "images");
  fs::create_directories(split_dir / "masks");
  cv::Mat img(20, 24, CV_8UC3, cv::Scalar(120, 130, 140)), mask(20, 24, CV_8U, cv::Scalar(0));
  img.row(row).setTo(cv::Scalar(20, 20, 20));
  mask.row(row).setTo(cv::Scalar(255));
  cv::imwrite((split_dir / "images" / (stem + ".png")).string(), img);
  cv::imwrite((split_dir / "masks" / (stem + ".png")).string(), mask);
}

std::vector<std::string> names_of(const io::DatasetFile& f, const std::string& split) {
  std::vector<std::string> out;
  for (uint32_t i : f.split(split)) out.push_back(f.names()[i]);
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

const char* kRun = R"(
[data]
crop = 0
augment = false
[model]
name = "unet"
base = 4
depth = 2
[loss]
name = "bce"
[train]
epochs = 3
batch = 2
micro_batch = 2
log_every = 1000
[eval]
threshold = 0.5
)";

}  // namespace

TEST(SplitFolders, KeepsTheDatasetsOwnSplits) {
  test::TempDir t;
  const fs::path dir = t / "bench";
  for (int i = 0; i < 4; ++i) write_pair(dir / "train", "tr" + std::to_string(i), 3 + i);
  write_pair(dir / "train", "same", 5);  // also in test/: stored as train/same.png, test/same.png
  for (int i = 0; i < 2; ++i) write_pair(dir / "test", "te" + std::to_string(i), 10 + i);
  write_pair(dir / "test", "same", 6);
  write_pair(dir / "val", "va0", 8);

  io::IngestOptions o;
  o.dir = dir;
  o.out = t / "bench.h5";
  o.layout = io::parse_layout("split-folders");
  o.threads = 1;
  const auto r = io::ingest(o);
  EXPECT_EQ(r.written, 9u);
  const io::DatasetFile f(o.out);
  EXPECT_EQ(names_of(f, "train"),
            (std::vector<std::string>{"tr0.png", "tr1.png", "tr2.png", "tr3.png", "train/same.png"}));
  EXPECT_EQ(names_of(f, "val"), (std::vector<std::string>{"va0.png"}));
  EXPECT_EQ(names_of(f, "test"), (std::vector<std::string>{"te0.png", "te1.png", "test/same.png"}));
  for (const auto& s : f.sources()) EXPECT_EQ(s, "bench");
  // The masks travel with their images: test/same.png has its crack on row 6.
  std::vector<uint8_t> mask(f.mask_bytes());
  for (uint32_t i : f.split("test"))
    if (f.names()[i] == "test/same.png") {
      f.read_mask(i, mask.data());
      EXPECT_EQ(mask[6 * 24 + 3], 1);
      EXPECT_EQ(mask[5 * 24 + 3], 0);
    }

  // No val/ folder: empty val, or a seeded part of train with --val-from-train.
  fs::remove_all(dir / "val");
  o.out = t / "noval.h5";
  (void)io::ingest(o);
  EXPECT_TRUE(io::DatasetFile(o.out).split("val").empty());
  o.val_from_train = 0.4;  // 2 of 5
  o.out = t / "carved.h5";
  (void)io::ingest(o);
  const io::DatasetFile c(o.out);
  EXPECT_EQ(c.split("val").size(), 2u);
  EXPECT_EQ(c.split("train").size(), 3u);
  EXPECT_EQ(names_of(c, "test"), (std::vector<std::string>{"te0.png", "te1.png", "test/same.png"}));

  // A dataset without test/ is named.
  fs::remove_all(dir / "test");
  o.out = t / "bad.h5";
  try {
    (void)io::ingest(o);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no test/ folder"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.out));
}

TEST(SplitFolders, CliLayoutName) {
  test::TempDir t;
  write_pair(t / "d" / "train", "a", 2);
  write_pair(t / "d" / "test", "b", 3);
  const auto r = test::run_cli("ingest " + (t / "d").string() + " --layout split-folders --out " + (t / "d.h5").string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(io::DatasetFile(t / "d.h5").split("test").size(), 1u);
  const auto bad = test::run_cli("ingest " + (t / "d").string() + " --layout folders --out " + (t / "e.h5").string());
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.output.find("split-folders"), std::string::npos) << bad.output;
}

TEST(TestPathAndSeveralDatasets, FinalTestOnAnotherFileAndOneColumnPerDataset) {
  test::TempDir t;
  const std::string a = (t / "a.h5").string(), b = (t / "b.h5").string();
  ASSERT_EQ(test::run_cli("synth --out " + a + " --count 12 --size 32 --seed 3").code, 0);
  ASSERT_EQ(test::run_cli("synth --out " + b + " --count 20 --size 32 --seed 4 --split 0,0,1").code, 0);
  std::ofstream(t / "run.toml") << kRun;
  const std::string run = (t / "run").string();
  auto r = test::run_cli("train " + (t / "run.toml").string() + " data.path='" + a + "' data.test_path='" + b +
                         "' train.out='" + run + "'");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto res = nlohmann::json::parse(slurp(t / "run" / "result.json"));
  ASSERT_TRUE(res.contains("test_dataset")) << res.dump(1);
  EXPECT_EQ(res["test_dataset"]["path"], b);
  EXPECT_EQ(res["final"]["test"]["images"], 20);  // every image of b, none of a's test split
  // The best checkpoint's test metrics are recorded beside the final weights' and equal
  // `crackseg eval` of best.h5 on that file; per-image rows of both go next to result.json.
  ASSERT_TRUE(res["best"].contains("test")) << res.dump(1);
  EXPECT_EQ(res["metrics"]["best_test_f1"], res["best"]["test"]["f1"]);
  auto ev = test::run_cli("eval --checkpoint " + (t / "run" / "best.h5").string() + " --data " + b + " --out " +
                          (t / "best_eval.json").string());
  ASSERT_EQ(ev.code, 0) << ev.output;
  const auto best_eval = nlohmann::json::parse(slurp(t / "best_eval.json"));
  EXPECT_EQ(best_eval["f1"], res["best"]["test"]["f1"]);
  EXPECT_EQ(best_eval["micro_f1"], res["best"]["test"]["micro_f1"]);
  for (const char* f : {"test_per_image.csv", "best_test_per_image.csv"}) {
    const std::string csv = slurp(t / "run" / f);
    EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 21) << f;  // header + 20 images of b
    EXPECT_EQ(csv.rfind("dataset,name,source,precision,recall,f1,", 0), 0u) << csv.substr(0, 80);
  }

  // A data.test_path that does not exist stops the run before training.
  r = test::run_cli("train " + (t / "run.toml").string() + " data.path='" + a + "' data.test_path='" +
                    (t / "nope.h5").string() + "' train.out='" + (t / "run2").string() + "'");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("nope.h5"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(t / "run2" / "checkpoint.h5"));

  // eval on both datasets: one column / entry each, equal to evaluating each alone.
  const std::string ckpt = (t / "run" / "checkpoint.h5").string();
  r = test::run_cli("eval --checkpoint " + ckpt + " --data " + a + " --data " + b + " --out " + (t / "both.json").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto header = r.output.substr(r.output.find("metric"), r.output.find('\n', r.output.find("metric")) - r.output.find("metric"));
  EXPECT_NE(header.find(a), std::string::npos) << r.output;
  EXPECT_NE(header.find(b), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("\nf1 "), std::string::npos) << r.output;
  const auto both = nlohmann::json::parse(slurp(t / "both.json"));
  ASSERT_EQ(both["datasets"].size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const std::string path = k == 0 ? a : b;
    const auto single = test::run_cli("eval --checkpoint " + ckpt + " --data " + path + " --out " +
                                      (t / ("one" + std::to_string(k) + ".json")).string());
    ASSERT_EQ(single.code, 0) << single.output;
    const auto one = nlohmann::json::parse(slurp(t / ("one" + std::to_string(k) + ".json")));
    const auto& entry = both["datasets"][static_cast<size_t>(k)];
    EXPECT_EQ(entry["data"], path);
    EXPECT_EQ(entry["images"], one["images"]);
    EXPECT_EQ(entry["f1"], one["f1"]);
    EXPECT_EQ(entry["micro_f1"], one["micro_f1"]);
  }
  EXPECT_EQ(both["datasets"][1]["images"], 20);
}
