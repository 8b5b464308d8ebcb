#include "src/losses/loss.hpp"

#include <cmath>

#include "src/core/error.hpp"
#include "src/losses/loss_common.hpp"
#include "src/losses/loss_impl.hpp"
#include "src/optim/json_keys.hpp"

namespace crackseg {

namespace {
void expect_f32_cpu(const Tensor& t, const std::string& what, const std::string& loss) {
  if (!t.defined()) throw InputError("loss " + loss + ": " + what + " is undefined");
  if (t.device() != Device::cpu)
    throw InputError("loss " + loss + ": " + what + " must be on the CPU (the CUDA backend has its own kernels)");
  if (t.dtype() != DType::f32)
    throw InputError("loss " + loss + ": " + what + " must be f32, got " + to_string(t.dtype()) +
                     (what == "target" ? " (convert uint8 masks to float 0/1 once per batch)" : ""));
}
}  // namespace

LossOutput Loss::forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits, double grad_scale) {
  const std::string n = name();
  expect_f32_cpu(logits, "logits", n);
  expect_f32_cpu(target, "target", n);
  expect_f32_cpu(dlogits, "dlogits", n);
  if (logits.numel() == 0) throw InputError("loss " + n + ": empty logits " + to_string(logits.dims()));
  dlogits.expect_dims(logits.dims(), ("loss " + n + " dlogits").c_str());
  if (!lossk::IndexMap(logits, dlogits).identity())
    throw InputError("loss " + n + ": dlogits must have the memory layout of logits (logits " +
                     to_string(logits.format()) + ", dlogits " + to_string(dlogits.format()) + ")");
  if (target.dims() != logits.dims()) {
    Dims index_dims = logits.dims();
    if (index_dims.size() >= 2) index_dims[1] = 1;
    if (!(accepts_class_index_target() && target.dims() == index_dims))
      throw InputError("loss " + n + ": target must match logits: expected " + to_string(logits.dims()) + ", got " +
                       to_string(target.dims()));
  }
  if (!std::isfinite(grad_scale)) throw InputError("loss " + n + ": grad_scale is not finite");
  return compute(logits, target, dlogits, grad_scale);
}

const std::vector<std::string_view>& loss_names() {
  static const std::vector<std::string_view> names = {"bce",      "weighted_bce", "balanced_bce",
                                                      "focal",    "dice",         "bce_dice",
                                                      "f1",       "pseudo_f1",    "softmax_ce"};
  return names;
}

std::unique_ptr<Loss> make_loss(const nlohmann::json& sec, const LossContext& ctx) {
  constexpr std::string_view S = "loss";
  const std::string name = json_string(sec, S, "name", "bce");
  auto positive = [&](const std::string& key, double def) {
    const double v = json_number(sec, S, key, def);
    if (!(v > 0) || !std::isfinite(v)) throw_bad_value(S, key, std::to_string(v), "must be > 0");
    return v;
  };
  auto non_negative = [&](const std::string& key, double def) {
    const double v = json_number(sec, S, key, def);
    if (!(v >= 0) || !std::isfinite(v)) throw_bad_value(S, key, std::to_string(v), "must be >= 0");
    return v;
  };
  if (name == "bce") {
    check_keys(sec, S, {"name"});
    return lossimpl::make_bce();
  }
  if (name == "weighted_bce") {
    check_keys(sec, S, {"name", "crack_fraction"});
    const double f = json_number(sec, S, "crack_fraction", ctx.crack_fraction);
    if (!(f > 0 && f < 1))
      throw_bad_value(S, "crack_fraction", std::to_string(f),
                      "weighted_bce needs the training split's crack fraction in (0, 1) (set [loss] "
                      "crack_fraction or use a dataset with the split attribute)");
    return lossimpl::make_weighted_bce(1.0 / (2.0 * (1.0 - f)), 1.0 / (2.0 * f));
  }
  if (name == "balanced_bce") {
    check_keys(sec, S, {"name"});
    return lossimpl::make_balanced_bce();
  }
  if (name == "focal") {
    check_keys(sec, S, {"name", "gamma", "alpha"});
    const double gamma = non_negative("gamma", 2.0);
    const double alpha = json_number(sec, S, "alpha", 0.25);
    if (alpha > 1) throw_bad_value(S, "alpha", std::to_string(alpha), "must be in [0, 1] (or < 0 for none)");
    return lossimpl::make_focal(gamma, alpha);
  }
  if (name == "dice") {
    check_keys(sec, S, {"name", "smooth"});
    return lossimpl::make_dice(positive("smooth", 1.0));
  }
  if (name == "bce_dice") {
    check_keys(sec, S, {"name", "smooth", "bce_weight", "dice_weight"});
    return lossimpl::make_bce_dice(positive("smooth", 1.0), non_negative("bce_weight", 1.0),
                                   non_negative("dice_weight", 1.0));
  }
  if (name == "f1") {
    check_keys(sec, S, {"name", "eps"});
    return lossimpl::make_f1(positive("eps", 1.0));
  }
  if (name == "pseudo_f1") {
    check_keys(sec, S, {"name"});
    return lossimpl::make_pseudo_f1();
  }
  if (name == "softmax_ce") {
    check_keys(sec, S, {"name", "class_weights"});
    std::vector<double> w;
    if (sec.is_object() && sec.contains("class_weights") && sec["class_weights"].is_string()) {
      if (sec["class_weights"].get<std::string>() != "balanced")
        throw_bad_value(S, "class_weights", sec["class_weights"].dump(), "must be \"balanced\" or [w0, w1, ...]");
      const double f = ctx.crack_fraction;
      if (!(f > 0 && f < 1))
        throw_bad_value(S, "class_weights", "\"balanced\"",
                        "needs the training split's crack fraction in (0, 1) (the dataset has no such attribute): "
                        "give [w0, w1]");
      w = {1.0 / (2.0 * (1.0 - f)), 1.0 / (2.0 * f)};  // as weighted_bce: average 1 over the split
    } else {
      w = json_numbers(sec, S, "class_weights", {});
      for (const double v : w)
        if (!(v >= 0) || !std::isfinite(v)) throw_bad_value(S, "class_weights", std::to_string(v), "must be >= 0");
    }
    return lossimpl::make_softmax_ce(std::move(w));
  }
  throw_unknown_name(S, "loss name", name, loss_names());
}

}  // namespace crackseg
