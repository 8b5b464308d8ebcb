// Which of our own vector kernels may run (no oneDNN here: the dropout mask code includes it
// too).
#pragma once
#include <cstdlib>
#include <string_view>

namespace crackseg::onednn {

// Whether our own AVX-512 / AVX2 kernels may run: the CPU has the instructions and they are not
// switched off: CRACKSEG_NO_AVX512=1 leaves the AVX2 paths, CRACKSEG_NO_AVX2=1 the portable
// ones only (tests set them; also a field workaround). Read at each call; layers decide once
// (plan or first use).
[[nodiscard]] inline bool simd_switched_off(const char* var) {
  const char* v = std::getenv(var);
  return v && std::string_view(v) == "1";
}
[[nodiscard]] inline bool avx2_enabled() {
  return !simd_switched_off("CRACKSEG_NO_AVX2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
[[nodiscard]] inline bool avx512_enabled() {
  return !simd_switched_off("CRACKSEG_NO_AVX512") && !simd_switched_off("CRACKSEG_NO_AVX2") &&
         __builtin_cpu_supports("avx512f");
}

}  // namespace crackseg::onednn
