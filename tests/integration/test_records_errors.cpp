// ctest-labels: train
// ctest-timeout: 120
// A config error under several ranks is printed once (issue 13 item 12): every rank raises
// it alike, rank 0 prints it and ends the job (`mpiexec -np 2 crackseg train`).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <fstream>

#include "io/synth/synth.hpp"
#include "support/paths.hpp"

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
[train]
epochs = 1
batch = 2
micro_batch = 1
log_every = 1000
)";

}  // namespace

TEST(RecordsErrors, PrintedOnceUnderSeveralRanks) {
  test::TempDir dir;
  io::SynthOptions o;
  o.out = dir / "d.h5";
  o.count = 12;
  o.size = 32;
  o.threads = 1;
  (void)io::write_synth_dataset(o);
  const auto data = o.out;
  const auto cfg = dir / "bad.toml";
  std::ofstream(cfg) << kUnet << "\n";
  // A clean environment: this test process is itself an MPI singleton.
  const std::string cmd = "env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=" + dir.path().string() +
                          " mpiexec --allow-run-as-root --oversubscribe -np 2 " + test::binary().string() + " train " +
                          cfg.string() + " data.path=\"" + data.string() + "\" loss.name=softmax_ce train.out=" +
                          (dir / "run").string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  EXPECT_NE(WEXITSTATUS(status), 0) << out;
  std::size_t count = 0;
  for (std::size_t at = out.find("needs a model with 2 output classes"); at != std::string::npos;
       at = out.find("needs a model with 2 output classes", at + 1))
    ++count;
  EXPECT_EQ(count, 1u) << out;
}
