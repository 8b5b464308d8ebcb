// ctest-labels: unit
// ctest-link: crackseg_train crackseg_slurm
// Run config: TOML parsing, defaults, overrides of every value type, unknown-key and type
// errors (with the nearest valid key), canonical hash, dynamic model keys, sweep tasks.
#include <gtest/gtest.h>

#include <fstream>

#include "src/config/config.hpp"
#include "src/config/task.hpp"
#include "src/config/toml_json.hpp"
#include "src/core/error.hpp"
#include "src/models/model.hpp"
#include "support/paths.hpp"

using namespace crackseg;
using namespace crackseg::config;
using json = nlohmann::json;

namespace {

ResolvedConfig resolve_text(const std::string& toml, std::vector<std::string> overrides = {},
                            const Schema& schema = Schema::standard()) {
  RawConfig raw = raw_from_toml_text(toml, "run.toml");
  apply_overrides(raw, overrides);
  return resolve(raw, schema);
}

// The InputError message of `f`, or a failure when it does not throw one.
template <typename F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return {};
}

}  // namespace

TEST(Config, EmptyFileGivesEveryDefault) {
  const auto cfg = resolve_text("");
  const Schema schema = Schema::standard();
  for (const auto& sec : schema.sections())
    for (const auto& k : sec.keys) EXPECT_EQ(cfg.values[sec.name][k.key], k.default_value) << sec.name << "." << k.key;
  EXPECT_EQ(cfg.values["train"]["seed"], 126);
  EXPECT_EQ(cfg.values["train"]["determinism"], "fast");
  EXPECT_EQ(cfg.values["model"]["name"], "unet");
  EXPECT_EQ(cfg.values["eval"]["threshold"], "auto");  // 0.5, or tuned on val for the patch CNN
}

TEST(Config, FileValuesWinOverDefaults) {
  const auto cfg = resolve_text(R"(
[data]
path = "d.h5"
crop = 0
augment = false
[optim]
lr = 1      # an integer where a number is expected is fine, stored as 1.0
[train]
epochs = 3
)");
  EXPECT_EQ(cfg.values["data"]["path"], "d.h5");
  EXPECT_EQ(cfg.values["data"]["crop"], 0);
  EXPECT_EQ(cfg.values["data"]["augment"], false);
  EXPECT_TRUE(cfg.values["optim"]["lr"].is_number_float());
  EXPECT_EQ(cfg.values["optim"]["lr"].get<double>(), 1.0);
  EXPECT_EQ(cfg.values["train"]["epochs"], 3);
  EXPECT_EQ(cfg.values["train"]["batch"], 8);
}

TEST(Config, OverridesOfEveryType) {
  const auto cfg = resolve_text("[train]\nepochs = 3\n",
                                {"train.epochs=5", "optim.lr=1e-4", "data.augment=false", "train.determinism=bitwise",
                                 "data.path=\"quoted.h5\"", "train.out=runs/a b", "model.depths=[1, 2, 3]",
                                 "model.width=0.25", "model.skip=sum", "loss.gamma = 2", "train.out=2024"});
  EXPECT_EQ(cfg.values["train"]["epochs"], 5);
  EXPECT_EQ(cfg.values["optim"]["lr"].get<double>(), 1e-4);
  EXPECT_EQ(cfg.values["data"]["augment"], false);
  EXPECT_EQ(cfg.values["train"]["determinism"], "bitwise");
  EXPECT_EQ(cfg.values["data"]["path"], "quoted.h5");
  EXPECT_EQ(cfg.values["model"]["depths"], json::array({1, 2, 3}));
  EXPECT_EQ(cfg.values["model"]["width"].get<double>(), 0.25);
  EXPECT_EQ(cfg.values["model"]["skip"], "sum");
  EXPECT_EQ(cfg.values["loss"]["gamma"], 2);
  // A string key given a number on the command line keeps the text as written.
  EXPECT_EQ(cfg.values["train"]["out"], "2024");
}

TEST(Config, OverrideValueParsing) {
  EXPECT_EQ(parse_override_value("3"), 3);
  EXPECT_EQ(parse_override_value("-2.5"), -2.5);
  EXPECT_EQ(parse_override_value("true"), true);
  EXPECT_EQ(parse_override_value("bitwise"), "bitwise");
  EXPECT_EQ(parse_override_value("synth.h5"), "synth.h5");
  EXPECT_EQ(parse_override_value("1-2-3-4-3-2-1"), "1-2-3-4-3-2-1");
  EXPECT_EQ(parse_override_value("'single'"), "single");
  EXPECT_EQ(parse_override_value("[\"a\", \"b\"]"), json::array({"a", "b"}));
  EXPECT_EQ(parse_override_value("{ a = 1 }"), json({{"a", 1}}));
  // Cannot smuggle a second key in.
  EXPECT_EQ(parse_override_value("1\nx = 2"), "1\nx = 2");
  const Override o = parse_override(" model.base = 32 ");
  EXPECT_EQ(o.path, (std::vector<std::string>{"model", "base"}));
  EXPECT_EQ(o.value, 32);
  EXPECT_NE(input_error([] { (void)parse_override("model.base"); }).find("key=value"), std::string::npos);
  EXPECT_NE(input_error([] { (void)parse_override("model..base=1"); }).find("dotted names"), std::string::npos);
}

TEST(Config, UnknownKeyNamesFileKeyAndNearest) {
  std::string msg = input_error([] { (void)resolve_text("[train]\nepochz = 3\n"); });
  EXPECT_NE(msg.find("train.epochz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.toml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nearest valid key: train.epochs"), std::string::npos) << msg;
  // A key in the wrong section points at the section that has it.
  msg = input_error([] { (void)resolve_text("", {"train.lr=0.1"}); });
  EXPECT_NE(msg.find("nearest valid key: optim.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("override 'train.lr=0.1'"), std::string::npos) << msg;
  // A misspelt section.
  msg = input_error([] { (void)resolve_text("[trian]\nseed = 1\n"); });
  EXPECT_NE(msg.find("trian.seed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nearest valid key: train.seed"), std::string::npos) << msg;
  // A key outside any section.
  msg = input_error([] { (void)resolve_text("seed = 1\n"); });
  EXPECT_NE(msg.find("nearest valid key: train.seed"), std::string::npos) << msg;
}

TEST(Config, TypeErrorsNameKeyAndExpectedType) {
  std::string msg = input_error([] { (void)resolve_text("[train]\nepochs = \"ten\"\n"); });
  EXPECT_NE(msg.find("train.epochs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.toml"), std::string::npos) << msg;
  msg = input_error([] { (void)resolve_text("", {"train.epochs=2.5"}); });
  EXPECT_NE(msg.find("expected an integer, got float 2.5"), std::string::npos) << msg;
  msg = input_error([] { (void)resolve_text("", {"data.augment=yes"}); });
  EXPECT_NE(msg.find("data.augment"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected a boolean"), std::string::npos) << msg;
  msg = input_error([] { (void)resolve_text("", {"optim.lr=fast"}); });
  EXPECT_NE(msg.find("expected a number"), std::string::npos) << msg;
  msg = input_error([] { (void)resolve_text("", {"train.determinism=exact"}); });
  EXPECT_NE(msg.find("fast | bitwise"), std::string::npos) << msg;
  msg = input_error([] { (void)resolve_text("", {"train.batch=0"}); });
  EXPECT_NE(msg.find("must be >= 1"), std::string::npos) << msg;
  msg = input_error([] { (void)resolve_text("train = 3\n"); });
  EXPECT_NE(msg.find("must be the section [train]"), std::string::npos) << msg;
  msg = input_error([] { (void)resolve_text("[train\n"); });
  EXPECT_NE(msg.find("run.toml is not valid TOML"), std::string::npos) << msg;
}

TEST(Config, HashStableAcrossKeyOrderAndSpellingChangesWithValue) {
  const auto a = resolve_text("[train]\nepochs = 3\nseed = 1\n[optim]\nlr = 0.01\n");
  const auto b = resolve_text("[optim]\nlr = 1e-2\n[train]\nseed = 1\nepochs = 3\n");
  const auto c = resolve_text("", {"train.seed=1", "optim.lr=0.01", "train.epochs=3"});
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.hash, c.hash);
  EXPECT_EQ(a.canonical, b.canonical);
  EXPECT_EQ(a.hash.size(), 16u);
  EXPECT_NE(a.hash, resolve_text("[train]\nepochs = 3\nseed = 2\n[optim]\nlr = 0.01\n").hash);
  EXPECT_NE(a.hash, resolve_text("[train]\nepochs = 3\nseed = 1\n[optim]\nlr = 0.010000001\n").hash);
  // Defaults are part of the hash: writing a default explicitly changes nothing.
  EXPECT_EQ(resolve_text("").hash, resolve_text("[train]\nseed = 126\n").hash);
  // The resolved JSON round-trips to the same hash (checkpoints store it).
  EXPECT_EQ(from_resolved_json(json::parse(a.canonical), "ckpt").hash, a.hash);
  // FNV-1a 64 known answers.
  EXPECT_EQ(hex16(fnv1a64("")), "cbf29ce484222325");
  EXPECT_EQ(hex16(fnv1a64("a")), "af63dc4c8601ec8c");
}

TEST(Config, DynamicSectionKeysAreCheckedAndDefaulted) {
  Schema schema = Schema::standard();
  schema.set_dynamic_keys("model", [](const json& section) -> std::vector<KeySpec> {
    if (section["name"] == "unet")
      return {{"base", ValueType::integer, 16, {}, 1.0, "width"}, {"dropout", ValueType::number, 0.1, {}, 0.0, ""}};
    throw InputError("unknown model " + section["name"].dump());
  });
  const auto cfg = resolve_text("[model]\nname = \"unet\"\nbase = 32\n", {}, schema);
  EXPECT_EQ(cfg.values["model"]["base"], 32);
  EXPECT_EQ(cfg.values["model"]["dropout"].get<double>(), 0.1);
  std::string msg = input_error([&] { (void)resolve_text("[model]\nbsae = 32\n", {}, schema); });
  EXPECT_NE(msg.find("nearest valid key: model.base"), std::string::npos) << msg;
  msg = input_error([&] { (void)resolve_text("", {"model.name=resnet"}, schema); });
  EXPECT_NE(msg.find("unknown model"), std::string::npos) << msg;
}

TEST(Config, LoadsFilesAndNamesMissingOnes) {
  test::TempDir dir;
  {
    std::ofstream(dir / "run.toml") << "[train]\nepochs = 2\n";
  }
  const std::vector<std::string> ov = {"train.seed=9"};
  const auto cfg = load_run_config(dir / "run.toml", ov);
  EXPECT_EQ(cfg.values["train"]["epochs"], 2);
  EXPECT_EQ(cfg.values["train"]["seed"], 9);
  const std::string msg = input_error([&] { (void)load_run_config(dir / "nope.toml", ov); });
  EXPECT_NE(msg.find("nope.toml"), std::string::npos) << msg;
}

TEST(Config, AccumulationSteps) {
  EXPECT_EQ(accumulation_steps(8, 4, 1), 2);
  EXPECT_EQ(accumulation_steps(8, 2, 4), 1);
  const std::string msg = input_error([] { (void)accumulation_steps(8, 3, 2); });
  EXPECT_NE(msg.find("train.batch = 8"), std::string::npos) << msg;
}

TEST(Task, OverridesFromTheSweepManifest) {
  test::TempDir dir;
  std::filesystem::create_directories(dir / "sweep dir");
  {
    std::ofstream f(dir / "sweep dir" / "manifest.jsonl");
    f << R"({"id": 0, "overrides": ["optim.lr=0.1"], "seed": 1, "hash": "h0", "dir": "task-0000"})" << "\n"
      << R"({"id": 4, "overrides": ["optim.lr=0.01", "model.name=patch_cnn"], "seed": 2, "hash": "h4", "dir": "task-0004"})"
      << "\n";
  }
  const std::string spec = (dir / "sweep dir" / "manifest.jsonl").string() + ":4";
  const TaskOverrides task = task_overrides(spec);
  EXPECT_EQ(task.id, 4);
  EXPECT_EQ(task.task_hash, "h4");
  RawConfig raw = raw_from_toml_text("[train]\nseed = 5\nout = \"elsewhere\"\n", "base.toml");
  apply_overrides(raw, task.overrides);
  apply_overrides(raw, std::vector<std::string>{"train.epochs=1"});  // the command line comes last
  const auto cfg = resolve(raw);
  EXPECT_EQ(cfg.values["optim"]["lr"].get<double>(), 0.01);
  EXPECT_EQ(cfg.values["model"]["name"], "patch_cnn");
  EXPECT_EQ(cfg.values["train"]["seed"], 2);
  EXPECT_EQ(cfg.values["train"]["epochs"], 1);
  EXPECT_EQ(std::filesystem::path(cfg.values["train"]["out"].get<std::string>()),
            std::filesystem::absolute(dir / "sweep dir" / "task-0004"));
  EXPECT_THROW((void)task_overrides((dir / "sweep dir" / "manifest.jsonl").string() + ":5"), InputError);
}

// Every run config shipped in experiments/ (files with a [model] section; the others are
// sweep files) resolves against the schema, with the model built, so a renamed key or a
// bad value there fails here rather than on a cluster.
TEST(Config, ShippedExperimentConfigsResolve) {
  int checked = 0;
  for (const auto& e : std::filesystem::directory_iterator(crackseg::test::source_dir() / "experiments")) {
    if (e.path().extension() != ".toml") continue;
    std::ifstream f(e.path());
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (text.find("\n[model]") == std::string::npos) continue;
    SCOPED_TRACE(e.path().string());
    const auto cfg = crackseg::config::load_run_config(e.path(), {});
    EXPECT_NO_THROW((void)crackseg::build_model(cfg.values.at("model")));
    ++checked;
  }
  EXPECT_GE(checked, 3);
}
