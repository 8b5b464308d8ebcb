// Learning-rate schedules, built from the [schedule] section (absent or name = "constant":
// the optimizer's lr throughout). The trainer calls, with 0-based counters,
//   opt.set_lr(sched.lr_at_step(global_step, epoch));    before every optimizer step
//   sched.end_epoch(epoch, val_metrics);                  after each epoch's validation
// and saves state() in checkpoints (load_state() restores it exactly).
//
//   constant  lr = base
//   step      step_size (epochs, required), gamma (0.1): lr = base * gamma^floor(epoch / step_size)
//   cosine    t_max (epochs, default [train] epochs), warmup (epochs, may be fractional, 0),
//             min_lr (0). Per optimizer step s with W = round(warmup * steps_per_epoch) and
//             T = round(t_max * steps_per_epoch): s < W: base * (s + 1) / W (linear warmup that
//             reaches base at step W - 1); else min_lr + (base - min_lr) (1 + cos(pi u)) / 2 with
//             u = min(1, (s - W) / max(1, T - W)).
//   plateau   Keras ReduceLROnPlateau: monitor ("val_loss"), mode ("auto"), factor (0.1),
//             patience (10), min_delta (1e-4), cooldown (0), min_lr (0). After each epoch:
//             a running cooldown counts down by one and resets the wait; then an improvement
//             resets the wait; otherwise, unless still in cooldown, wait += 1 and at
//             wait >= patience, when lr > min_lr, lr = max(lr * factor, min_lr), the cooldown
//             starts and the wait resets.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace crackseg {

struct ScheduleContext {
  int64_t epochs = 0;           // [train] epochs (cosine's default t_max)
  int64_t steps_per_epoch = 0;  // optimizer steps per epoch (cosine needs it)
};

class LrSchedule {
 public:
  explicit LrSchedule(double base_lr) : base_lr_(base_lr), lr_(base_lr) {}
  virtual ~LrSchedule() = default;
  LrSchedule(const LrSchedule&) = delete;
  LrSchedule& operator=(const LrSchedule&) = delete;

  [[nodiscard]] virtual std::string name() const = 0;
  // The lr for the optimizer step about to be taken; updates lr().
  virtual double lr_at_step(int64_t /*global_step*/, int64_t /*epoch*/) { return lr_; }
  // After validation of `epoch`; returns true when the lr changed.
  virtual bool end_epoch(int64_t /*epoch*/, const std::map<std::string, double>& /*metrics*/) { return false; }
  [[nodiscard]] double lr() const { return lr_; }
  [[nodiscard]] double base_lr() const { return base_lr_; }

  // {"name", "lr", ...}: load_state throws when the name differs (config changed on resume).
  [[nodiscard]] virtual nlohmann::json state() const;
  virtual void load_state(const nlohmann::json& s);

 protected:
  double base_lr_;
  double lr_;
};

[[nodiscard]] std::unique_ptr<LrSchedule> make_schedule(const nlohmann::json& schedule_section, double base_lr,
                                                       const ScheduleContext& ctx = {});

}  // namespace crackseg
