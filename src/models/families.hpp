// Internal to src/models: what each family file provides to the registry, and a reader for
// the [model] section that validates values and writes them back normalised (so the resolved
// config recorded in result.json and checkpoints is exactly what built the model).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "src/core/error.hpp"
#include "src/models/model.hpp"

namespace crackseg::models {

struct Family {
  std::string name;
  std::string description;
  nlohmann::json defaults;            // every key (besides "name") with its default
  std::function<void(Model&)> build;  // reads m.config; fills graph, output, out_channels, size_rule
};

const Family& patch_cnn_family();
const Family& unet_family();
const Family& hourglass_unet_family();
const Family& spiral_net_family();
const Family& flex_unet_family();

// Reads typed values from a resolved section; errors name "model.<key>" and the family.
class ConfigReader {
 public:
  explicit ConfigReader(Model& m) : m_(m) {}
  [[nodiscard]] int64_t integer(const std::string& key, int64_t min, int64_t max);
  [[nodiscard]] double number(const std::string& key, double min, double max);
  [[nodiscard]] std::string choice(const std::string& key, std::initializer_list<const char*> options);
  // A list of integers: a JSON array [1, 2, 3] or a string "1-2-3" / "1,2,3".
  [[nodiscard]] std::vector<int64_t> int_list(const std::string& key, int64_t min, int64_t max);

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& expected) const;
  Model& m_;
};

// Kobayashi's stride-2 building blocks (hourglass U-Net, Spiral-Net), shapes n -> (n-1)/2 and
// back n -> 2n+1 for odd n: conv3x3 stride 2 no padding + BN + ReLU ...
[[nodiscard]] NodeId down_block(Graph& g, const std::string& p, NodeId x, int64_t in_c, int64_t out_c);
// ... and transposed conv3x3 stride 2 no padding, + BN + ReLU unless `bare` (a logit layer).
[[nodiscard]] NodeId up_block(Graph& g, const std::string& p, NodeId x, int64_t in_c, int64_t out_c, bool bare);
// Encoder widths of both: 64, 128, 256, 512, 512, 512, 512.
inline constexpr int64_t kKobayashiWidths[7] = {64, 128, 256, 512, 512, 512, 512};

// Channel count scaled by a width multiplier: max(1, floor(c * width)) (DESIGN.md).
[[nodiscard]] int64_t scaled(int64_t c, double width);

}  // namespace crackseg::models
