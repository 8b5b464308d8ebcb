// ctest-link: crackseg_nn
// CRACKSEG_GUARD_PAGES (debugging aid, docs/DEBUGGING.md): with "1" every CPU tensor ends
// exactly at an inaccessible page, so the first byte past its (64-byte rounded) end faults;
// with "w" that page is read-only (reads past the end succeed, writes fault); unset, tensors
// are ordinary allocations. test_bf16 relies on "1" to catch kernels that write out of bounds.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>

#include <unistd.h>

#include "src/tensor/tensor.hpp"

using namespace crackseg;

namespace {

// Writes one float just past the end of a fresh 64-byte-multiple tensor (16 floats).
void write_past_end() {
  Tensor t = Tensor::empty({16});
  volatile float* p = t.data<float>();
  p[16] = 1.0f;
}
float read_past_end() {
  Tensor t = Tensor::empty({16});
  volatile const float* p = t.data<float>();
  return p[16];
}

TEST(GuardPagesDeathTest, WritePastTheEndFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ::setenv("CRACKSEG_GUARD_PAGES", "1", 1);
        write_past_end();
      },
      "");
  EXPECT_DEATH(
      {
        ::setenv("CRACKSEG_GUARD_PAGES", "w", 1);
        write_past_end();
      },
      "");
}

TEST(GuardPagesDeathTest, ReadPastTheEndFaultsOnlyWithoutReadAccess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        ::setenv("CRACKSEG_GUARD_PAGES", "1", 1);
        (void)read_past_end();
      },
      "");
  ::setenv("CRACKSEG_GUARD_PAGES", "w", 1);
  EXPECT_EQ(read_past_end(), 0.0f);  // the read-only guard page is zero-filled
  ::unsetenv("CRACKSEG_GUARD_PAGES");
}

TEST(GuardPages, TensorsStillWorkAndEndAtThePage) {
  ::setenv("CRACKSEG_GUARD_PAGES", "1", 1);
  Tensor t = Tensor::zeros({3, 5});  // 60 bytes, rounded to 64
  for (float v : t.span<float>()) EXPECT_EQ(v, 0.0f);
  t.data<float>()[14] = 2.0f;
  EXPECT_EQ(t.data<float>()[14], 2.0f);
  const auto end = reinterpret_cast<std::uintptr_t>(t.data<float>()) + 64;
  EXPECT_EQ(end % static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE)), 0u) << "the tensor's rounded end is the guard page's start";
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data<float>()) % 64, 0u);
  ::unsetenv("CRACKSEG_GUARD_PAGES");
}

}  // namespace
