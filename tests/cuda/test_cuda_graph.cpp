// ctest-labels: cuda
// ctest-link: crackseg_cuda
// Whole models on the CUDA backend against the reference backend (itself held to finite
// differences in tests/unit): the same seeded weights, input, sample ids and output
// gradient must give the same logits and the same gradient for every parameter, through
// the Graph (multi-consumer skips, concat, dropout, batchnorm in training mode). Models:
// a small U-Net, a small Spiral-Net and the patch CNN (flatten, linear). TF32 off,
// deterministic algorithms. Skips without a device.
//
// Then whole training steps (zero_grad, forward, loss, backward, gradient sync, optimizer)
// with the trainer's device kits: "cpu" on the reference backend against "cuda" (DeviceLoss
// with the host target uploaded, NCCL + DeviceGradientSync on one rank, DeviceOptimizer):
// the same losses and weights after three steps. The Graph reaches device memory only
// through the Backend hooks (copy, accumulate, zero).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "cuda_test_util.hpp"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "kernels/cuda/train_kit.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/models/model.hpp"
#include "src/train/train_device.hpp"

using namespace crackseg;
using test::close;
using test::random_host;

namespace {

void compare_model(const nlohmann::json& cfg, int64_t size, double rtol) {
  SCOPED_TRACE(cfg.dump());
  auto ref_model = build_model(cfg);
  auto dev_model = build_model(cfg);
  auto ref_be = make_backend("reference-nhwc");
  auto dev_be = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  ref_model->graph.instantiate(*ref_be, 126);
  dev_model->graph.instantiate(*dev_be, 126);

  const Dims in{2, 3, size, size};
  Tensor x = random_host(in, 1, 0.0f, 1.0f, Format::nhwc);
  const std::vector<uint64_t> ids = {17, 4242};
  const StepContext ctx{.training = true, .seed = 126, .epoch = 2, .sample_ids = ids};
  const Tensor& y_ref = ref_model->graph.forward(ctx, x);
  const Tensor& y_dev = dev_model->graph.forward(ctx, cuda::to_device(x));
  EXPECT_TRUE(close(y_dev, y_ref, 1e-4, rtol)) << "logits";

  Tensor g = random_host(y_ref.dims(), 2, -1.0f, 1.0f, y_ref.format());
  ref_model->graph.zero_grad();
  dev_model->graph.zero_grad();
  ref_model->graph.backward(ctx, g);
  dev_model->graph.backward(ctx, cuda::to_device(g));
  auto rp = ref_model->graph.params();
  auto dp = dev_model->graph.params();
  ASSERT_EQ(rp.size(), dp.size());
  for (std::size_t i = 0; i < rp.size(); ++i) {
    // Gradients sum over the whole batch and image: scale the absolute part by their size.
    double scale = 0;
    for (float v : rp[i]->grad.span<float>()) scale = std::max(scale, static_cast<double>(std::abs(v)));
    EXPECT_TRUE(close(dp[i]->grad, rp[i]->grad, 1e-4 * std::max(1.0, scale), rtol)) << rp[i]->name;
  }
}

}  // namespace

TEST(CudaGraph, UNetMatchesTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_model({{"name", "unet"}, {"base", 4}, {"depth", 2}, {"dropout", 0.1}}, 16, 1e-3);
}

TEST(CudaGraph, SpiralNetMatchesTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_model({{"name", "spiral_net"}, {"depths", {1, 2, 3}}, {"width", 0.0625}}, 31, 1e-3);
}

TEST(CudaGraph, PatchCnnMatchesTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_model({{"name", "patch_cnn"}, {"h", 13}, {"s", 2}}, 27, 1e-3);
}

namespace {

struct Trainee {
  std::unique_ptr<Model> model;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<train::DeviceKit> kit;
  std::unique_ptr<train::StepLoss> loss;
  std::unique_ptr<train::StepOptimizer> opt;
  std::unique_ptr<train::StepSync> sync;
  Tensor dlogits;

  Trainee(const nlohmann::json& model_cfg, std::unique_ptr<Backend> be, const std::string& device,
          dist::Communicator& comm) : model(build_model(model_cfg)), backend(std::move(be)) {
    const nlohmann::json cfg = {{"train", {{"determinism", "bitwise"}}}};
    kit = train::make_device_kit(device, cfg);
    model->graph.instantiate(*backend, 126);
    auto params = model->graph.params();
    loss = kit->make_loss({{"name", "bce_dice"}}, {});
    OptimConfig oc;
    oc.name = "sgd";
    oc.lr = 0.05;
    oc.momentum = 0.9;
    opt = kit->make_optimizer(oc, params);
    sync = kit->make_sync(comm, params, {.mode = dist::Determinism::fast}, 1);
  }

  double step(const Tensor& x, const Tensor& target, int64_t t) {
    const std::vector<uint64_t> ids = {3, 99};
    const StepContext ctx{.training = true, .seed = 126, .epoch = static_cast<uint64_t>(t), .sample_ids = ids};
    model->graph.zero_grad();
    const Tensor& y = model->graph.forward(ctx, x);  // x on the host: the Graph uploads it
    if (!dlogits.defined()) dlogits = Tensor::empty(y.dims(), DType::f32, y.format(), y.device());
    const double value = loss->forward_backward(y, target, dlogits, 1.0).loss;
    model->graph.backward(ctx, dlogits);
    const auto n = model->graph.params().size();
    for (std::size_t i = n; i-- > 0;) sync->mark_ready(i);
    sync->finish();
    EXPECT_TRUE(opt->step().applied);
    model->graph.mark_params_changed();
    return value;
  }
};

void compare_training(const nlohmann::json& cfg, int64_t size) {
  SCOPED_TRACE(cfg.dump());
  cuda::register_cuda_training();
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  Trainee ref(cfg, make_backend("reference-nhwc"), "cpu", comm);
  Trainee dev(cfg, cuda::make_cuda_backend({.tf32 = false, .deterministic = true}), "cuda", comm);
  const Tensor x = random_host({2, 3, size, size}, 11, 0.0f, 1.0f, Format::nhwc);
  const Dims out_dims = ref.model->graph.output_dims(x.dims());
  Tensor target = random_host(out_dims, 12, 0.0f, 1.0f, out_dims.size() == 4 ? Format::nhwc : Format::plain);
  for (float& v : target.span<float>()) v = v > 0.7f ? 1.0f : 0.0f;
  for (int64_t t = 1; t <= 3; ++t) {
    const double lr = ref.step(x, target, t), ld = dev.step(x, target, t);
    EXPECT_NEAR(ld, lr, 1e-4 * std::max(1.0, std::abs(lr))) << "step " << t;
  }
  auto rp = ref.model->graph.params();
  auto dp = dev.model->graph.params();
  ASSERT_EQ(rp.size(), dp.size());
  for (std::size_t i = 0; i < rp.size(); ++i) {
    double scale = 0;
    for (float v : rp[i]->value.span<float>()) scale = std::max(scale, static_cast<double>(std::abs(v)));
    EXPECT_TRUE(close(dp[i]->value, rp[i]->value, 1e-4 * std::max(1.0, scale), 1e-3)) << rp[i]->name;
  }
  auto rb = ref.model->graph.buffers();
  auto db = dev.model->graph.buffers();
  ASSERT_EQ(rb.size(), db.size());
  for (std::size_t i = 0; i < rb.size(); ++i)
    EXPECT_TRUE(close(*db[i].second, *rb[i].second, 1e-4, 1e-3)) << rb[i].first;
}

}  // namespace

TEST(CudaGraph, UNetTrainingStepsMatchTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_training({{"name", "unet"}, {"base", 4}, {"depth", 2}, {"dropout", 0.1}}, 16);
}

TEST(CudaGraph, PatchCnnTrainingStepsMatchTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_training({{"name", "patch_cnn"}, {"h", 13}, {"s", 2}}, 27);
}
