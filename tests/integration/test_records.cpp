// ctest-labels: train
// ctest-timeout: 600
// What a run records and reports, with nothing silently wrong (issue 13):
//  - data.max_train / max_val bound every family (a U-Net trains on exactly N images);
//  - an empty evaluation split (val, test, `crackseg eval`) is an error naming the split and
//    the file, never zeros;
//  - `crackseg eval --per-image`: rows that sum / average to the aggregate;
//  - eval.threshold = "val" (tuned on validation, applied to test, recorded), fixed numbers
//    still accepted, and the patch CNN's default is the tuned one;
//  - provenance: host, CPU and ISA, command line and launcher, the dataset's ingest options;
//  - loss/model and input-size mismatches caught at config resolution with the keys that fit,
//    softmax_ce class weights;
//  - 1-based epochs, the model named in the progress header, the ETA counting validation,
//    `predict` writing <stem>_pred_mask.png, curves legends naming the losses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "io/dataset/dataset.hpp"
#include "io/image/image.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/losses/loss.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/provenance.hpp"
#include "src/train/run_checks.hpp"
#include "src/train/train_state.hpp"
#include "src/train/trainer.hpp"
#include "support/cli.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

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

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A synthetic dataset with the given split fractions (rank 0 writes it; one-rank tests).
fs::path synth(const fs::path& dir, const std::string& name, uint32_t count, int size, std::array<double, 3> split) {
  io::SynthOptions o;
  o.out = dir / name;
  o.count = count;
  o.size = size;
  o.seed = 11;
  o.threads = 1;
  o.split.fractions = split;
  (void)io::write_synth_dataset(o);
  return o.out;
}

nlohmann::json run_train(const std::string& toml, const fs::path& data, const fs::path& out,
                     std::vector<std::string> ov = {}) {
  ov.push_back("data.path=\"" + data.string() + "\"");
  ov.push_back("train.out=\"" + out.string() + "\"");
  const auto cfg = test::tiny_config(toml, ov);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  return train::run_training(cfg, comm, {.resume = false, .quiet = true}).result;
}

std::string error_of(const std::string& toml, std::vector<std::string> ov) {
  try {
    const auto cfg = test::tiny_config(toml, ov);
    train::check_run_config(cfg.values);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// CSV rows as column -> text maps.
std::vector<std::map<std::string, std::string>> read_csv(const fs::path& p) {
  std::ifstream f(p);
  std::string line;
  std::vector<std::string> cols;
  std::vector<std::map<std::string, std::string>> rows;
  const auto split = [](const std::string& l) {
    std::vector<std::string> v;
    std::stringstream ss(l);
    for (std::string c; std::getline(ss, c, ',');) v.push_back(c);
    if (!l.empty() && l.back() == ',') v.push_back("");
    return v;
  };
  if (std::getline(f, line)) cols = split(line);
  while (std::getline(f, line)) {
    const auto cells = split(line);
    std::map<std::string, std::string> row;
    for (std::size_t i = 0; i < cols.size() && i < cells.size(); ++i) row[cols[i]] = cells[i];
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

TEST(Records, MaxTrainAndMaxValBoundTheUNet) {
  test::TempDir dir;
  const auto data = synth(dir.path(), "d.h5", 30, 32, {0.8, 0.2, 0.0});
  const io::DatasetFile file(data);
  ASSERT_GE(file.split("train").size(), 20u);
  ASSERT_GE(file.split("val").size(), 4u);
  // 4 training images at batch 2: exactly 2 steps per epoch (the whole split would give 12).
  const auto r = run_train(kUnet, data, dir / "run", {"data.max_train=4", "data.max_val=3", "data.test_split=\"\""});
  EXPECT_EQ(r["steps"].get<int64_t>(), 2);
  EXPECT_EQ(r["final"]["val"]["images"].get<int64_t>(), 3);
  // Two epochs: 4 steps in all.
  const auto r2 = run_train(kUnet, data, dir / "run2", {"data.max_train=4", "train.epochs=2", "data.test_split=\"\""});
  EXPECT_EQ(r2["steps"].get<int64_t>(), 4);
}

TEST(Records, EmptyEvaluationSplitIsAnError) {
  test::TempDir dir;
  const auto no_test = synth(dir.path(), "no_test.h5", 20, 32, {0.8, 0.2, 0.0});
  const auto no_val = synth(dir.path(), "no_val.h5", 20, 32, {0.8, 0.0, 0.2});
  // Training: the empty split is named, with the file, before anything trains.
  try {
    (void)run_train(kUnet, no_test, dir / "a");
    ADD_FAILURE() << "an empty test split trained and reported numbers";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("data.test_split"), std::string::npos) << m;
    EXPECT_NE(m.find("'test'"), std::string::npos) << m;
    EXPECT_NE(m.find(no_test.string()), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(dir / "a" / "result.json"));
  try {
    (void)run_train(kUnet, no_val, dir / "b");
    ADD_FAILURE() << "an empty validation split trained and reported numbers";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("data.val_split"), std::string::npos) << m;
    EXPECT_NE(m.find(no_val.string()), std::string::npos) << m;
  }
  // Naming no split still works (no evaluation, no error).
  const auto r = run_train(kUnet, no_test, dir / "c", {"data.test_split=\"\"", "train.steps=1"});
  EXPECT_FALSE(r["final"].contains("test"));
  // `crackseg eval` of an empty split: exit 2, the split and the file named.
  const auto e = test::run_cli("eval --checkpoint " + (dir / "c" / "checkpoint.h5").string() + " --data " +
                               no_test.string() + " --split test");
  EXPECT_EQ(e.code, 2) << e.output;
  EXPECT_NE(e.output.find("'test'"), std::string::npos) << e.output;
  EXPECT_NE(e.output.find(no_test.string()), std::string::npos) << e.output;
  EXPECT_EQ(e.output.find("F1 0.0"), std::string::npos) << e.output;
}

TEST(Records, PerImageCsvSumsToTheAggregate) {
  test::TempDir dir;
  const auto data = synth(dir.path(), "d.h5", 24, 32, {0.6, 0.2, 0.2});
  (void)run_train(kUnet, data, dir / "run", {"train.epochs=3", "eval.threshold=0.4"});
  const auto csv = dir / "rows.csv", js = dir / "m.json";
  const auto e = test::run_cli("eval --checkpoint " + (dir / "run" / "checkpoint.h5").string() + " --data " +
                               data.string() + " --split test --out " + js.string() + " --per-image " + csv.string());
  ASSERT_EQ(e.code, 0) << e.output;
  const auto agg = read_json(js);
  const auto rows = read_csv(csv);
  const io::DatasetFile file(data);
  ASSERT_EQ(rows.size(), file.split("test").size());
  ASSERT_EQ(static_cast<int64_t>(rows.size()), agg["images"].get<int64_t>());
  double f1 = 0, p = 0, r = 0, iou = 0, dice = 0, ap = 0;
  int64_t tp = 0, fp = 0, fn = 0, ap_n = 0, crack = 0, predicted = 0;
  for (const auto& row : rows) {
    EXPECT_EQ(row.at("dataset"), data.string());
    EXPECT_FALSE(row.at("name").empty());
    EXPECT_FALSE(row.at("source").empty());
    f1 += std::stod(row.at("f1")), p += std::stod(row.at("precision")), r += std::stod(row.at("recall"));
    iou += std::stod(row.at("iou")), dice += std::stod(row.at("dice"));
    tp += std::stoll(row.at("tp")), fp += std::stoll(row.at("fp")), fn += std::stoll(row.at("fn"));
    crack += std::stoll(row.at("crack_pixels")), predicted += std::stoll(row.at("predicted_pixels"));
    EXPECT_EQ(std::stoll(row.at("crack_pixels")), std::stoll(row.at("tp")) + std::stoll(row.at("fn")));
    EXPECT_DOUBLE_EQ(std::stod(row.at("threshold")), 0.4);
    if (!row.at("ap").empty()) {
      ap += std::stod(row.at("ap"));
      ++ap_n;
    }
  }
  const double n = static_cast<double>(rows.size());
  EXPECT_NEAR(f1 / n, agg["f1"].get<double>(), 1e-12);
  EXPECT_NEAR(p / n, agg["precision"].get<double>(), 1e-12);
  EXPECT_NEAR(r / n, agg["recall"].get<double>(), 1e-12);
  EXPECT_NEAR(iou / n, agg["iou"].get<double>(), 1e-12);
  EXPECT_NEAR(dice / n, agg["dice"].get<double>(), 1e-12);
  EXPECT_EQ(tp, agg["tp"].get<int64_t>());
  EXPECT_EQ(fp, agg["fp"].get<int64_t>());
  EXPECT_EQ(fn, agg["fn"].get<int64_t>());
  EXPECT_EQ(crack, tp + fn);
  EXPECT_EQ(predicted, tp + fp);
  EXPECT_EQ(ap_n, agg["ap_images"].get<int64_t>());
  if (ap_n > 0) {
    EXPECT_NEAR(ap / static_cast<double>(ap_n), agg["map"].get<double>(), 1e-12);
  }
}

TEST(Records, ThresholdTunedOnValidationAppliedToTest) {
  test::TempDir dir;
  const auto data = synth(dir.path(), "d.h5", 24, 32, {0.6, 0.2, 0.2});
  const auto r = run_train(kUnet, data, dir / "run", {"train.epochs=3", "eval.threshold=\"val\""});
  const auto& val = r["final"]["val"];
  const auto& test = r["final"]["test"];
  EXPECT_EQ(val["threshold_from"], "val split");
  EXPECT_EQ(test["threshold_from"], "val split");
  EXPECT_DOUBLE_EQ(test["threshold"].get<double>(), val["threshold"].get<double>());
  // The chosen threshold is the mean-F1-best bin edge of the validation split: no fixed edge
  // scores higher there.
  auto loaded = train::load_model_from_checkpoint(dir / "run" / "checkpoint.h5", "onednn");
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  nlohmann::json cfg = loaded.cfg.values;
  for (int k = 0; k < 20; k += 3) {
    cfg["eval"]["threshold"] = k / 20.0;
    const auto ev = train::evaluate_split(cfg, *loaded.model, comm, "val", 0);
    EXPECT_EQ(ev.summary["threshold_from"], "fixed");
    EXPECT_LE(ev.summary["f1"].get<double>(), val["f1"].get<double>() + 1e-12) << "threshold " << k / 20.0;
  }
  // Test at the chosen threshold, fixed, gives the recorded test numbers.
  cfg["eval"]["threshold"] = val["threshold"];
  const auto te = train::evaluate_split(cfg, *loaded.model, comm, "test", 0);
  EXPECT_EQ(te.summary["f1"], test["f1"]);
  // `crackseg eval --split test` of the checkpoint finds the same threshold on val.
  const auto js = dir / "t.json";
  const auto e = test::run_cli("eval --checkpoint " + (dir / "run" / "checkpoint.h5").string() + " --split test --out " +
                               js.string());
  ASSERT_EQ(e.code, 0) << e.output;
  EXPECT_DOUBLE_EQ(read_json(js)["threshold"].get<double>(), val["threshold"].get<double>());
  // A fixed number is still a fixed number.
  const auto r2 = run_train(kUnet, data, dir / "fixed", {"train.steps=1", "eval.threshold=0.3"});
  EXPECT_DOUBLE_EQ(r2["final"]["test"]["threshold"].get<double>(), 0.3);
  EXPECT_EQ(r2["final"]["test"]["threshold_from"], "fixed");
  // Defaults: tuned for the patch CNN (its normalised votes rarely reach 0.5), 0.5 otherwise.
  const auto unet = test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\""});
  EXPECT_EQ(unet.values["eval"]["threshold"], "auto");
  EXPECT_EQ(train::fixed_threshold(unet.values), 0.5);
  std::string bare = kUnet;
  bare.replace(bare.find("base = 4\ndepth = 2\n"), std::string("base = 4\ndepth = 2\n").size(), "");
  const auto patch = test::tiny_config(bare, {"data.path=\"" + data.string() + "\"", "model.name=\"patch_cnn\""});
  EXPECT_FALSE(train::fixed_threshold(patch.values).has_value());
  const auto bad = error_of(kUnet, {"data.path=\"" + data.string() + "\"", "eval.threshold=\"best\""});
  EXPECT_NE(bad.find("eval.threshold"), std::string::npos) << bad;
}

TEST(Records, ProvenanceInResultJson) {
  test::TempDir dir;
  const auto data = dir / "s.h5";
  const auto s = test::run_cli("synth --out " + data.string() + " --count 16 --size 32 --seed 77 --split 0.5,0.25,0.25");
  ASSERT_EQ(s.code, 0) << s.output;
  const auto r = run_train(kUnet, data, dir / "run", {"train.steps=1"});
  EXPECT_FALSE(r["host"]["hostname"].get<std::string>().empty());
  EXPECT_FALSE(r["host"]["cpu_model"].get<std::string>().empty());
  ASSERT_TRUE(r["host"]["isa"].is_array());
  for (const auto& f : r["host"]["isa"]) {
    const std::string flag = f.get<std::string>();
    EXPECT_TRUE(flag.rfind("avx", 0) == 0 || flag.rfind("amx", 0) == 0 || flag == "fma" || flag == "f16c") << flag;
  }
  std::ifstream cpuinfo("/proc/cpuinfo");
  if (read_text("/proc/cpuinfo").find(" avx2") != std::string::npos) {
    EXPECT_NE(r["host"]["isa"].dump().find("avx2"), std::string::npos);
  }
  EXPECT_NE(r["launch"]["command_line"].get<std::string>().find("test_records"), std::string::npos);
  EXPECT_EQ(r["launch"]["ranks"], 1);
  EXPECT_GE(r["launch"]["threads_per_rank"].get<int>(), 1);
  EXPECT_TRUE(r["launch"]["launcher"].is_string());
  const auto& ingest = r["dataset"]["ingest"];
  EXPECT_NE(ingest["origin"].get<std::string>().find("synth"), std::string::npos);
  EXPECT_EQ(ingest["options"]["seed"], 77);
  EXPECT_EQ(ingest["options"]["size"], 32);
  EXPECT_EQ(ingest["options"]["count"], 16);
  EXPECT_EQ(ingest["options"]["split"], nlohmann::json::array({0.5, 0.25, 0.25}));
  // The launcher comes from the environment it sets.
  ::setenv("SLURM_PROCID", "0", 1);
  EXPECT_EQ(launch_json(4, 2)["launcher"], "srun");
  ::unsetenv("SLURM_PROCID");
  const char* ompi = std::getenv("OMPI_COMM_WORLD_SIZE");
  const std::string saved = ompi ? ompi : "";
  ::setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  EXPECT_EQ(launch_json(4, 2)["launcher"], "mpirun (Open MPI)");
  if (ompi) {
    ::setenv("OMPI_COMM_WORLD_SIZE", saved.c_str(), 1);
  } else {
    ::unsetenv("OMPI_COMM_WORLD_SIZE");
  }
}

TEST(Records, ConfigMismatchesNameTheKeysThatFit) {
  test::TempDir dir;
  const auto data = synth(dir.path(), "d.h5", 12, 32, {0.5, 0.25, 0.25});
  const std::string dp = "data.path=\"" + data.string() + "\"";
  std::string bare = kUnet;  // no U-Net keys, so other families can be named
  bare.replace(bare.find("base = 4\ndepth = 2\n"), std::string("base = 4\ndepth = 2\n").size(), "");
  const auto a = error_of(kUnet, {dp, "loss.name=\"softmax_ce\""});
  EXPECT_NE(a.find("model.classes = 2"), std::string::npos) << a;
  EXPECT_NE(a.find("bce"), std::string::npos) << a;
  const auto b = error_of(bare, {dp, "model.name=\"flex_unet\"", "model.layers=2", "model.base=4"});
  EXPECT_NE(b.find("model.classes = 1"), std::string::npos) << b;
  EXPECT_NE(b.find("softmax_ce"), std::string::npos) << b;
  EXPECT_EQ(error_of(bare, {dp, "model.name=\"flex_unet\"", "model.layers=2", "model.base=4",
                               "loss.name=\"softmax_ce\""}), "");
  const auto c = error_of(bare, {dp, "model.name=\"spiral_net\"", "data.crop=32"});
  EXPECT_NE(c.find("data.crop = 255"), std::string::npos) << c;
  const auto d = error_of(kUnet, {"data.path=\"no/such/data.h5\""});
  EXPECT_NE(d.find((fs::current_path() / "no/such/data.h5").string()), std::string::npos) << d;
  // softmax_ce class weights: pixel loss w_label x cross-entropy.
  nlohmann::json sec = {{"name", "softmax_ce"}, {"class_weights", {1.0, 3.0}}};
  auto weighted = make_loss(sec);
  auto plain = make_loss({{"name", "softmax_ce"}});
  Tensor logits = Tensor::empty({1, 2, 1, 2}), target = Tensor::empty({1, 1, 1, 2}), d1 = Tensor::empty({1, 2, 1, 2}),
         d2 = Tensor::empty({1, 2, 1, 2});
  float* x = logits.data<float>();
  x[0] = 0.3f, x[1] = -0.2f, x[2] = 0.1f, x[3] = 0.5f;  // (c, w): class 0 at w 0, 1; class 1 at w 0, 1
  target.data<float>()[0] = 0.0f, target.data<float>()[1] = 1.0f;
  const double lw = weighted->forward_backward(logits, target, d1).loss;
  const double lp = plain->forward_backward(logits, target, d2).loss;
  const double ce0 = std::log(std::exp(0.3) + std::exp(0.1)) - 0.3, ce1 = std::log(std::exp(-0.2) + std::exp(0.5)) - 0.5;
  EXPECT_NEAR(lp, (ce0 + ce1) / 2, 1e-6);
  EXPECT_NEAR(lw, (ce0 + 3 * ce1) / 2, 1e-6);
  EXPECT_NEAR(d1.data<float>()[1], 3 * d2.data<float>()[1], 1e-6);  // crack pixel's gradient x3
  auto balanced = make_loss({{"name", "softmax_ce"}, {"class_weights", "balanced"}}, LossContext{0.25});
  EXPECT_NEAR(balanced->forward_backward(logits, target, d1).loss, (ce0 / 1.5 + ce1 / 0.5) / 2, 1e-6);
}

TEST(Records, OneBasedEpochsNamedModelEtaAndPredictNames) {
  test::TempDir dir;
  const auto data = synth(dir.path(), "d.h5", 16, 32, {0.5, 0.25, 0.25});
  const auto cfg = dir / "run.toml";
  std::ofstream(cfg) << kUnet << "\n";
  const auto out = dir / "run";
  const auto t = test::run_cli("train " + cfg.string() + " data.path=\"" + data.string() + "\" train.out=" +
                               out.string() + " train.epochs=2 train.log_every=1 train.best_metric=loss "
                               "train.best_mode=min");
  ASSERT_EQ(t.code, 0) << t.output;
  EXPECT_NE(t.output.find("training unet "), std::string::npos) << t.output;
  // Epoch 1 has not validated yet: its ETA says validation comes on top; epoch 2's includes it.
  const auto e1 = t.output.find("epoch 1/2 step 1/"), e2 = t.output.find("epoch 2/2 step 1/");
  ASSERT_NE(e1, std::string::npos) << t.output;
  ASSERT_NE(e2, std::string::npos) << t.output;
  EXPECT_NE(t.output.substr(e1, t.output.find('\n', e1) - e1).find("+ validation"), std::string::npos) << t.output;
  EXPECT_EQ(t.output.substr(e2, t.output.find('\n', e2) - e2).find("+ validation"), std::string::npos) << t.output;
  // train.steps caps the run: the ETA counts those steps, not the configured epochs (a
  // 100000-epoch config stopping after 3 steps said "ETA 2h40m"-like figures before).
  const auto capped = test::run_cli("train " + cfg.string() + " data.path=\"" + data.string() + "\" train.out=" +
                                    (dir / "capped").string() + " train.epochs=100000 train.steps=3 train.log_every=1");
  ASSERT_EQ(capped.code, 0) << capped.output;
  const auto eta = capped.output.find("ETA ");
  ASSERT_NE(eta, std::string::npos) << capped.output;
  const std::string eta_value = capped.output.substr(eta + 4, capped.output.find(' ', eta + 4) - eta - 4);
  EXPECT_EQ(eta_value.find('h'), std::string::npos) << capped.output;
  EXPECT_EQ(eta_value.find('m'), std::string::npos) << capped.output;
  // train.steps ending exactly on an epoch boundary (16 images, batch 2 -> 4 steps/epoch
  // here: 8 steps = 2 epochs) with val_every beyond the run still validates at the end.
  const auto boundary = test::run_cli("train " + cfg.string() + " data.path=\"" + data.string() + "\" train.out=" +
                                      (dir / "boundary").string() + " train.epochs=1000 train.steps=8 train.val_every=1000");
  ASSERT_EQ(boundary.code, 0) << boundary.output;
  const auto rb = read_json(dir / "boundary" / "result.json");
  ASSERT_TRUE(rb["final"]["val"].is_object()) << rb["final"].dump();
  EXPECT_TRUE(rb["final"]["val"]["f1"].is_number()) << rb["final"].dump();
  EXPECT_EQ(rb["steps"], 8) << rb.dump().substr(0, 300);
  // A job killed after the final checkpoint but before result.json (during the final test
  // evaluation) resumes with nothing left to train: its result.json still has the final
  // validation, equal to the uninterrupted run's, and the test scored at the same threshold.
  for (const char* run : {"boundary", "capped"}) {
    const auto first = read_json(dir / run / "result.json");
    fs::remove(dir / run / "result.json");
    const auto again = test::run_cli("train " + cfg.string() + " data.path=\"" + data.string() + "\" train.out=" +
                                     (dir / run).string() + (std::string(run) == "boundary"
                                                                 ? " train.epochs=1000 train.steps=8 train.val_every=1000"
                                                                 : " train.epochs=100000 train.steps=3 train.log_every=1"));
    ASSERT_EQ(again.code, 0) << again.output;
    EXPECT_NE(again.output.find("resuming from"), std::string::npos) << again.output;
    const auto second = read_json(dir / run / "result.json");
    ASSERT_TRUE(second["final"]["val"].is_object()) << run << ": " << second["final"].dump();
    EXPECT_EQ(second["final"]["val"], first["final"]["val"]) << run;
    EXPECT_EQ(second["final"]["test"], first["final"]["test"]) << run;
    EXPECT_EQ(second["steps"], first["steps"]) << run;
  }
  // metrics.csv and result.json count epochs from 1.
  const auto rows = read_csv(out / "metrics.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(std::stod(rows[0].at("epoch")), 1.0);
  EXPECT_EQ(std::stod(rows[1].at("epoch")), 2.0);
  const auto r = read_json(out / "result.json");
  const int64_t best = r["best"]["epoch"].get<int64_t>();
  ASSERT_TRUE(best == 1 || best == 2);
  const double best_loss = std::stod(rows[static_cast<std::size_t>(best - 1)].at("val_loss"));
  EXPECT_NEAR(best_loss, std::min(std::stod(rows[0].at("val_loss")), std::stod(rows[1].at("val_loss"))), 1e-9);
  // predict: <stem>_pred_mask.png, never <stem>_mask.png (a ground-truth name in many datasets).
  const io::DatasetFile file(data);
  std::vector<uint8_t> img(file.image_bytes());
  file.read_image(0, img.data());
  io::save_image_rgb(dir / "photo.png", img.data(), 32, 32);
  const auto pr = test::run_cli("predict --checkpoint " + (out / "best.h5").string() + " " +
                                (dir / "photo.png").string() + " --out " + (dir / "pred").string());
  ASSERT_EQ(pr.code, 0) << pr.output;
  EXPECT_TRUE(fs::exists(dir / "pred" / "photo_pred_mask.png"));
  EXPECT_FALSE(fs::exists(dir / "pred" / "photo_mask.png"));
  // curves.png legends name the losses (plot.py's labels).
  const std::string py = "python3 -c 'import sys; sys.path.insert(0, \"" + (test::source_dir() / "scripts").string() +
                         "\"); import plot; print(plot.loss_label(\"train_loss\", \"dice\")); "
                         "print(plot.loss_label(\"val_loss\", \"dice\"))' 2>&1";
  FILE* p = popen(py.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string labels;
  char buf[512];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) labels.append(buf, n);
  pclose(p);
  EXPECT_NE(labels.find("train loss (dice)"), std::string::npos) << labels;
  EXPECT_NE(labels.find("validation loss (BCE"), std::string::npos) << labels;
}
