// ctest-labels: hdf5 integration
// ctest-link: crackseg_io
// The built `crackseg` binary: synth -> info, ingest with and without --skip-bad (exit codes,
// summary naming the bad file), and SIGINT/SIGTERM during a write leaving no output file.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "io/dataset/dataset.hpp"
#include "io/h5/util.hpp"
#include "tests/support/cli.hpp"
#include "tests/support/paths.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace {

using test::CmdResult;
CmdResult run(const std::string& args) { return test::run_cli(args); }

bool has(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

// Starts `crackseg synth` on a large count, waits for its temporary file, sends `sig`, and
// checks the exit code 128+sig and that neither the output nor the temporary file remains.
void interrupt_synth(int sig) {
  test::TempDir t;
  const fs::path out = t / "big.h5";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl(test::binary().c_str(), "crackseg", "synth", "--out", out.c_str(), "--count", "200000", "--size", "64",
          "--workers", "1", static_cast<char*>(nullptr));
    _exit(127);
  }
  const fs::path tmp = out.string() + ".tmp." + std::to_string(pid);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (!fs::exists(tmp) && std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0) << "synth exited early with status " << status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!fs::exists(tmp)) kill(pid, SIGKILL);
  ASSERT_TRUE(fs::exists(tmp)) << "synth never created " << tmp;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // mid-write
  kill(pid, sig);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal instead of exiting cleanly";
  EXPECT_EQ(WEXITSTATUS(status), 128 + sig);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(tmp));
}

}  // namespace

TEST(Cli, SynthThenInfo) {
  test::TempDir t;
  const fs::path out = t / "s.h5";
  const CmdResult s = run("synth --out " + out.string() + " --count 12 --size 64 --seed 3 --split 0.5,0.25,0.25");
  ASSERT_EQ(s.code, 0) << s.output;
  EXPECT_TRUE(has(s.output, "12 images 64x64")) << s.output;
  io::DatasetFile f(out);
  EXPECT_EQ(f.count(), 12u);
  const CmdResult i = run("info " + out.string());
  ASSERT_EQ(i.code, 0) << i.output;
  EXPECT_TRUE(has(i.output, "crackseg dataset, format 1")) << i.output;
  EXPECT_TRUE(has(i.output, "images: 12 of 64x64")) << i.output;
  EXPECT_TRUE(has(i.output, "crack-pixel fraction:  train")) << i.output;
  char all[128];
  std::snprintf(all, sizeof all, "%-24s %8zu %8zu %8zu %8u", "all", f.split("train").size(), f.split("val").size(),
                f.split("test").size(), 12u);
  EXPECT_TRUE(has(i.output, all)) << i.output;
  for (const auto& src : f.sources()) EXPECT_TRUE(has(i.output, src)) << i.output;
}

TEST(Cli, InfoRecognisesCheckpointsAndRejectsOtherFiles) {
  test::TempDir t;
  {
    h5::File f{CRACKSEG_H5_CHECK(H5Fcreate((t / "c.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
    h5::write_attribute(f.get(), "kind", std::string_view("checkpoint"));
  }
  // Recognised as a checkpoint, and this one lacks everything a checkpoint holds: a clear
  // error naming the file (real checkpoints: test_train_learns).
  const CmdResult c = run("info " + (t / "c.h5").string());
  EXPECT_EQ(c.code, 2);
  EXPECT_TRUE(has(c.output, "c.h5")) << c.output;
  { std::ofstream(t / "x.h5") << "text"; }
  const CmdResult x = run("info " + (t / "x.h5").string());
  EXPECT_EQ(x.code, 2);
  EXPECT_TRUE(has(x.output, "x.h5 is not an HDF5 file")) << x.output;
}

TEST(Cli, IngestReportsOrSkipsBadFiles) {
  test::TempDir t;
  const fs::path d = t / "in";
  fs::create_directories(d / "images");
  fs::create_directories(d / "masks");
  const cv::Mat img(20, 20, CV_8UC3, cv::Scalar(90, 100, 110)), mask(20, 20, CV_8U, cv::Scalar(0));
  for (const char* n : {"a", "b", "c"}) cv::imwrite((d / "images" / (std::string(n) + ".png")).string(), img);
  for (const char* n : {"a", "c"}) cv::imwrite((d / "masks" / (std::string(n) + ".png")).string(), mask);
  const fs::path out = t / "o.h5";
  const CmdResult bad = run("ingest " + d.string() + " --layout pairs --out " + out.string());
  EXPECT_EQ(bad.code, 2) << bad.output;
  EXPECT_TRUE(has(bad.output, "missing mask for images/b.png")) << bad.output;
  EXPECT_FALSE(fs::exists(out));
  const CmdResult ok = run("ingest " + d.string() + " --layout pairs --out " + out.string() + " --skip-bad --size 10");
  ASSERT_EQ(ok.code, 0) << ok.output;
  EXPECT_TRUE(has(ok.output, "2 images 10x10")) << ok.output;
  EXPECT_TRUE(has(ok.output, "skipped 1 bad file(s):\n  images/b.png: missing mask")) << ok.output;
  EXPECT_EQ(io::DatasetFile(out).count(), 2u);
  const CmdResult split = run("ingest " + d.string() + " --out " + out.string() + " --split 0.5,0.5");
  EXPECT_EQ(split.code, 2);
  EXPECT_TRUE(has(split.output, "--split '0.5,0.5'")) << split.output;
  const CmdResult layout = run("ingest " + d.string() + " --out " + out.string() + " --layout kaggle");
  EXPECT_EQ(layout.code, 2);
  EXPECT_TRUE(has(layout.output, "unknown --layout 'kaggle'")) << layout.output;
}

TEST(Cli, SigintDuringSynthLeavesNoOutput) { interrupt_synth(SIGINT); }
TEST(Cli, SigtermDuringSynthLeavesNoOutput) { interrupt_synth(SIGTERM); }
