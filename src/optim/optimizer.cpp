#include "src/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>

#include "src/core/error.hpp"
#include "src/losses/parallel.hpp"
#include "src/optim/json_keys.hpp"
#include "src/optim/update_kernels.hpp"

namespace crackseg {

OptimConfig parse_optim_config(const nlohmann::json& s) {
  constexpr std::string_view S = "optim";
  OptimConfig c;
  c.name = json_string(s, S, "name", c.name);
  if (c.name == "adam" || c.name == "adamw") {
    check_keys(s, S, {"name", "lr", "betas", "eps", "weight_decay", "clip_norm", "clip_value"});
  } else if (c.name == "sgd") {
    check_keys(s, S, {"name", "lr", "momentum", "dampening", "nesterov", "weight_decay", "clip_norm", "clip_value"});
  } else {
    static const std::vector<std::string_view> names = {"adam", "adamw", "sgd"};
    throw_unknown_name(S, "optimizer name", c.name, names);
  }
  c.lr = json_number(s, S, "lr", c.lr);
  const auto betas = json_numbers(s, S, "betas", {c.beta1, c.beta2});
  if (betas.size() != 2) throw_bad_value(S, "betas", s.at("betas").dump(), "expected two numbers [beta1, beta2]");
  c.beta1 = betas[0];
  c.beta2 = betas[1];
  c.eps = json_number(s, S, "eps", c.eps);
  c.weight_decay = json_number(s, S, "weight_decay", c.weight_decay);
  c.momentum = json_number(s, S, "momentum", c.momentum);
  c.dampening = json_number(s, S, "dampening", c.dampening);
  c.nesterov = json_bool(s, S, "nesterov", c.nesterov);
  c.clip_norm = json_number(s, S, "clip_norm", c.clip_norm);
  c.clip_value = json_number(s, S, "clip_value", c.clip_value);
  auto in = [&](const char* key, double v, double lo, double hi, bool hi_open, const char* why) {
    if (!(v >= lo && (hi_open ? v < hi : v <= hi))) throw_bad_value(S, key, std::to_string(v), why);
  };
  in("lr", c.lr, 0, 1e9, false, "must be in [0, 1e9]");
  in("betas", c.beta1, 0, 1, true, "beta1 must be in [0, 1)");
  in("betas", c.beta2, 0, 1, true, "beta2 must be in [0, 1)");
  in("eps", c.eps, 0, 1e9, false, "must be in [0, 1e9]");
  in("weight_decay", c.weight_decay, 0, 1e9, false, "must be in [0, 1e9]");
  in("momentum", c.momentum, 0, 1, false, "must be in [0, 1]");
  in("dampening", c.dampening, 0, 1, false, "must be in [0, 1]");
  in("clip_norm", c.clip_norm, 0, 1e300, false, "must be >= 0 (0 = off)");
  in("clip_value", c.clip_value, 0, 1e300, false, "must be >= 0 (0 = off)");
  if (c.nesterov && (c.momentum <= 0 || c.dampening != 0))
    throw_bad_value(S, "nesterov", "true", "needs momentum > 0 and dampening = 0");
  return c;
}

// ---- clipping ---------------------------------------------------------------------------------

double global_grad_norm(std::span<Param* const> params) {
  double sq = 0;
  for (const Param* p : params) {  // parameter order, then fixed element chunks: deterministic
    const float* g = p->grad.data<float>();
    sq += par::sum<1>("optim::grad_norm", p->grad.numel(), [&](int64_t i, std::array<double, 1>& acc) {
      const double v = g[i];
      acc[0] += v * v;
    })[0];
  }
  return std::sqrt(sq);
}

namespace {
void scale_grads(std::span<Param* const> params, double coef) {
  for (Param* p : params) {
    float* g = p->grad.data<float>();
    par::for_each("optim::clip_norm", p->grad.numel(),
                  [&](int64_t i) { g[i] = static_cast<float>(static_cast<double>(g[i]) * coef); });
  }
}
}  // namespace

double clip_grad_norm(std::span<Param* const> params, double max_norm) {
  const double norm = global_grad_norm(params);
  const double coef = max_norm / (norm + 1e-6);
  if (std::isfinite(norm) && coef < 1.0) scale_grads(params, coef);
  return norm;
}

void clip_grad_value(std::span<Param* const> params, double max_abs) {
  const float hi = static_cast<float>(max_abs);
  for (Param* p : params) {
    float* g = p->grad.data<float>();
    par::for_each("optim::clip_value", p->grad.numel(), [&](int64_t i) { g[i] = std::clamp(g[i], -hi, hi); });
  }
}

// ---- base -------------------------------------------------------------------------------------

Optimizer::Optimizer(OptimConfig cfg, std::vector<Param*> params)
    : cfg_(std::move(cfg)), params_(std::move(params)), lr_(cfg_.lr) {
  for (const Param* p : params_) {
    if (!p) throw Error("optimizer: null parameter");
    auto ok = [](const Tensor& t) { return t.defined() && t.dtype() == DType::f32 && t.device() == Device::cpu; };
    if (!ok(p->value) || !ok(p->grad))
      throw Error("optimizer: parameter '" + p->name + "' needs f32 CPU value and grad tensors");
    if (p->value.dims() != p->grad.dims())
      throw Error("optimizer: parameter '" + p->name + "' value " + to_string(p->value.dims()) + " vs grad " +
                  to_string(p->grad.dims()));
  }
  // Reserve so the Tensor objects never move: state() hands out pointers to them.
  state_.reserve(params_.size() * 2);
}

Tensor& Optimizer::add_state(std::size_t i, const std::string& suffix) {
  if (state_.size() == state_.capacity()) throw Error("optimizer: more than two state tensors per parameter");
  state_.emplace_back(params_[i]->name + "." + suffix, Tensor::zeros(params_[i]->value.dims()));
  return state_.back().second;
}

std::vector<std::pair<std::string, Tensor*>> Optimizer::state() {
  std::vector<std::pair<std::string, Tensor*>> out;
  out.reserve(state_.size());
  for (auto& [name, t] : state_) out.emplace_back(name, &t);
  return out;
}

void Optimizer::zero_grad() {
  for (Param* p : params_) p->grad.zero_();
}

StepInfo Optimizer::step() {
  StepInfo info;
  const std::span<Param* const> ps(params_);
  info.grad_norm = cfg_.clip_norm > 0 ? clip_grad_norm(ps, cfg_.clip_norm) : global_grad_norm(ps);
  if (!std::isfinite(info.grad_norm)) return info;
  if (cfg_.clip_value > 0) clip_grad_value(ps, cfg_.clip_value);
  const int64_t t = step_ + 1;
  for (std::size_t i = 0; i < params_.size(); ++i) update(i, *params_[i], t);
  step_ = t;
  info.applied = true;
  return info;
}

// ---- adam / adamw -------------------------------------------------------------------------------

namespace {

// f(begin, end) over [0, n) in blocks of par::kChunk elements, blocks spread over the threads.
template <class F>
void for_blocks(const char* label, int64_t n, F&& f) {
  const int64_t blocks = (n + par::kChunk - 1) / par::kChunk;
  par::for_each(label, blocks, [&](int64_t b) { f(b * par::kChunk, std::min(n, (b + 1) * par::kChunk)); }, 2);
}

class Adam final : public Optimizer {
 public:
  Adam(OptimConfig cfg, std::vector<Param*> params) : Optimizer(std::move(cfg), std::move(params)) {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      m_.push_back(&add_state(i, "exp_avg"));
      v_.push_back(&add_state(i, "exp_avg_sq"));
    }
  }

 protected:
  void update(std::size_t i, Param& p, int64_t t) override {
    const bool decoupled = cfg_.name == "adamw";
    const double wd = p.decay ? cfg_.weight_decay : 0.0;
    const double b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps, lr = lr_;
    const double bc1 = 1 - std::pow(b1, static_cast<double>(t));
    const double sqrt_bc2 = std::sqrt(1 - std::pow(b2, static_cast<double>(t)));
    const double step_size = lr / bc1;
    const optim_kernels::AdamCoef c{b1, b2, eps, lr, wd, step_size, sqrt_bc2, decoupled};
    float* w = p.value.data<float>();
    const float* g = p.grad.data<float>();
    float* m = m_[i]->data<float>();
    float* v = v_[i]->data<float>();
    for_blocks(decoupled ? "optim::adamw_update" : "optim::adam_update", p.value.numel(),
               [&](int64_t b, int64_t e) { optim_kernels::adam(c, w, g, m, v, b, e); });
  }

 private:
  std::vector<Tensor*> m_, v_;
};

class Sgd final : public Optimizer {
 public:
  Sgd(OptimConfig cfg, std::vector<Param*> params) : Optimizer(std::move(cfg), std::move(params)) {
    if (cfg_.momentum > 0)
      for (std::size_t i = 0; i < params_.size(); ++i) buf_.push_back(&add_state(i, "momentum_buffer"));
  }

 protected:
  void update(std::size_t i, Param& p, int64_t t) override {
    const double wd = p.decay ? cfg_.weight_decay : 0.0, lr = lr_, mu = cfg_.momentum;
    const double damp = cfg_.dampening;
    const bool first = t == 1, nesterov = cfg_.nesterov;
    float* w = p.value.data<float>();
    const float* g = p.grad.data<float>();
    float* buf = mu > 0 ? buf_[i]->data<float>() : nullptr;
    const optim_kernels::SgdCoef c{lr, wd, mu, damp, first, nesterov};
    for_blocks("optim::sgd_update", p.value.numel(),
               [&](int64_t b, int64_t e) { optim_kernels::sgd(c, w, g, buf, b, e); });
  }

 private:
  std::vector<Tensor*> buf_;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, std::vector<Param*> params) {
  if (cfg.name == "adam" || cfg.name == "adamw") return std::make_unique<Adam>(cfg, std::move(params));
  if (cfg.name == "sgd") return std::make_unique<Sgd>(cfg, std::move(params));
  static const std::vector<std::string_view> names = {"adam", "adamw", "sgd"};
  throw_unknown_name("optim", "optimizer name", cfg.name, names);
}

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& optim_section, std::vector<Param*> params) {
  return make_optimizer(parse_optim_config(optim_section), std::move(params));
}

}  // namespace crackseg
