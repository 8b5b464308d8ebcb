// ctest-labels: cuda
// ctest-link: crackseg_cuda
// Check macros, RAII owners and the device query. These parts need no GPU, so they run
// everywhere (the rest of the cuda label skips without a device).
#include <gtest/gtest.h>

#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/device.hpp"
#include "src/core/node_rank.hpp"

using namespace crackseg;

namespace {
int g_destroyed = 0;
void count_destroy(int) noexcept { ++g_destroyed; }
using Counted = cuda::Owner<int, &count_destroy>;

std::string message_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(CudaCheck, EachMacroCarriesTheCallTheLibraryMessageAndTheLocation) {
  const std::string cuda = message_of([] { CRACKSEG_CUDA_CHECK(cudaErrorInvalidValue); });
  EXPECT_NE(cuda.find("CUDA call `cudaErrorInvalidValue` failed at"), std::string::npos) << cuda;
  EXPECT_NE(cuda.find(cudaGetErrorString(cudaErrorInvalidValue)), std::string::npos) << cuda;
  EXPECT_NE(cuda.find("test_cuda_errors.cpp:"), std::string::npos) << cuda;

  const std::string dnn = message_of([] { CRACKSEG_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM); });
  EXPECT_NE(dnn.find("cuDNN call"), std::string::npos) << dnn;
  EXPECT_NE(dnn.find(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM)), std::string::npos) << dnn;

  const std::string blas = message_of([] { CRACKSEG_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); });
  EXPECT_NE(blas.find("cuBLAS call"), std::string::npos) << blas;
  EXPECT_NE(blas.find("CUBLAS_STATUS_INVALID_VALUE"), std::string::npos) << blas;

  const std::string nccl = message_of([] { CRACKSEG_NCCL_CHECK(ncclInvalidArgument); });
  EXPECT_NE(nccl.find("NCCL call"), std::string::npos) << nccl;
  EXPECT_NE(nccl.find(ncclGetErrorString(ncclInvalidArgument)), std::string::npos) << nccl;

  EXPECT_EQ(message_of([] { CRACKSEG_CUDA_CHECK(cudaSuccess); }), "");
  EXPECT_EQ(message_of([] { CRACKSEG_NCCL_CHECK(ncclSuccess); }), "");
}

TEST(CudaOwner, MoveOnlyAndReleasesExactlyOnce) {
  static_assert(!std::is_copy_constructible_v<Counted> && !std::is_copy_assignable_v<Counted>);
  static_assert(std::is_nothrow_move_constructible_v<Counted> && std::is_nothrow_move_assignable_v<Counted>);
  g_destroyed = 0;
  {
    Counted a(7);
    Counted b(std::move(a));
    EXPECT_FALSE(a);
    EXPECT_EQ(b.get(), 7);
    Counted c(9);
    c = std::move(b);  // releases 9, takes 7
    EXPECT_EQ(g_destroyed, 1);
    EXPECT_EQ(c.get(), 7);
    Counted d;  // null owns nothing
  }
  EXPECT_EQ(g_destroyed, 2);
  static_assert(!std::is_copy_constructible_v<cuda::DevicePtr> && !std::is_copy_constructible_v<cuda::Stream> &&
                !std::is_copy_constructible_v<cuda::NcclComm> && !std::is_copy_constructible_v<cuda::FilterDesc>);
}

TEST(CudaDevice, QueryNeverThrowsAndAgreesWithTheDeviceList) {
  const int n = cuda::cuda_device_count();
  EXPECT_GE(n, 0);
  EXPECT_EQ(static_cast<int>(cuda::cuda_devices().size()), n);
  const std::string text = cuda::describe_cuda_devices();
  EXPECT_NE(text.find("cuDNN"), std::string::npos) << text;
  if (n == 0) {
    EXPECT_NE(text.find("no CUDA devices"), std::string::npos) << text;
  } else {
    EXPECT_NE(text.find("cuda:0"), std::string::npos) << text;
  }
}

TEST(CudaDevice, AskingForCudaWithoutADeviceIsAClearError) {
  if (cuda::cuda_device_count() > 0) GTEST_SKIP() << "a device is present";
  const std::string msg = message_of([] { (void)cuda::make_cuda_backend(); });
  EXPECT_NE(msg.find("no CUDA device is visible"), std::string::npos) << msg;
}

TEST(CudaDevice, LocalRankComesFromMpiNotTheLauncher) {
  // Runtime recorded the MPI_COMM_TYPE_SHARED rank; a launcher variable cannot override it
  // (tests/integration/test_node_rank.cpp covers the variables used before MPI).
  ASSERT_TRUE(process_node_rank().has_value());
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
  EXPECT_EQ(cuda::local_rank_from_env(), process_node_rank()->local_rank);
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
}
