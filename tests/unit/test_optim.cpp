// ctest-link: crackseg_train
// Adam / AdamW / SGD against their update rules written out here in double, clipping by norm
// and value, skipped steps on NaN gradients, state export/restore continuing bit for bit, and
// [optim] config errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "src/core/error.hpp"
#include "src/optim/optimizer.hpp"

using namespace crackseg;
using nlohmann::json;

namespace {

Param make_param(const std::string& name, std::vector<float> w, bool decay = true) {
  Param p;
  p.name = name;
  p.value = Tensor::empty({static_cast<int64_t>(w.size())});
  std::copy(w.begin(), w.end(), p.value.data<float>());
  p.grad = Tensor::zeros({static_cast<int64_t>(w.size())});
  p.decay = decay;
  return p;
}
void set_grad(Param& p, std::vector<float> g) { std::copy(g.begin(), g.end(), p.grad.data<float>()); }
std::vector<double> values(const Param& p) {
  const auto s = p.value.span<float>();
  return {s.begin(), s.end()};
}

// Gradients for step t (1-based) of element k: fixed, varied, signs mixed.
float grad_at(int t, std::size_t k) { return static_cast<float>(0.1 * (k + 1) * (t % 2 ? 1 : -0.5) + 0.01 * t); }

}  // namespace

TEST(Optim, AdamFirstStepMovesEachWeightByLrTimesSignOfGradient) {
  Param p = make_param("w", {1.0f, -2.0f, 0.5f});
  auto opt = make_optimizer(json{{"name", "adam"}, {"lr", 0.01}}, {&p});
  set_grad(p, {0.1f, -0.2f, 0.3f});
  const StepInfo info = opt->step();
  EXPECT_TRUE(info.applied);
  EXPECT_NEAR(info.grad_norm, std::sqrt(0.01 + 0.04 + 0.09), 1e-7);
  // m_hat = g, v_hat = g^2 at t = 1: w -= lr * g / (|g| + eps).
  EXPECT_NEAR(p.value.data<float>()[0], 0.99f, 1e-7);
  EXPECT_NEAR(p.value.data<float>()[1], -1.99f, 1e-7);
  EXPECT_NEAR(p.value.data<float>()[2], 0.49f, 1e-7);
  EXPECT_EQ(opt->step_count(), 1);
}

TEST(Optim, AdamAndAdamwFollowTheirFormulasOverSeveralSteps) {
  for (const std::string name : {"adam", "adamw"}) {
    const double lr = 0.05, b1 = 0.8, b2 = 0.99, eps = 1e-6, wd = 0.1;
    Param a = make_param("a.weight", {1.0f, -2.0f, 0.5f}), b = make_param("a.bias", {0.3f, -0.7f}, false);
    auto opt = make_optimizer(json{{"name", name}, {"lr", lr}, {"betas", {b1, b2}}, {"eps", eps}, {"weight_decay", wd}},
                              {&a, &b});
    std::vector<std::vector<double>> w = {values(a), values(b)}, m = {{0, 0, 0}, {0, 0}}, v = m;
    for (int t = 1; t <= 4; ++t) {
      for (Param* p : {&a, &b}) {
        std::vector<float> g(static_cast<std::size_t>(p->value.numel()));
        for (std::size_t k = 0; k < g.size(); ++k) g[k] = grad_at(t, k + (p == &b ? 3 : 0));
        set_grad(*p, g);
      }
      (void)opt->step();
      for (int j = 0; j < 2; ++j) {
        const double d = j == 0 ? wd : 0.0;  // the bias has decay = false
        for (std::size_t k = 0; k < w[j].size(); ++k) {
          double g = grad_at(t, k + (j == 1 ? 3 : 0));
          if (name == "adamw")
            w[j][k] -= lr * d * w[j][k];
          else
            g += d * w[j][k];
          m[j][k] = b1 * m[j][k] + (1 - b1) * g;
          v[j][k] = b2 * v[j][k] + (1 - b2) * g * g;
          const double mh = m[j][k] / (1 - std::pow(b1, t)), vh = v[j][k] / (1 - std::pow(b2, t));
          w[j][k] -= lr * mh / (std::sqrt(vh) + eps);
        }
      }
      for (std::size_t k = 0; k < 3; ++k) EXPECT_NEAR(a.value.data<float>()[k], w[0][k], 2e-6) << name << t;
      for (std::size_t k = 0; k < 2; ++k) EXPECT_NEAR(b.value.data<float>()[k], w[1][k], 2e-6) << name << t;
    }
  }
}

TEST(Optim, SgdMomentumNesterovAndDampeningFollowPyTorch) {
  struct Case {
    double mu, damp, wd;
    bool nesterov;
  };
  for (const Case c : {Case{0, 0, 0, false}, Case{0.9, 0, 0, false}, Case{0.9, 0, 0.01, true}, Case{0.5, 0.3, 0, false}}) {
    const double lr = 0.1;
    Param p = make_param("w", {1.0f, -1.0f});
    auto opt = make_optimizer(json{{"name", "sgd"}, {"lr", lr}, {"momentum", c.mu}, {"dampening", c.damp},
                                   {"nesterov", c.nesterov}, {"weight_decay", c.wd}},
                              {&p});
    std::vector<double> w = values(p), buf(2, 0.0);
    for (int t = 1; t <= 4; ++t) {
      set_grad(p, {grad_at(t, 0), grad_at(t, 1)});
      (void)opt->step();
      for (std::size_t k = 0; k < 2; ++k) {
        double g = grad_at(t, k) + c.wd * w[k];
        if (c.mu > 0) {
          buf[k] = t == 1 ? g : c.mu * buf[k] + (1 - c.damp) * g;
          g = c.nesterov ? g + c.mu * buf[k] : buf[k];
        }
        w[k] -= lr * g;
        EXPECT_NEAR(p.value.data<float>()[k], w[k], 1e-6) << "mu " << c.mu << " step " << t;
      }
    }
    EXPECT_EQ(opt->state().size(), c.mu > 0 ? 1u : 0u);
  }
}

TEST(Optim, ClippingByGlobalNormAndByValue) {
  Param a = make_param("a", {0.0f}), b = make_param("b", {0.0f});
  std::vector<Param*> ps = {&a, &b};
  set_grad(a, {3.0f});
  set_grad(b, {-4.0f});
  EXPECT_DOUBLE_EQ(global_grad_norm(ps), 5.0);
  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 10.0), 5.0);  // under the limit: untouched
  EXPECT_EQ(a.grad.data<float>()[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 1.0), 5.0);
  EXPECT_NEAR(a.grad.data<float>()[0], 3.0 / (5 + 1e-6), 1e-7);
  EXPECT_NEAR(b.grad.data<float>()[0], -4.0 / (5 + 1e-6), 1e-7);
  set_grad(a, {3.0f});
  set_grad(b, {-0.25f});
  clip_grad_value(ps, 0.5);
  EXPECT_EQ(a.grad.data<float>()[0], 0.5f);
  EXPECT_EQ(b.grad.data<float>()[0], -0.25f);
  // Through the optimizer: plain SGD with lr 1 shows the clipped gradient in the weight.
  auto opt = make_optimizer(json{{"name", "sgd"}, {"lr", 1.0}, {"momentum", 0}, {"clip_norm", 2.5}}, ps);
  set_grad(a, {3.0f});
  set_grad(b, {4.0f});
  EXPECT_DOUBLE_EQ(opt->step().grad_norm, 5.0);
  EXPECT_NEAR(a.value.data<float>()[0], -0.5 * 3.0 * 5 / (5 + 1e-6), 1e-6);
  EXPECT_NEAR(b.value.data<float>()[0], -0.5 * 4.0 * 5 / (5 + 1e-6), 1e-6);
  // Norm of many elements (several reduction chunks) against a plain double loop.
  Param big = make_param("big", std::vector<float>(10007, 0.0f));
  double sq = 0;
  for (int64_t i = 0; i < 10007; ++i) {
    big.grad.data<float>()[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
    sq += std::pow(static_cast<double>(big.grad.data<float>()[i]), 2);
  }
  std::vector<Param*> one = {&big};
  EXPECT_NEAR(global_grad_norm(one), std::sqrt(sq), 1e-12 * std::sqrt(sq));
}

TEST(Optim, NonFiniteGradientSkipsTheStepAndLeavesWeightsAlone) {
  Param p = make_param("w", {1.0f, 2.0f});
  auto opt = make_optimizer(json{{"name", "adam"}, {"lr", 0.1}}, {&p});
  set_grad(p, {0.5f, NAN});
  const StepInfo info = opt->step();
  EXPECT_FALSE(info.applied);
  EXPECT_TRUE(std::isnan(info.grad_norm));
  EXPECT_EQ(p.value.data<float>()[0], 1.0f);
  EXPECT_EQ(opt->step_count(), 0);
  for (auto& [name, t] : opt->state())
    for (float x : t->span<float>()) EXPECT_EQ(x, 0.0f) << name;
}

TEST(Optim, StateRestoreContinuesBitForBit) {
  auto run = [](int steps_before, bool restore_midway) {
    Param p = make_param("enc.w", {0.3f, -0.1f, 2.0f});
    json cfg = {{"name", "adamw"}, {"lr", 0.01}, {"weight_decay", 0.05}};
    auto opt = make_optimizer(cfg, {&p});
    for (int t = 1; t <= steps_before; ++t) {
      set_grad(p, {grad_at(t, 0), grad_at(t, 1), grad_at(t, 2)});
      (void)opt->step();
    }
    if (restore_midway) {  // what a checkpoint does: copy weights, moments, step, lr
      Param q = make_param("enc.w", {0, 0, 0});
      q.value.copy_from(p.value);
      auto opt2 = make_optimizer(cfg, {&q});
      auto src = opt->state();
      auto dst = opt2->state();
      EXPECT_EQ(src.size(), 2u);
      for (std::size_t i = 0; i < src.size(); ++i) {
        EXPECT_EQ(src[i].first, dst[i].first);
        dst[i].second->copy_from(*src[i].second);
      }
      EXPECT_EQ(src[0].first, "enc.w.exp_avg");
      opt2->set_step_count(opt->step_count());
      opt2->set_lr(opt->lr());
      for (int t = steps_before + 1; t <= 6; ++t) {
        set_grad(q, {grad_at(t, 0), grad_at(t, 1), grad_at(t, 2)});
        (void)opt2->step();
      }
      return values(q);
    }
    for (int t = steps_before + 1; t <= 6; ++t) {
      set_grad(p, {grad_at(t, 0), grad_at(t, 1), grad_at(t, 2)});
      (void)opt->step();
    }
    return values(p);
  };
  EXPECT_EQ(run(6, false), run(3, true));
}

TEST(Optim, ConfigErrorsNameTheKey) {
  Param p = make_param("w", {1.0f});
  try {
    (void)make_optimizer(json{{"name", "adam"}, {"betass", {0.9, 0.99}}}, {&p});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'betas'"), std::string::npos) << e.what();
  }
  try {
    (void)make_optimizer(json{{"name", "adma"}}, {&p});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'adam'"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)make_optimizer(json{{"name", "sgd"}, {"momentum", 0}, {"nesterov", true}}, {&p}), InputError);
  EXPECT_THROW((void)make_optimizer(json{{"name", "adam"}, {"betas", {0.9}}}, {&p}), InputError);
  EXPECT_THROW((void)make_optimizer(json{{"name", "adam"}, {"lr", "fast"}}, {&p}), InputError);
  EXPECT_THROW((void)make_optimizer(json{{"name", "adam"}, {"momentum", 0.9}}, {&p}), InputError);
  const OptimConfig c = parse_optim_config(json{{"lr", 1}});  // integers are numbers too
  EXPECT_EQ(c.lr, 1.0);
  EXPECT_EQ(c.name, "adam");
}

// The update kernels (src/optim/update_kernels.cpp) are vectorised per CPU (target_clones)
// and threaded in blocks. Over a parameter of several blocks with a ragged tail, every element
// must carry the bits of the scalar double formula as optimizer.cpp states it (this file is
// compiled without FMA contraction at the baseline ISA): a contracted or reassociated variant
// would make results depend on the CPU.
TEST(Optim, VectorisedUpdatesGiveTheBitsOfTheScalarFormula) {
  const std::size_t n = 3 * 4096 + 77;
  std::vector<float> w0(n);
  for (std::size_t k = 0; k < n; ++k) w0[k] = static_cast<float>(std::sin(0.37 * static_cast<double>(k)) * 3.0);
  auto grad = [](int t, std::size_t k) { return static_cast<float>(std::cos(0.11 * static_cast<double>(k * t)) * 1e-2); };
  const double lr = 0.01, b1 = 0.85, b2 = 0.995, eps = 1e-7, wd = 0.03;
  for (const std::string name : {"adam", "adamw"}) {
    Param p = make_param("w", w0);
    auto opt = make_optimizer(json{{"name", name}, {"lr", lr}, {"betas", {b1, b2}}, {"eps", eps}, {"weight_decay", wd}}, {&p});
    std::vector<float> w = w0, m(n, 0.0f), v(n, 0.0f);
    for (int t = 1; t <= 3; ++t) {
      std::vector<float> g(n);
      for (std::size_t k = 0; k < n; ++k) g[k] = grad(t, k);
      set_grad(p, g);
      (void)opt->step();
      const double step = lr / (1 - std::pow(b1, static_cast<double>(t)));
      const double sb = std::sqrt(1 - std::pow(b2, static_cast<double>(t)));
      std::size_t differ = 0;
      for (std::size_t k = 0; k < n; ++k) {
        double wk = w[k], gk = g[k];
        if (name == "adamw")
          wk -= lr * wd * wk;
        else
          gk += wd * wk;
        const double mk = b1 * static_cast<double>(m[k]) + (1 - b1) * gk;
        const double vk = b2 * static_cast<double>(v[k]) + (1 - b2) * gk * gk;
        m[k] = static_cast<float>(mk);
        v[k] = static_cast<float>(vk);
        w[k] = static_cast<float>(wk - step * mk / (std::sqrt(vk) / sb + eps));
        differ += std::memcmp(&w[k], p.value.data<float>() + k, 4) != 0;
      }
      EXPECT_EQ(differ, 0u) << name << " step " << t;
    }
  }
  for (const bool nesterov : {false, true}) {
    const double mu = 0.9;
    Param p = make_param("w", w0);
    auto opt = make_optimizer(json{{"name", "sgd"}, {"lr", lr}, {"momentum", mu}, {"nesterov", nesterov}, {"weight_decay", wd}}, {&p});
    std::vector<float> w = w0, buf(n, 0.0f);
    for (int t = 1; t <= 3; ++t) {
      std::vector<float> g(n);
      for (std::size_t k = 0; k < n; ++k) g[k] = grad(t, k);
      set_grad(p, g);
      (void)opt->step();
      std::size_t differ = 0;
      for (std::size_t k = 0; k < n; ++k) {
        double gk = static_cast<double>(g[k]) + wd * static_cast<double>(w[k]);
        const double bk = t == 1 ? gk : mu * static_cast<double>(buf[k]) + (1 - 0.0) * gk;
        buf[k] = static_cast<float>(bk);
        gk = nesterov ? gk + mu * bk : bk;
        w[k] = static_cast<float>(static_cast<double>(w[k]) - lr * gk);
        differ += std::memcmp(&w[k], p.value.data<float>() + k, 4) != 0;
      }
      EXPECT_EQ(differ, 0u) << "sgd nesterov " << nesterov << " step " << t;
    }
  }
}
