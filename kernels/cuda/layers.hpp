// Factories for the CUDA layers, one file per op in this folder (backend.cpp dispatches).
#pragma once
#include <memory>
#include <string>

#include "src/graph/layer.hpp"

namespace crackseg::cuda {

std::unique_ptr<Layer> make_conv2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_maxpool2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_activation(const LayerSpec& s, const std::string& name);  // relu, leaky, sigmoid
std::unique_ptr<Layer> make_softmax(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_linear(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_flatten(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& name);
std::unique_ptr<Layer> make_add(const LayerSpec& s, const std::string& name);

// InputError naming `layer` unless eps > 0 and eps >= CUDNN_BN_MIN_EPSILON (0.0 in cuDNN 9,
// so the header's constant alone would accept eps = 0).
void check_batchnorm_eps(double eps, const std::string& layer);

}  // namespace crackseg::cuda
