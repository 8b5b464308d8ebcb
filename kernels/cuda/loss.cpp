#include <algorithm>
#include <cmath>

#include "kernels/cuda/loss.hpp"
#include "src/core/error.hpp"

namespace crackseg::cuda {

namespace {
double num(const nlohmann::json& s, const char* key, double def) {
  return s.is_object() && s.contains(key) && s[key].is_number() ? s[key].get<double>() : def;
}
// Same test as lossk::IndexMap::identity(): layouts coincide unless exactly one is a
// channels-last 4-D tensor with C > 1.
bool channels_last(const Tensor& t) { return t.rank() == 4 && t.format() == Format::nhwc && t.dim(1) > 1; }
void expect_f32_cuda(const Tensor& t, const std::string& what, const std::string& loss) {
  if (!t.defined()) throw InputError("cuda loss " + loss + ": " + what + " is undefined");
  if (t.device() != Device::cuda) throw InputError("cuda loss " + loss + ": " + what + " must be a cuda tensor");
  if (t.dtype() != DType::f32) throw InputError("cuda loss " + loss + ": " + what + " must be f32, got " + to_string(t.dtype()));
}
}  // namespace

DeviceLossSpec device_loss_spec(const nlohmann::json& s, const LossContext& ctx) {
  DeviceLossSpec d;
  if (s.is_object() && s.contains("name") && s["name"].is_string()) d.name = s["name"].get<std::string>();
  if (d.name == "weighted_bce") {
    const double f = num(s, "crack_fraction", ctx.crack_fraction);
    if (!(f > 0 && f < 1)) throw InputError("[loss] crack_fraction: weighted_bce needs a value in (0, 1), got " + std::to_string(f));
    d.w0 = 1.0 / (2.0 * (1.0 - f));
    d.w1 = 1.0 / (2.0 * f);
  }
  if (d.name == "softmax_ce" && s.is_object() && s.contains("class_weights"))
    throw InputError("[loss] class_weights: softmax_ce class weights are not implemented on the cuda device yet "
                     "(train.device = \"cpu\" has them)");
  d.gamma = num(s, "gamma", 2.0);
  d.alpha = num(s, "alpha", 0.25);
  d.smooth = num(s, "smooth", 1.0);
  d.bce_weight = num(s, "bce_weight", 1.0);
  d.dice_weight = num(s, "dice_weight", 1.0);
  d.eps = num(s, "eps", 1.0);
  return d;
}

DeviceLoss::DeviceLoss(DeviceLossSpec spec) : spec_(std::move(spec)) {
  static const char* known[] = {"bce", "weighted_bce", "balanced_bce", "focal", "dice",
                                "bce_dice", "f1", "pseudo_f1", "softmax_ce"};
  if (std::none_of(std::begin(known), std::end(known), [&](const char* k) { return spec_.name == k; }))
    throw InputError("cuda loss: unknown loss '" + spec_.name + "'");
}

LossOutput DeviceLoss::forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits,
                                        double grad_scale) {
  const std::string& n = spec_.name;
  expect_f32_cuda(logits, "logits", n);
  expect_f32_cuda(target, "target", n);
  expect_f32_cuda(dlogits, "dlogits", n);
  if (logits.numel() == 0) throw InputError("cuda loss " + n + ": empty logits " + to_string(logits.dims()));
  dlogits.expect_dims(logits.dims(), ("cuda loss " + n + " dlogits").c_str());
  if (channels_last(logits) != channels_last(dlogits))
    throw InputError("cuda loss " + n + ": dlogits must have the memory layout of logits");
  if (!std::isfinite(grad_scale)) throw InputError("cuda loss " + n + ": grad_scale is not finite");
  const float* x = logits.data<float>();
  const float* y = target.data<float>();
  float* dx = dlogits.data<float>();
  const int64_t count = logits.numel();
  const double m = static_cast<double>(count);

  if (n == "softmax_ce") {
    Dims index_dims = logits.dims();
    if (index_dims.size() >= 2) index_dims[1] = 1;
    SoftmaxCeArgs a;
    a.index_target = target.dims() != logits.dims();
    if (a.index_target && target.dims() != index_dims)
      throw InputError("cuda loss softmax_ce: target must be " + to_string(logits.dims()) + " or " +
                       to_string(index_dims) + ", got " + to_string(target.dims()));
    if (!a.index_target && channels_last(logits) != channels_last(target))
      throw InputError("cuda loss softmax_ce: target must have the memory layout of logits");
    const auto& d = logits.dims();
    a.n = d[0];
    a.c = d.size() >= 2 ? d[1] : 1;
    a.s = a.n && a.c ? count / (a.n * a.c) : 0;
    if (a.c < 2) throw InputError("cuda loss softmax_ce: logits need C >= 2 channels, got " + to_string(d));
    const bool cl = channels_last(logits);
    a.sn = a.c * a.s;
    a.sc = cl ? 1 : a.s;
    a.ss = cl ? a.c : 1;
    a.scale = grad_scale;
    double sums[2] = {0, 0};
    softmax_ce_pass(a, x, y, dx, sums);
    if (sums[1] > 0)
      throw InputError("cuda loss softmax_ce: " + std::to_string(static_cast<int64_t>(sums[1])) +
                       " target pixels are not class indices in [0, " + std::to_string(a.c - 1) + "]");
    return {sums[0] / static_cast<double>(a.n * a.s), {}};
  }

  if (target.dims() != logits.dims())
    throw InputError("cuda loss " + n + ": target must match logits: expected " + to_string(logits.dims()) +
                     ", got " + to_string(target.dims()));
  if (channels_last(logits) != channels_last(target))
    throw InputError("cuda loss " + n + ": target must have the memory layout of logits (convert it once per batch)");

  SigmoidPassArgs p;
  double s[4] = {0, 0, 0, 0};
  if (n == "bce" || n == "weighted_bce" || n == "balanced_bce") {
    double w0 = spec_.w0, w1 = spec_.w1;
    if (n == "bce") w0 = w1 = 1.0;
    if (n == "balanced_bce") {
      sigmoid_loss_pass({SigmoidPass::sum_y}, x, y, nullptr, count, s, 1);
      const double n1 = s[0];
      w0 = w1 = 1.0;
      if (n1 > 0 && n1 < m) {
        w1 = m / (2.0 * n1);
        w0 = m / (2.0 * (m - n1));
      }
    }
    p = {SigmoidPass::bce, w0, w1, 1.0, 0, 0, grad_scale * (1.0 / m)};
    sigmoid_loss_pass(p, x, y, dx, count, s, 2);
    if (n == "bce") return {s[0] / m, {{"bce", s[0] / m}}};
    return {s[0] / m, {{"bce", s[1] / m}, {"w0", w0}, {"w1", w1}}};
  }
  if (n == "focal") {
    const double a1 = spec_.alpha < 0 ? 1.0 : spec_.alpha, a0 = spec_.alpha < 0 ? 1.0 : 1.0 - spec_.alpha;
    p = {SigmoidPass::focal, spec_.gamma, a0, a1, 0, 0, grad_scale / m};
    sigmoid_loss_pass(p, x, y, dx, count, s, 2);
    return {s[0] / m, {{"bce", s[1] / m}}};
  }
  // The rest need micro-batch statistics first: {sum p y, sum p, sum y, bce sum}.
  sigmoid_loss_pass({SigmoidPass::overlap_stats}, x, y, nullptr, count, s, 4);
  const double inter = s[0], sum_p = s[1], sum_y = s[2], bce = s[3] / m;
  double none[1];
  if (n == "dice" || n == "bce_dice") {
    const double bw = n == "dice" ? 0.0 : spec_.bce_weight, dw = n == "dice" ? 1.0 : spec_.dice_weight;
    const double nu = 2 * inter + spec_.smooth, de = sum_p + sum_y + spec_.smooth;
    const double dice = de > 0 ? nu / de : 1.0;
    p = {SigmoidPass::dice_grad, nu, de, de > 0 ? 1.0 / (de * de) : 0.0, dw, bw / m, grad_scale};
    sigmoid_loss_pass(p, x, y, dx, count, none, 0);
    return {bw * bce + dw * (1 - dice), {{"bce", bce}, {"dice", dice}}};
  }
  if (n == "f1") {
    const double nu = 2 * inter + spec_.eps, de = sum_p + sum_y + spec_.eps;
    p = {SigmoidPass::f1_grad, nu > 0 ? 1.0 / nu : 0.0, de > 0 ? 1.0 / de : 0.0, 0, 0, 0, grad_scale};
    sigmoid_loss_pass(p, x, y, dx, count, none, 0);
    const bool ok = nu > 0 && de > 0;
    return {ok ? std::log(de) - std::log(nu) : 0.0, {{"bce", bce}, {"f1", ok ? nu / de : 0.0}}};
  }
  // pseudo_f1 (Kobayashi eq. 11)
  const double denom = sum_y + sum_p;
  const double w0 = denom > 0 ? 1.0 / denom : 0.0;
  const double w1 = sum_y > 0 ? 1.0 / std::max(inter, 1e-30) - w0 : 0.0;
  p = {SigmoidPass::pseudo_f1_grad, w0, w1, 0, 0, 0, grad_scale};
  sigmoid_loss_pass(p, x, y, dx, count, none, 0);
  return {bce, {{"bce", bce}, {"f1", denom > 0 ? 2.0 * inter / denom : 1.0}}};
}

}  // namespace crackseg::cuda
