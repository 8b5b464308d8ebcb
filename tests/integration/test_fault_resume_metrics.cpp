// ctest-labels: fault integration
// ctest-timeout: 240
// Issue 12 item 8: metrics.csv after a resume mid-epoch reports the whole epoch's train_loss
// (the checkpoint carries the epoch's partial loss sum), equal to the uninterrupted run's.
#include <gtest/gtest.h>

#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

// The train_loss cell of the first data row of metrics.csv.
std::string train_loss(const fs::path& csv) {
  std::istringstream in(test::slurp(csv));
  std::string header, row;
  std::getline(in, header);
  std::getline(in, row);
  std::vector<std::string> h, r;
  for (std::istringstream hs(header); std::getline(hs, header, ',');) h.push_back(header);
  for (std::istringstream rs(row); std::getline(rs, row, ',');) r.push_back(row);
  for (std::size_t i = 0; i < h.size() && i < r.size(); ++i)
    if (h[i] == "train_loss") return r[i];
  return "";
}

}  // namespace

TEST(FaultResumeMetrics, ResumedEpochTrainLossEqualsTheUninterruptedOne) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path a = tmp / "a", b = tmp / "b";
  const fs::path cfg = test::tiny_config(tmp.path(), data, tmp / "unused", "");
  const std::vector<std::string> common{"train", cfg.string(), "train.determinism=\"bitwise\"",
                                        "data.val_split=\"\"", "data.test_split=\"\"", "--quiet"};
  auto with = [&](std::vector<std::string> more) {
    auto v = common;
    v.insert(v.end(), more.begin(), more.end());
    return test::crackseg(v);
  };
  auto r = test::run_for(with({"train.out=\"" + a.string() + "\""}), tmp / "a.log", 120);
  ASSERT_EQ(r.code, 0) << r.output;
  // Stopped after 2 of the epoch's steps (a checkpoint mid-epoch), then resumed to the end.
  r = test::run_for(with({"train.out=\"" + b.string() + "\"", "train.steps=2"}), tmp / "b1.log", 120);
  ASSERT_EQ(r.code, 0) << r.output;
  r = test::run_for(with({"train.out=\"" + b.string() + "\""}), tmp / "b2.log", 120);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string la = train_loss(a / "metrics.csv"), lb = train_loss(b / "metrics.csv");
  ASSERT_FALSE(la.empty());
  EXPECT_EQ(lb, la) << "resumed epoch's train_loss must average all its steps";
}
