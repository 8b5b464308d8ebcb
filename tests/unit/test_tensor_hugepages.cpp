// ctest-link: crackseg_nn
// Large CPU tensors (>= 4 MB) start on a 2 MB boundary and their mapping is eligible for
// transparent huge pages (the kernel's own verdict, /proc/self/smaps "THPeligible"), small
// ones and CRACKSEG_THP=0 keep ordinary 64-byte-aligned allocations. Skips where the kernel
// never gives THP or does not report eligibility.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "src/tensor/tensor.hpp"

using namespace crackseg;

namespace {

std::string thp_mode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  std::getline(f, s);
  const auto a = s.find('['), b = s.find(']');
  return a == std::string::npos || b == std::string::npos ? "" : s.substr(a + 1, b - a - 1);
}

// THPeligible of the mapping that holds `p`: 1, 0, or -1 when smaps does not say.
int thp_eligible(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(f, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-' && line.find(':') > line.find(' ')) {
      inside = lo <= addr && addr < hi;
      continue;
    }
    if (inside && line.rfind("THPeligible:", 0) == 0) return std::stoi(line.substr(12));
  }
  return -1;
}

}  // namespace

TEST(TensorHugePages, LargeBuffersAreAlignedAndEligibleSmallOnesAreNot) {
  const std::string mode = thp_mode();
  if (mode.empty() || mode == "never") GTEST_SKIP() << "transparent huge pages: '" << mode << "'";
  unsetenv("CRACKSEG_THP");
  Tensor big = Tensor::zeros({3, 1 << 20});  // 12 MB
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big.raw()) % (2u << 20), 0u);
  const int e = thp_eligible(big.raw());
  if (e < 0) GTEST_SKIP() << "/proc/self/smaps has no THPeligible field";
  EXPECT_EQ(e, 1) << "a 12 MB tensor's mapping is not eligible for huge pages (THP mode " << mode << ")";
  if (mode == "madvise") {
    setenv("CRACKSEG_THP", "0", 1);
    Tensor plain = Tensor::zeros({3, 1 << 20});
    unsetenv("CRACKSEG_THP");
    EXPECT_EQ(thp_eligible(plain.raw()), 0) << "CRACKSEG_THP=0 still asked for huge pages";
  }
  Tensor small = Tensor::zeros({1000});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small.raw()) % 64, 0u);
}
