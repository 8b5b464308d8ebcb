#include <cmath>

#include "kernels/cuda/optim.hpp"
#include "src/core/error.hpp"
#include "kernels/cuda/tensor_ops.hpp"

namespace crackseg::cuda {

DeviceOptimizer::DeviceOptimizer(OptimConfig cfg, std::vector<Param*> params)
    : cfg_(std::move(cfg)), params_(std::move(params)), lr_(cfg_.lr) {
  if (cfg_.name != "adam" && cfg_.name != "adamw" && cfg_.name != "sgd")
    throw InputError("[optim] name: unknown optimizer '" + cfg_.name + "' (adam | adamw | sgd)");
  const bool adam = cfg_.name != "sgd";
  for (Param* p : params_) {
    if (p->value.device() != Device::cuda || p->grad.device() != Device::cuda)
      throw Error("DeviceOptimizer: parameter " + p->name + " is not on the cuda device");
    auto add = [&](const char* suffix) {
      Tensor t = Tensor::empty(p->value.dims(), DType::f32, Format::plain, Device::cuda);
      zero(t);
      state_.emplace_back(p->name + "." + suffix, std::move(t));
    };
    if (adam) {
      add("exp_avg");
      add("exp_avg_sq");
    } else if (cfg_.momentum > 0) {
      add("momentum_buffer");
    }
  }
}

StepInfo DeviceOptimizer::step() {
  StepInfo info;
  std::vector<const float*> grads;
  std::vector<int64_t> counts;
  for (Param* p : params_) grads.push_back(p->grad.data<float>()), counts.push_back(p->grad.numel());
  info.grad_norm = std::sqrt(sum_of_squares_all(grads, counts));  // parameter order, one read back
  if (!std::isfinite(info.grad_norm)) return info;
  if (cfg_.clip_norm > 0 && info.grad_norm > cfg_.clip_norm) {
    const double coef = cfg_.clip_norm / (info.grad_norm + 1e-6);
    for (Param* p : params_) scale_in_place(p->grad.data<float>(), coef, p->grad.numel());
  }
  if (cfg_.clip_value > 0)
    for (Param* p : params_) clamp_in_place(p->grad.data<float>(), static_cast<float>(cfg_.clip_value), p->grad.numel());
  const int64_t t = step_ + 1;
  const bool adam = cfg_.name != "sgd";
  std::size_t s = 0;
  for (Param* p : params_) {
    const double wd = p->decay ? cfg_.weight_decay : 0.0;
    if (adam) {
      adam_update({lr_, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, cfg_.name == "adamw", t}, p->value.data<float>(),
                  p->grad.data<float>(), state_[s].second.data<float>(), state_[s + 1].second.data<float>(),
                  p->value.numel());
      s += 2;
    } else {
      float* buf = cfg_.momentum > 0 ? state_[s++].second.data<float>() : nullptr;
      sgd_update({lr_, cfg_.momentum, cfg_.dampening, wd, cfg_.nesterov, t == 1}, p->value.data<float>(),
                 p->grad.data<float>(), buf, p->value.numel());
    }
  }
  step_ = t;
  info.applied = true;
  return info;
}

void DeviceOptimizer::zero_grad() {
  for (Param* p : params_) zero(p->grad);
}

std::vector<std::pair<std::string, Tensor*>> DeviceOptimizer::state() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [name, t] : state_) out.emplace_back(name, &t);
  return out;
}

}  // namespace crackseg::cuda
