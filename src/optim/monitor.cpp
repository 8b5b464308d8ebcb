#include "src/optim/monitor.hpp"

#include <cmath>

#include "src/core/error.hpp"
#include "src/optim/json_keys.hpp"

namespace crackseg {

MonitorMode parse_monitor_mode(const std::string& mode, const std::string& monitor, const std::string& section) {
  if (mode == "min") return MonitorMode::min;
  if (mode == "max") return MonitorMode::max;
  if (mode == "auto") return monitor.find("loss") != std::string::npos ? MonitorMode::min : MonitorMode::max;
  static const std::vector<std::string_view> modes = {"min", "max", "auto"};
  throw_unknown_name(section, "mode", mode, modes);
}

double monitored_value(const std::map<std::string, double>& metrics, const std::string& monitor,
                       const std::string& section) {
  auto it = metrics.find(monitor);
  if (it != metrics.end()) return it->second;
  std::string keys;
  for (const auto& [k, v] : metrics) keys += (keys.empty() ? "" : ", ") + k;
  throw InputError("[" + section + "] monitor '" + monitor + "' is not among this run's metrics (" + keys + ")");
}

bool BestTracker::improves(double value) const {
  if (std::isnan(value)) return false;
  if (!best_) return true;
  return mode_ == MonitorMode::min ? value < *best_ - min_delta_ : value > *best_ + min_delta_;
}

bool BestTracker::update(double value, int64_t epoch) {
  if (!improves(value)) return false;
  best_ = value;
  best_epoch_ = epoch;
  return true;
}

nlohmann::json BestTracker::state() const {
  nlohmann::json s;
  s["best"] = best_ ? nlohmann::json(*best_) : nlohmann::json(nullptr);
  s["best_epoch"] = best_epoch_;
  return s;
}

void BestTracker::load_state(const nlohmann::json& s) {
  const auto& b = s.at("best");
  best_ = b.is_null() ? std::nullopt : std::optional<double>(b.get<double>());
  best_epoch_ = s.at("best_epoch").get<int64_t>();
}

EarlyStopping::EarlyStopping(const nlohmann::json& sec) {
  const std::string S = "early_stop";
  check_keys(sec, S, {"enabled", "monitor", "mode", "patience", "min_delta"});
  enabled_ = json_bool(sec, S, "enabled", sec.is_object() && !sec.empty());
  const std::string monitor = json_string(sec, S, "monitor", "val_loss");
  const MonitorMode mode = parse_monitor_mode(json_string(sec, S, "mode", "auto"), monitor, S);
  patience_ = json_int(sec, S, "patience", 10);
  if (patience_ < 0) throw_bad_value(S, "patience", std::to_string(patience_), "must be >= 0");
  const double min_delta = json_number(sec, S, "min_delta", 0.0);
  if (!(min_delta >= 0)) throw_bad_value(S, "min_delta", std::to_string(min_delta), "must be >= 0");
  best_ = BestTracker(monitor, mode, min_delta);
}

EarlyStopping::Decision EarlyStopping::update(int64_t epoch, const std::map<std::string, double>& metrics) {
  Decision d;
  d.improved = best_.update(monitored_value(metrics, best_.monitor(), "early_stop"), epoch);
  wait_ = d.improved ? 0 : wait_ + 1;
  if (enabled_ && !d.improved && wait_ >= patience_) stopped_ = true;
  d.stop = stopped_;
  return d;
}

nlohmann::json EarlyStopping::state() const {
  nlohmann::json s = best_.state();
  s["wait"] = wait_;
  s["stopped"] = stopped_;
  return s;
}

void EarlyStopping::load_state(const nlohmann::json& s) {
  best_.load_state(s);
  wait_ = s.at("wait").get<int64_t>();
  stopped_ = s.at("stopped").get<bool>();
}

}  // namespace crackseg
