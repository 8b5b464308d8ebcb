#include "src/optim/schedule.hpp"

#include <cmath>
#include <numbers>

#include "src/core/error.hpp"
#include "src/optim/json_keys.hpp"
#include "src/optim/monitor.hpp"

namespace crackseg {

nlohmann::json LrSchedule::state() const { return {{"name", name()}, {"lr", lr_}}; }

void LrSchedule::load_state(const nlohmann::json& s) {
  const std::string saved = s.at("name").get<std::string>();
  if (saved != name())
    throw InputError("[schedule] checkpoint holds schedule '" + saved + "' but the config asks for '" + name() + "'");
  lr_ = s.at("lr").get<double>();
}

namespace {

constexpr std::string_view S = "schedule";

class Constant final : public LrSchedule {
 public:
  using LrSchedule::LrSchedule;
  [[nodiscard]] std::string name() const override { return "constant"; }
};

class StepDecay final : public LrSchedule {
 public:
  StepDecay(double base, int64_t step_size, double gamma) : LrSchedule(base), step_size_(step_size), gamma_(gamma) {}
  [[nodiscard]] std::string name() const override { return "step"; }
  double lr_at_step(int64_t, int64_t epoch) override {
    lr_ = base_lr_ * std::pow(gamma_, static_cast<double>(epoch / step_size_));
    return lr_;
  }

 private:
  int64_t step_size_;
  double gamma_;
};

class Cosine final : public LrSchedule {
 public:
  Cosine(double base, int64_t warmup_steps, int64_t total_steps, double min_lr)
      : LrSchedule(base), w_(warmup_steps), t_(total_steps), min_lr_(min_lr) {}
  [[nodiscard]] std::string name() const override { return "cosine"; }
  double lr_at_step(int64_t s, int64_t) override {
    if (s < w_) {
      lr_ = base_lr_ * static_cast<double>(s + 1) / static_cast<double>(w_);
    } else {
      const double u =
          std::min(1.0, static_cast<double>(s - w_) / static_cast<double>(std::max<int64_t>(1, t_ - w_)));
      lr_ = min_lr_ + (base_lr_ - min_lr_) * 0.5 * (1.0 + std::cos(std::numbers::pi * u));
    }
    return lr_;
  }

 private:
  int64_t w_, t_;
  double min_lr_;
};

class Plateau final : public LrSchedule {
 public:
  Plateau(double base, BestTracker best, double factor, int64_t patience, int64_t cooldown, double min_lr)
      : LrSchedule(base), best_(std::move(best)), factor_(factor), patience_(patience), cooldown_(cooldown),
        min_lr_(min_lr) {}
  [[nodiscard]] std::string name() const override { return "plateau"; }

  bool end_epoch(int64_t epoch, const std::map<std::string, double>& metrics) override {
    const double v = monitored_value(metrics, best_.monitor(), "schedule");
    // Keras's order: the cooldown counts down first, and the last cooldown epoch already
    // counts towards patience.
    if (cooldown_counter_ > 0) {
      --cooldown_counter_;
      wait_ = 0;
    }
    if (best_.update(v, epoch)) {
      wait_ = 0;
      return false;
    }
    if (cooldown_counter_ > 0) return false;
    if (++wait_ < patience_ || !(lr_ > min_lr_)) return false;
    lr_ = std::max(lr_ * factor_, min_lr_);
    cooldown_counter_ = cooldown_;
    wait_ = 0;
    return true;
  }

  [[nodiscard]] nlohmann::json state() const override {
    nlohmann::json s = LrSchedule::state();
    s["tracker"] = best_.state();
    s["wait"] = wait_;
    s["cooldown_counter"] = cooldown_counter_;
    return s;
  }
  void load_state(const nlohmann::json& s) override {
    LrSchedule::load_state(s);
    best_.load_state(s.at("tracker"));
    wait_ = s.at("wait").get<int64_t>();
    cooldown_counter_ = s.at("cooldown_counter").get<int64_t>();
  }

 private:
  BestTracker best_;
  double factor_;
  int64_t patience_, cooldown_;
  double min_lr_;
  int64_t wait_ = 0, cooldown_counter_ = 0;
};

}  // namespace

std::unique_ptr<LrSchedule> make_schedule(const nlohmann::json& sec, double base_lr, const ScheduleContext& ctx) {
  const std::string name = json_string(sec, S, "name", "constant");
  auto non_negative = [&](const std::string& key, double def) {
    const double v = json_number(sec, S, key, def);
    if (!(v >= 0) || !std::isfinite(v)) throw_bad_value(S, key, std::to_string(v), "must be >= 0");
    return v;
  };
  if (name == "constant" || name == "none") {
    check_keys(sec, S, {"name"});
    return std::make_unique<Constant>(base_lr);
  }
  if (name == "step") {
    check_keys(sec, S, {"name", "step_size", "gamma"});
    const int64_t step_size = json_int(sec, S, "step_size", 0);
    if (step_size <= 0) throw_bad_value(S, "step_size", std::to_string(step_size), "must be >= 1 (epochs)");
    return std::make_unique<StepDecay>(base_lr, step_size, non_negative("gamma", 0.1));
  }
  if (name == "cosine") {
    check_keys(sec, S, {"name", "t_max", "warmup", "min_lr"});
    if (ctx.steps_per_epoch <= 0)
      throw Error("[schedule] cosine: the trainer must pass steps_per_epoch > 0 in ScheduleContext");
    const double t_max = json_number(sec, S, "t_max", static_cast<double>(ctx.epochs));
    const double warmup = non_negative("warmup", 0.0);
    if (!(t_max > 0)) throw_bad_value(S, "t_max", std::to_string(t_max), "must be > 0 (epochs)");
    const double spe = static_cast<double>(ctx.steps_per_epoch);
    return std::make_unique<Cosine>(base_lr, std::llround(warmup * spe), std::llround(t_max * spe),
                                    non_negative("min_lr", 0.0));
  }
  if (name == "plateau") {
    check_keys(sec, S, {"name", "monitor", "mode", "factor", "patience", "min_delta", "cooldown", "min_lr"});
    const std::string monitor = json_string(sec, S, "monitor", "val_loss");
    const MonitorMode mode = parse_monitor_mode(json_string(sec, S, "mode", "auto"), monitor, std::string(S));
    const double factor = json_number(sec, S, "factor", 0.1);
    if (!(factor > 0 && factor < 1)) throw_bad_value(S, "factor", std::to_string(factor), "must be in (0, 1)");
    const int64_t patience = json_int(sec, S, "patience", 10), cooldown = json_int(sec, S, "cooldown", 0);
    if (patience < 0) throw_bad_value(S, "patience", std::to_string(patience), "must be >= 0");
    if (cooldown < 0) throw_bad_value(S, "cooldown", std::to_string(cooldown), "must be >= 0");
    return std::make_unique<Plateau>(base_lr, BestTracker(monitor, mode, non_negative("min_delta", 1e-4)), factor,
                                     patience, cooldown, non_negative("min_lr", 0.0));
  }
  static const std::vector<std::string_view> names = {"constant", "step", "cosine", "plateau"};
  throw_unknown_name(S, "schedule name", name, names);
}

}  // namespace crackseg
