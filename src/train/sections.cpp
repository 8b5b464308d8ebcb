#include "src/train/sections.hpp"

namespace crackseg::train {

nlohmann::json optim_section(const nlohmann::json& o) {
  nlohmann::json s;
  const std::string name = o.at("name").get<std::string>();
  s["name"] = name;
  for (const char* k : {"lr", "weight_decay", "clip_norm", "clip_value"}) s[k] = o.at(k);
  if (name == "sgd") {
    s["momentum"] = o.at("momentum");
    s["nesterov"] = o.at("nesterov");
  } else {
    s["betas"] = {o.at("beta1"), o.at("beta2")};
    s["eps"] = o.at("eps");
  }
  return s;
}

nlohmann::json schedule_section(const nlohmann::json& c) {
  nlohmann::json s;
  const std::string name = c.at("name").get<std::string>();
  if (name == "none") return {{"name", "constant"}};
  s["name"] = name;
  if (name == "step") {
    s["step_size"] = c.at("step_size");
    s["gamma"] = c.at("factor");
  } else if (name == "cosine") {
    if (c.at("t_max").get<int64_t>() > 0) s["t_max"] = c.at("t_max");
    s["warmup"] = c.at("warmup_epochs");
    s["min_lr"] = c.at("min_lr");
  } else if (name == "plateau") {
    for (const char* k : {"monitor", "mode", "factor", "patience", "min_delta", "min_lr"}) s[k] = c.at(k);
  }
  return s;
}

nlohmann::json early_stop_section(const nlohmann::json& c) {
  const bool enabled = c.at("patience").get<int64_t>() > 0;
  if (!enabled) return {{"enabled", false}};
  return {{"enabled", true},
          {"monitor", c.at("monitor")},
          {"mode", c.at("mode")},
          {"patience", c.at("patience")},
          {"min_delta", c.at("min_delta")}};
}

}  // namespace crackseg::train
