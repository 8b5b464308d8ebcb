// ctest-labels: train
// ctest-timeout: 300
// `crackseg train ... data.stage=node` on one rank: result.json records the staging (path in
// data.stage_dir, bytes, checksum = the dataset's, one node), the config keeps the real
// dataset path, the metrics equal the unstaged run's, and nothing is left in stage_dir.
// Staging is config-neutral for resume: an unstaged run resumes a staged one's checkpoint.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/cli.hpp"
#include "support/paths.hpp"

namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const fs::path& p) { return nlohmann::json::parse(std::ifstream(p)); }

TEST(StageCli, StagedRunRecordsTheCopyRemovesItAndMatchesTheUnstagedRun) {
  using crackseg::test::run_cli;
  crackseg::test::TempDir tmp;
  auto r = run_cli("synth --out " + (tmp / "synth.h5").string() + " --count 12 --size 32 --seed 2");
  ASSERT_EQ(r.code, 0) << r.output;
  fs::create_directories(tmp / "stage");
  std::ofstream(tmp / "run.toml") << "[data]\npath = \"" << (tmp / "synth.h5").string()
                                  << "\"\ncrop = 0\naugment = false\n[model]\nname = \"unet\"\nbase = 2\ndepth = 1\n"
                                     "dropout = 0.0\n[train]\nepochs = 2\nbatch = 4\nmicro_batch = 2\nthreads = 1\n"
                                     "determinism = \"bitwise\"\n";
  const std::string base = (tmp / "run.toml").string();
  r = run_cli("train " + base + " train.out='\"" + (tmp / "plain").string() + "\"' --quiet");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_cli("train " + base + " data.stage=node data.stage_dir='\"" + (tmp / "stage").string() + "\"' train.out='\"" +
              (tmp / "staged").string() + "\"'");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("staged " + (tmp / "synth.h5").string() + " to " + (tmp / "stage").string()),
            std::string::npos) << r.output;

  const auto plain = read_json(tmp / "plain" / "result.json"), staged = read_json(tmp / "staged" / "result.json");
  ASSERT_TRUE(staged.contains("staging")) << staged.dump(2);
  const auto& s = staged.at("staging");
  EXPECT_EQ(s.at("mode"), "node");
  EXPECT_EQ(s.at("source"), (tmp / "synth.h5").string());
  EXPECT_EQ(fs::path(s.at("path").get<std::string>()).parent_path().parent_path(), tmp / "stage");
  EXPECT_EQ(s.at("bytes"), fs::file_size(tmp / "synth.h5"));
  EXPECT_EQ(s.at("checksum"), plain.at("dataset").at("checksum"));
  EXPECT_EQ(s.at("nodes"), 1);
  EXPECT_GE(s.at("copy_s").get<double>(), s.at("verify_s").get<double>());
  EXPECT_FALSE(plain.contains("staging"));
  EXPECT_EQ(staged.at("config").at("data").at("path"), (tmp / "synth.h5").string());
  EXPECT_EQ(plain.at("metrics"), staged.at("metrics"));
  EXPECT_TRUE(fs::is_empty(tmp / "stage")) << "the staged copy was left behind";

  // A bad stage value is an input error naming the key.
  r = run_cli("train " + base + " data.stage=disk --quiet");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("data.stage"), std::string::npos) << r.output;
}

}  // namespace
