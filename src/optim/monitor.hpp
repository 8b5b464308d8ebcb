// Watching a validation metric across epochs: BestTracker (is this epoch the best so far?),
// used by reduce-on-plateau, early stopping and the trainer's best-model checkpoint.
// Semantics follow Keras (the papers' code): with mode "min" a value improves when it is below
// best - min_delta, with "max" when above best + min_delta; NaN never improves.
//
//   [early_stop] monitor = "val_f1"  mode = "max"  patience = 10  min_delta = 0
//
// Monitor names are the keys of the metrics map the trainer passes after each validation
// (e.g. "val_loss", "val_f1"); mode "auto" (default) is "min" when the name contains "loss",
// "max" otherwise. A missing monitor key is an InputError listing the available keys.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace crackseg {

enum class MonitorMode : uint8_t { min, max };

// "min" | "max" | "auto" (resolved against the monitor name); anything else -> InputError.
[[nodiscard]] MonitorMode parse_monitor_mode(const std::string& mode, const std::string& monitor,
                                             const std::string& section);
// metrics.at(monitor) with an InputError naming the available keys when it is missing.
[[nodiscard]] double monitored_value(const std::map<std::string, double>& metrics, const std::string& monitor,
                                     const std::string& section);

class BestTracker {
 public:
  BestTracker() = default;
  BestTracker(std::string monitor, MonitorMode mode, double min_delta)
      : monitor_(std::move(monitor)), mode_(mode), min_delta_(min_delta) {}

  // True (and records value/epoch as the new best) when `value` improves on the best so far.
  bool update(double value, int64_t epoch);
  [[nodiscard]] bool improves(double value) const;
  [[nodiscard]] std::optional<double> best() const { return best_; }
  [[nodiscard]] int64_t best_epoch() const { return best_epoch_; }
  [[nodiscard]] const std::string& monitor() const { return monitor_; }
  [[nodiscard]] MonitorMode mode() const { return mode_; }

  // {"best": value or null, "best_epoch": e}; the configuration is not part of the state.
  [[nodiscard]] nlohmann::json state() const;
  void load_state(const nlohmann::json& s);

 private:
  std::string monitor_ = "val_loss";
  MonitorMode mode_ = MonitorMode::min;
  double min_delta_ = 0.0;
  std::optional<double> best_;
  int64_t best_epoch_ = -1;
};

// Stops training after `patience` consecutive epochs without improvement. A null or empty
// [early_stop] section gives a disabled instance (never stops; still tracks the best).
// Keys: enabled (true when the section has keys), monitor ("val_loss"), mode ("auto"),
// patience (10), min_delta (0).
class EarlyStopping {
 public:
  explicit EarlyStopping(const nlohmann::json& early_stop_section);

  struct Decision {
    bool improved = false;
    bool stop = false;
  };
  // Call once per epoch after validation.
  Decision update(int64_t epoch, const std::map<std::string, double>& metrics);
  [[nodiscard]] bool enabled() const { return enabled_; }
  [[nodiscard]] bool stopped() const { return stopped_; }
  [[nodiscard]] int64_t wait() const { return wait_; }
  [[nodiscard]] int64_t patience() const { return patience_; }
  [[nodiscard]] const BestTracker& tracker() const { return best_; }

  [[nodiscard]] nlohmann::json state() const;  // {"wait", "stopped", "best", "best_epoch"}
  void load_state(const nlohmann::json& s);

 private:
  bool enabled_ = false;
  int64_t patience_ = 10;
  BestTracker best_;
  int64_t wait_ = 0;
  bool stopped_ = false;
};

}  // namespace crackseg
