#include "src/core/rng.hpp"

#include <numeric>

namespace crackseg {

std::vector<uint32_t> epoch_permutation(uint64_t seed, uint64_t epoch, uint32_t n) {
  std::vector<uint32_t> p(n);
  std::iota(p.begin(), p.end(), 0u);
  SampleRng rng(seed, epoch, n, Purpose::permutation);
  for (uint32_t i = n; i > 1; --i) {
    const uint32_t j = rng.below(i);
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

}  // namespace crackseg
