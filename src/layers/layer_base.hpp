// Common state of every backend's layer: its spec, node name and parameter storage (plain
// layout, created from param_infos, values filled by Graph::instantiate).
#pragma once
#include <string>
#include <vector>

#include "src/graph/layer.hpp"
#include "src/layers/shapes.hpp"

namespace crackseg {

class LayerBase : public Layer {
 public:
  LayerBase(const LayerSpec& spec, std::string name, Device device = Device::cpu) : spec_(spec), name_(std::move(name)) {
    for (auto& info : param_infos(spec_))
      params_.push_back(Param{name_ + "." + info.suffix, Tensor::zeros(info.dims, DType::f32, Format::plain, device),
                              Tensor::zeros(info.dims, DType::f32, Format::plain, device), info.decay});
  }
  [[nodiscard]] const LayerSpec& spec() const override { return spec_; }
  [[nodiscard]] Dims output_dims(std::span<const Dims> in) const override {
    return infer_output_dims(spec_, in, name_);
  }
  [[nodiscard]] std::vector<Param*> params() override {
    std::vector<Param*> out;
    for (auto& p : params_) out.push_back(&p);
    return out;
  }
  [[nodiscard]] const std::string& name() const { return name_; }

 protected:
  template <class S>
  [[nodiscard]] const S& as() const { return std::get<S>(spec_); }
  LayerSpec spec_;
  std::string name_;
  std::vector<Param> params_;
};

}  // namespace crackseg
