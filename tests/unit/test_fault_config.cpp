// ctest-labels: unit fault
// ctest-link: crackseg_train crackseg_slurm
// Issue 12 item 10 (config part): an inline-table override sets its keys and keeps the
// table's others (`train={epochs=1}` used to drop every other [train] key);
// train.epochs = 0 is refused instead of "training" nothing and exiting 0.
#include <gtest/gtest.h>

#include "slurm/queue.hpp"
#include "src/config/config.hpp"
#include "src/core/error.hpp"

using namespace crackseg;
using namespace crackseg::config;

namespace {

ResolvedConfig resolve_text(const std::string& toml, std::vector<std::string> overrides) {
  RawConfig raw = raw_from_toml_text(toml, "run.toml");
  apply_overrides(raw, overrides);
  return resolve(raw);
}

}  // namespace

TEST(FaultConfig, InlineTableOverrideKeepsTheOtherKeys) {
  const auto rc = resolve_text("[train]\nbatch = 16\nmicro_batch = 2\nseed = 7\n", {"train={epochs=3, log_every=5}"});
  EXPECT_EQ(rc.values["train"]["epochs"], 3);
  EXPECT_EQ(rc.values["train"]["log_every"], 5);
  EXPECT_EQ(rc.values["train"]["batch"], 16);
  EXPECT_EQ(rc.values["train"]["micro_batch"], 2);
  EXPECT_EQ(rc.values["train"]["seed"], 7);
  // Same as the dotted spelling.
  EXPECT_EQ(rc.hash, resolve_text("[train]\nbatch = 16\nmicro_batch = 2\nseed = 7\n",
                                  {"train.epochs=3", "train.log_every=5"})
                         .hash);
}

TEST(FaultConfig, ZeroEpochsIsRefused) {
  try {
    (void)resolve_text("[train]\nepochs = 0\n", {});
    ADD_FAILURE() << "train.epochs = 0 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("epochs"), std::string::npos) << e.what();
  }
}

TEST(FaultConfig, AnIntegerBeyond64BitsIsRefused) {
  for (const std::vector<std::string>& ov : {std::vector<std::string>{"train.seed=12345678901234567890123"},
                                             std::vector<std::string>{}}) {
    const std::string toml = ov.empty() ? "[train]\nseed = 12345678901234567890123\n" : "[train]\n";
    try {
      const auto rc = resolve_text(toml, ov);
      ADD_FAILURE() << "accepted as seed " << rc.values["train"]["seed"];
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
    }
  }
}

// Issue 12 item 10: `sweep status` showed "failed, exit 0, CANCELLED" for a signalled task.
TEST(FaultConfig, SlurmExitCodeOfASignalledTaskIsNotZero) {
  EXPECT_EQ(sweep::slurm_exit_code("0:15"), 143);
  EXPECT_EQ(sweep::slurm_exit_code("0:9"), 137);
  EXPECT_EQ(sweep::slurm_exit_code("75:0"), 75);
  EXPECT_EQ(sweep::slurm_exit_code("0:0"), 0);
  EXPECT_EQ(sweep::slurm_exit_code("junk"), -1);
}
