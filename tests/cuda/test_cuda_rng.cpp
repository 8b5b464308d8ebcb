// ctest-labels: cuda
// ctest-link: crackseg_cuda
// The device computes the very Philox words the CPU does (rng.hpp compiled for the GPU), so
// CPU and GPU dropout masks agree bit for bit. Skips without a device.
#include <gtest/gtest.h>

#include <vector>

#include "cuda_test_util.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/context.hpp"
#include "kernels/cuda/elementwise.hpp"
#include "src/core/rng.hpp"

using namespace crackseg;

TEST(CudaRng, DeviceWordsEqualHostWords) {
  CRACKSEG_REQUIRE_GPU();
  auto& ctx = cuda::Context::get();
  for (uint64_t seed : {uint64_t{0}, uint64_t{126}, uint64_t{0xDEADBEEFCAFEull}}) {
    const int64_t count = 4099;  // not a multiple of 4: partial Philox blocks at both ends
    const uint64_t first = (uint64_t{0x9E37} << 32) + 3;
    cuda::DevicePtr buf(sizeof(uint32_t) * count);
    cuda::dropout_rng_words(seed, 7, 123456789ull, first, count, buf.as<uint32_t>());
    std::vector<uint32_t> host(count);
    CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(host.data(), buf.get(), buf.bytes(), cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
    for (int64_t i = 0; i < count; ++i)
      ASSERT_EQ(host[i], rng_word(seed, 7, 123456789ull, Purpose::dropout, first + static_cast<uint64_t>(i)))
          << "seed " << seed << " word " << i;
  }
}
