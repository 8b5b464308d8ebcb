// ctest-labels: fault integration
// ctest-timeout: 180
// Issue 12 item 2: a full disk is a message, not a segfault. `train` with train.out on a
// full file system and `synth` onto one exit 1 with "No space left on device" naming the
// file; the previous checkpoint stays intact and no temporary file is left. Needs a small
// tmpfs: mounted when the test may (root), skipped with the reason otherwise.
#include <gtest/gtest.h>

#include <sys/mount.h>

#include <cerrno>
#include <cstring>

#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

class SmallDisk {
 public:
  SmallDisk(const fs::path& where, const std::string& size) : dir_(where) {
    fs::create_directories(dir_);
    const std::string opts = "size=" + size;
    if (mount("tmpfs", dir_.c_str(), "tmpfs", 0, opts.c_str()) == 0) mounted_ = true;
    else why_ = std::string("cannot mount a tmpfs at ") + dir_.string() + ": " + std::strerror(errno);
  }
  ~SmallDisk() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  [[nodiscard]] bool mounted() const { return mounted_; }
  [[nodiscard]] const std::string& why() const { return why_; }
  [[nodiscard]] const fs::path& path() const { return dir_; }

  // Fills the disk, then frees `leave` bytes.
  void fill(std::size_t leave) {
    const fs::path f = dir_ / "filler";
    {
      std::ofstream out(f, std::ios::binary);
      std::vector<char> block(4096, 'x');
      while (out.write(block.data(), block.size())) {
      }
    }
    const auto size = fs::file_size(f);
    fs::resize_file(f, size > leave ? size - leave : 0);
  }

 private:
  fs::path dir_;
  bool mounted_ = false;
  std::string why_;
};

std::vector<std::string> temp_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().filename().string().find(".tmp") != std::string::npos) out.push_back(e.path().string());
  return out;
}

}  // namespace

TEST(FaultFullDisk, TrainingOnAFullDiskExits1NamingTheFileAndKeepsTheCheckpoint) {
  test::TempDir tmp;
  SmallDisk disk(tmp / "disk", "4m");
  if (!disk.mounted()) GTEST_SKIP() << disk.why();
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path out = disk.path() / "run";
  const fs::path cfg = test::tiny_config(tmp.path(), data, out, "");
  auto r = test::run_for(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "a.log", 120);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string before = test::slurp(out / "checkpoint.h5");
  ASSERT_FALSE(before.empty());
  // Room for the small text files, not for a checkpoint.
  disk.fill(12 * 1024);
  r = test::run_for(test::crackseg({"train", cfg.string(), "train.epochs=2", "--quiet"}), tmp / "b.log", 120);
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.output;
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(out.string()), std::string::npos) << "the message names the file\n" << r.output;
  EXPECT_EQ(test::slurp(out / "checkpoint.h5"), before) << "the previous checkpoint must stay intact";
  EXPECT_EQ(temp_files(out), std::vector<std::string>{}) << r.output;
}

TEST(FaultFullDisk, SynthOntoAFullDiskExits1WithTheMessage) {
  test::TempDir tmp;
  SmallDisk disk(tmp / "disk", "256k");
  if (!disk.mounted()) GTEST_SKIP() << disk.why();
  const fs::path out = disk.path() / "synth.h5";
  const auto r = test::run_for(test::crackseg({"synth", "--out", out.string(), "--count", "400", "--size", "64",
                                               "--workers", "1"}),
                               tmp / "synth.log", 120);
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.output;
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(out.string()), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(temp_files(disk.path()), std::vector<std::string>{}) << r.output;
}
