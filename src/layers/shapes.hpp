// Shape inference, multiply-add counts and parameter layouts per LayerSpec, shared by every
// backend and by the Graph (so `crackseg models` and the planner need no weights).
#pragma once
#include <span>
#include <string>
#include <vector>

#include "src/layers/specs.hpp"
#include "src/tensor/tensor.hpp"

namespace crackseg {

// Output dims for input dims; throws naming the layer (`name`), its kind and the shapes when
// inputs do not fit (wrong count, channels, rank, or an output smaller than 1 pixel).
[[nodiscard]] Dims infer_output_dims(const LayerSpec& spec, std::span<const Dims> in, const std::string& name);

// Forward multiply-adds of one call for these input dims (all of the batch).
[[nodiscard]] double forward_macs(const LayerSpec& spec, std::span<const Dims> in);

// One trainable tensor of a layer, in the order Layer::params() returns them.
struct ParamInfo {
  std::string suffix;  // "weight", "bias"
  Dims dims;           // plain layout, see Param in src/graph/layer.hpp
  Init init = Init::zeros;
  int64_t fan_in = 0, fan_out = 0;
  bool decay = true;
  float fill = 0.0f;  // for Init::zeros tensors: the constant (batchnorm scale = 1)
};
[[nodiscard]] std::vector<ParamInfo> param_infos(const LayerSpec& spec);

// Initialise `value` per `info` from SampleRng(seed, 0, index, Purpose::init): He normal
// std = sqrt(2 / fan_in); He uniform limit sqrt(6 / fan_in); Glorot uniform limit
// sqrt(6 / (fan_in + fan_out)); zeros -> info.fill. `value` is a CPU f32 plain tensor.
void init_param(Tensor& value, const ParamInfo& info, uint64_t seed, uint64_t index);

// 32-bit FNV-1a of a node name: the per-layer dropout salt (independent of rank and batch).
[[nodiscard]] uint32_t name_salt(const std::string& name);

}  // namespace crackseg
