// ctest-labels: integration resume
// A checkpoint written before a config key existed resumes when the run uses that key's
// default (the checkpoint's run had it), and is refused when the run sets another value:
// the key train.parallel is removed from a checkpoint's stored config to stand for an older
// crackseg.
#include <gtest/gtest.h>

#include <hdf5.h>

#include "io/h5/h5.hpp"
#include "io/h5/util.hpp"
#include "src/checkpoint/checkpoint.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

namespace {

const char* kUnet = R"(
[data]
crop = 32
augment = false
[model]
name = "unet"
base = 4
depth = 2
[loss]
name = "bce"
[train]
epochs = 10
batch = 4
micro_batch = 2
seed = 5
determinism = "bitwise"
log_every = 1000
val_every = 1000
)";

train::TrainOutcome run_once(const std::vector<std::string>& ov) {
  const auto cfg = test::tiny_config(kUnet, ov);
  dist::MpiCommunicator comm(MPI_COMM_SELF, 60.0);
  train::TrainOptions opt;
  opt.quiet = true;
  return train::run_training(cfg, comm, opt);
}

// Rewrites the checkpoint's stored config without train.<key>.
void forget_key(const std::filesystem::path& ckpt, const std::string& key) {
  auto info = checkpoint::read_info(ckpt);
  auto cfg = nlohmann::json::parse(info.config_json);
  ASSERT_TRUE(cfg.at("train").contains(key));
  cfg["train"].erase(key);
  h5::File f{CRACKSEG_H5_CHECK(H5Fopen(ckpt.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
  h5::Group g{CRACKSEG_H5_CHECK(H5Gopen2(f.get(), "config", H5P_DEFAULT))};
  CRACKSEG_H5_CHECK(H5Adelete(g.get(), "json"));
  h5::write_attribute(g.get(), "json", std::string_view(cfg.dump()));
}

}  // namespace

TEST(ResumeCompat, MissingKeyMeansItsDefault) {
  const auto dir = test::shared_tmpdir("resume_compat");
  const auto data = test::make_synth(dir, 16, 32);
  const std::vector<std::string> base = {"data.path=\"" + data.string() + "\"",
                                         "train.out=\"" + (dir / "run").string() + "\""};
  std::vector<std::string> first = base;
  first.push_back("train.steps=1");
  run_once(first);
  forget_key(dir / "run" / "checkpoint.h5", "parallel");
  // Another value than the default is refused, naming the key...
  std::vector<std::string> other = base;
  other.push_back("train.steps=2");
  other.push_back("train.parallel=\"intra\"");
  try {
    run_once(other);
    ADD_FAILURE() << "resumed with train.parallel changed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train.parallel"), std::string::npos) << e.what();
  }
  // ...the default resumes (the old run had it) and continues to step 2.
  std::vector<std::string> same = base;
  same.push_back("train.steps=2");
  const auto out = run_once(same);
  EXPECT_EQ(out.result.at("steps").get<int64_t>(), 2);
  std::filesystem::remove_all(dir);
}
