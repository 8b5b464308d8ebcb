// Helpers for layer tests: deterministic random tensors, single-layer runs, per-op
// tolerance comparison (|a - b| <= atol + rtol * |ref|, as llm.c does).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <numeric>
#include <vector>

#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "src/graph/backend.hpp"
#include "src/layers/shapes.hpp"

namespace crackseg::test {

enum class Fill { normal, away_from_zero, distinct };

// 4-D tensors get `format`; others plain. Values depend only on (seed, logical index).
inline Tensor random_tensor(const Dims& d, uint64_t seed, Format format = Format::nchw, Fill fill = Fill::normal) {
  Tensor plain = Tensor::empty(d, DType::f32, d.size() == 4 ? Format::nchw : Format::plain);
  auto v = plain.span<float>();
  SampleRng rng(seed, 0, 0, Purpose::noise);
  if (fill == Fill::distinct) {  // spaced 0.02 apart: finite differences never swap a maximum
    std::vector<uint32_t> perm = epoch_permutation(seed, 0, static_cast<uint32_t>(v.size()));
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = 0.02f * (static_cast<float>(perm[i]) - static_cast<float>(v.size()) / 2.0f);
  } else {
    for (auto& x : v) {
      x = rng.normal();
      if (fill == Fill::away_from_zero) x = std::copysign(0.1f + std::fabs(x), x);
    }
  }
  if (d.size() != 4 || format == Format::nchw) return plain;
  return plain.to_format(format);
}

// Fills every parameter with random values (biases too, BN scale near 1) so gradient checks
// exercise them all.
inline void randomize_params(Layer& layer, uint64_t seed) {
  uint64_t k = 0;
  for (Param* p : layer.params()) {
    SampleRng rng(seed, 1, k++, Purpose::noise);
    const bool bn = std::holds_alternative<BatchNorm2dSpec>(layer.spec());
    for (auto& x : p->value.span<float>()) x = (bn && k == 1 ? 1.0f : 0.0f) + 0.5f * rng.normal();
    p->grad.zero_();
  }
}

// Max over elements of |got - want| / (atol + rtol * |want|); <= 1 means within tolerance.
// Compares logically (4-D tensors in any format).
inline double tolerance_ratio(const Tensor& got, const Tensor& want, double atol, double rtol, std::string* where = nullptr) {
  EXPECT_EQ(got.dims(), want.dims());
  const Tensor g = got.rank() == 4 ? got.to_format(Format::nchw) : got;
  const Tensor w = want.rank() == 4 ? want.to_format(Format::nchw) : want;
  double worst = 0;
  auto gs = g.span<float>();
  auto ws = w.span<float>();
  for (std::size_t i = 0; i < gs.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(gs[i]) - ws[i]);
    const double r = diff == 0 ? 0.0 : diff / (atol + rtol * std::fabs(ws[i]));  // atol = rtol = 0: exact
    if (!(r <= worst)) {  // catches NaN
      worst = std::isnan(r) ? 1e30 : r;
      if (where) *where = "element " + std::to_string(i) + ": got " + std::to_string(gs[i]) + " want " + std::to_string(ws[i]);
    }
  }
  return worst;
}

// Runs one layer: plan, forward into a fresh output in the backend's format.
inline Tensor run_forward(Backend& be, Layer& layer, const StepContext& ctx, const std::vector<Tensor>& in) {
  std::vector<Dims> dims;
  std::vector<const Tensor*> ptrs;
  for (const auto& t : in) dims.push_back(t.dims()), ptrs.push_back(&t);
  const Dims od = layer.output_dims(dims);
  Tensor out = Tensor::empty(od, DType::f32, od.size() == 4 ? be.activation_format() : Format::plain);
  layer.forward(ctx, ptrs, out);
  return out;
}

// One convolution or transposed convolution on a backend (optionally with a ReLU fused on the
// onednn side; the reference applies it by hand): forward, then backward twice (the
// gradients accumulate). Its output, input gradient, parameter gradients and the backend's
// precision line.
struct ConvLayerRun {
  Tensor out, din;
  std::vector<Tensor> grads;
  std::string summary;
};
template <class Spec>
ConvLayerRun run_conv_layer(const std::string& backend, const Spec& spec, const Dims& x, bool relu, uint64_t seed = 21) {
  auto be = make_backend(backend);
  auto layer = be->make_layer(spec, "t.conv");
  const bool fused = relu && backend == "onednn" && layer->fuse_activation(ReluSpec{});
  if (relu && backend == "onednn") {
    EXPECT_TRUE(fused);
  }
  layer->plan(std::vector<Dims>{x});
  randomize_params(*layer, seed);
  layer->params_changed();
  StepContext ctx;
  ctx.training = true;
  const Tensor in = random_tensor(x, seed + 1, be->activation_format());
  ConvLayerRun r;
  r.out = run_forward(*be, *layer, ctx, {in});
  Tensor pre = r.out;
  if (relu && !fused) {  // reference: y = max(pre, 0) by hand
    r.out = r.out.clone();
    for (float& v : r.out.span<float>()) v = v > 0.0f ? v : 0.0f;
  }
  Tensor dout = random_tensor(r.out.dims(), seed + 2, be->activation_format());
  if (relu && !fused) {  // d(pre) = dout where pre > 0
    auto d = dout.span<float>();
    auto p = pre.span<float>();
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = p[i] > 0.0f ? d[i] : 0.0f;
  }
  r.din = Tensor::zeros(x, DType::f32, in.format());
  const Tensor* ip = &in;
  Tensor* dp = &r.din;
  for (int k = 0; k < 2; ++k)
    layer->backward(ctx, std::span<const Tensor* const>(&ip, 1), fused ? r.out : pre, dout, std::span<Tensor* const>(&dp, 1));
  for (Param* p : layer->params()) r.grads.push_back(p->grad.clone());
  r.summary = be->precision_summary();
  return r;
}

// sum(out * r) in double.
inline double dot(const Tensor& out, const Tensor& r) {
  const Tensor o = out.rank() == 4 ? out.to_format(Format::nchw) : out;
  const Tensor q = r.rank() == 4 ? r.to_format(Format::nchw) : r;
  double s = 0;
  for (std::size_t i = 0; i < o.span<float>().size(); ++i) s += static_cast<double>(o.span<float>()[i]) * q.span<float>()[i];
  return s;
}

}  // namespace crackseg::test
