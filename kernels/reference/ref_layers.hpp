// Reference layers: plain loops, double accumulation, any 4-D format through
// Tensor::offset. Slow on purpose; the tests hold every other backend to them.
#pragma once
#include <memory>
#include <string>

#include "src/layers/layer_base.hpp"

namespace crackseg::reference {

std::unique_ptr<Layer> make_conv2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_maxpool2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_eltwise(const LayerSpec& s, const std::string& name);  // relu, leaky, sigmoid
std::unique_ptr<Layer> make_softmax(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_linear(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_flatten(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_add(const LayerSpec& s, const std::string& name);

}  // namespace crackseg::reference
