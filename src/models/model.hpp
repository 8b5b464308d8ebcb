// The five model families (DESIGN.md "Models"), built from a config's [model] section as a
// Graph of layer specs. Building is cheap (specs only, no weights), so parameter counts,
// output shapes and FLOPs are known before any backend exists.
//
//   auto m = build_model({{"name", "unet"}, {"base", 16}, {"depth", 4}});
//   m->check_input_size(400, 400);                 // throws InputError naming the valid sizes
//   int64_t n = m->graph.num_params();             // 1,944,049
//   m->graph.instantiate(backend, seed);
//
// Every model reads images (N, 3, H, W) and emits logits: no sigmoid/softmax in the graph,
// the loss applies it (numerically stable BCE-with-logits / log-softmax).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/graph/graph.hpp"

namespace crackseg {

// Which sizes a model accepts along each spatial axis (H and W checked independently).
struct SizeRule {
  enum class Kind : uint8_t {
    exact,        // exactly `value` (patch CNN: 2h+1)
    multiple,     // value*k, k >= 1 (U-Net: 2^depth; FlexUNet: 2^(layers-1))
    pow2_minus1,  // value*k - 1, k >= 2 (hourglass/Spiral-Net, value = 2^encoders: 255, 383, ...)
  };
  Kind kind = Kind::multiple;
  int64_t value = 1;

  [[nodiscard]] bool valid(int64_t n) const;
  [[nodiscard]] int64_t at_least(int64_t n) const;  // smallest valid size >= n (padding up)
  [[nodiscard]] int64_t at_most(int64_t n) const;   // largest valid size <= n; 0 when none (tiles)
  [[nodiscard]] int64_t nearest(int64_t n) const;   // closest valid size; ties go up
  [[nodiscard]] std::string describe() const;       // "128k-1 (255, 383, 511, ...)"
};

struct Model {
  // How to read the output logits.
  enum class Output : uint8_t {
    logit,     // (N, 1, H, W): one logit per pixel, sigmoid
    softmax2,  // (N, 2, H, W): two class logits per pixel, softmax over channels
    patch,     // (N, (2s+1)^2): one logit per pixel of the (2s+1)^2 window around the centre
  };

  std::string name;       // family: patch_cnn | unet | hourglass_unet | spiral_net | flex_unet
  nlohmann::json config;  // the resolved [model] section: every key, defaults filled in
  Graph graph;
  Output output = Output::logit;
  int64_t in_channels = 3;
  int64_t out_channels = 1;  // logit: 1, softmax2: 2, patch: (2s+1)^2
  SizeRule size_rule;

  // Throws InputError naming the model, the valid sizes and the nearest valid size.
  void check_input_size(int64_t h, int64_t w) const;
  // Output dims for a batch of n images of h x w (checks the size first).
  [[nodiscard]] Dims output_dims(int64_t n, int64_t h, int64_t w) const;
  // The parameters that define this model, "base=16 depth=4 dropout=0.1 ...".
  [[nodiscard]] std::string summary() const;
  // A typical legal input size (the models table and the benchmark use it).
  [[nodiscard]] int64_t default_input_size() const;
};

[[nodiscard]] const char* to_string(Model::Output o);

// Builds a model from a [model] section ({"name": ..., other keys}). Unknown names and keys,
// wrong types and out-of-range values throw InputError naming the key and the nearest valid one.
[[nodiscard]] std::unique_ptr<Model> build_model(const nlohmann::json& model_section);

// Registered family names, in a fixed order.
[[nodiscard]] std::vector<std::string> model_names();
// Every key a family takes (besides "name") with its default value.
[[nodiscard]] nlohmann::json model_defaults(const std::string& name);
// The configurations of DESIGN.md's "Models" table, in its order (`crackseg models` lists them).
[[nodiscard]] std::vector<nlohmann::json> reference_configs();
// One line saying what the family is.
[[nodiscard]] std::string model_description(const std::string& name);

// The valid name closest to `word` by edit distance (for "did you mean" messages).
[[nodiscard]] std::string nearest_name(const std::string& word, const std::vector<std::string>& names);

}  // namespace crackseg
