// The run-config schema (src/config/schema.cpp) is the user-facing truth for [optim],
// [schedule] and [early_stop]; the optimizer/schedule/early-stopping factories (src/optim)
// take their own key sets (PyTorch/Keras names, defaults per schedule). These adapters map
// a resolved section to what the factory expects, passing only the keys that apply.
#pragma once
#include <nlohmann/json.hpp>

namespace crackseg::train {

[[nodiscard]] nlohmann::json optim_section(const nlohmann::json& resolved_optim);
[[nodiscard]] nlohmann::json schedule_section(const nlohmann::json& resolved_schedule);
[[nodiscard]] nlohmann::json early_stop_section(const nlohmann::json& resolved_early_stop);

}  // namespace crackseg::train
