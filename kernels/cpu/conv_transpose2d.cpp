// oneDNN conv_transpose2d (deconvolution; weights (I, O, kh, kw) = oneDNN iohw): see
// conv_impl.hpp.
#include "kernels/cpu/conv_impl.hpp"

namespace crackseg::onednn {
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<ConvLayer<true>>(s, n, std::move(c));
}
}  // namespace crackseg::onednn
