// ctest-labels: cuda
// ctest-link: crackseg_cuda crackseg_train
// A short training run on the device: conv -> batchnorm -> leaky relu -> dropout -> 1x1
// conv, BCE on the device, Adam on the device, 40 steps on one fixed batch whose mask is a
// function of the image. The loss must fall well below where it started; a second run from
// the same seeds must give the same loss bits (deterministic mode). Skips without a device.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "cuda_test_util.hpp"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/loss.hpp"
#include "kernels/cuda/optim.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/layers/shapes.hpp"

using namespace crackseg;
using test::random_host;

namespace {

struct Net {
  std::unique_ptr<Backend> be = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<Tensor> acts, grads;  // acts[0] = input; acts[i+1] = layers[i] output
  std::vector<Tensor> m, v;         // Adam state per parameter

  Net(const Dims& in) {
    const std::vector<LayerSpec> specs = {Conv2dSpec{3, 8, 3, 1, 1}, BatchNorm2dSpec{8}, LeakyReluSpec{0.01f},
                                          DropoutSpec{0.1f}, Conv2dSpec{8, 1, 1, 1, 0}};
    Dims d = in;
    acts.push_back(Tensor::empty(d, DType::f32, Format::nhwc, Device::cuda));
    grads.push_back(Tensor{});
    uint64_t index = 0;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      layers.push_back(be->make_layer(specs[i], "l" + std::to_string(i)));
      const Dims ins[] = {d};
      layers.back()->plan(ins);
      d = layers.back()->output_dims(ins);
      acts.push_back(Tensor::empty(d, DType::f32, Format::nhwc, Device::cuda));
      grads.push_back(Tensor::empty(d, DType::f32, Format::nhwc, Device::cuda));
      const auto infos = param_infos(specs[i]);
      for (std::size_t k = 0; k < infos.size(); ++k) {
        Tensor host = Tensor::empty(infos[k].dims);
        init_param(host, infos[k], 126, index++);
        Param* p = layers.back()->params()[k];
        be->upload(host, p->value);
        m.push_back(Tensor::zeros(infos[k].dims));
        v.push_back(Tensor::zeros(infos[k].dims));
        m.back() = cuda::to_device(m.back());
        v.back() = cuda::to_device(v.back());
      }
    }
  }

  double step(cuda::DeviceLoss& loss, const Tensor& target, int64_t t) {
    const std::vector<uint64_t> ids = {0, 1, 2, 3};
    const StepContext ctx{.training = true, .seed = 5, .epoch = static_cast<uint64_t>(t), .sample_ids = ids};
    for (std::size_t i = 0; i < layers.size(); ++i) {
      layers[i]->params_changed();
      const Tensor* in[] = {&acts[i]};
      layers[i]->forward(ctx, in, acts[i + 1]);
    }
    const double value = loss.forward_backward(acts.back(), target, grads.back()).loss;
    for (std::size_t i = layers.size(); i-- > 0;) {
      const Tensor* in[] = {&acts[i]};
      Tensor* din[] = {i == 0 ? nullptr : &grads[i]};
      layers[i]->backward(ctx, in, acts[i + 1], grads[i + 1], din);
    }
    std::size_t k = 0;
    for (auto& l : layers)
      for (Param* p : l->params()) {
        cuda::adam_update({.lr = 1e-2, .step = t}, p->value.data<float>(), p->grad.data<float>(),
                          m[k].data<float>(), v[k].data<float>(), p->value.numel());
        cuda::zero(p->grad);
        ++k;
      }
    return value;
  }
};

std::vector<double> train(int steps) {
  const Dims d{4, 3, 24, 24};
  Net net(d);
  Tensor x = random_host(d, 9, -1, 1, Format::nhwc);
  Tensor y = Tensor::empty({4, 1, 24, 24}, DType::f32, Format::nhwc);
  for (int64_t n = 0; n < 4; ++n)
    for (int64_t h = 0; h < 24; ++h)
      for (int64_t w = 0; w < 24; ++w) y.at(n, 0, h, w) = x.at(n, 0, h, w) + 0.5f * x.at(n, 1, h, w) > 0.2f ? 1.0f : 0.0f;
  cuda::copy(x, net.acts[0]);
  Tensor yd = cuda::to_device(y);
  cuda::DeviceLoss loss(cuda::device_loss_spec({{"name", "bce"}}));
  std::vector<double> curve;
  for (int t = 1; t <= steps; ++t) curve.push_back(net.step(loss, yd, t));
  return curve;
}

}  // namespace

TEST(CudaTrain, LossFallsAndIsReproducible) {
  CRACKSEG_REQUIRE_GPU();
  const auto a = train(40);
  EXPECT_LT(a.back(), 0.5 * a.front()) << "first " << a.front() << ", last " << a.back();
  const auto b = train(40);
  EXPECT_EQ(a, b);  // deterministic algorithms, fixed reductions: identical bits
}
