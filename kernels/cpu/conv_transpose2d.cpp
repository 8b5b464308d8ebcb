// oneDNN conv_transpose2d (weights (I, O, kh, kw) = oneDNN iohw). Stride 2: s*s stride-1
// phase convolutions (conv_transpose_phases.cpp; oneDNN 2.6's strided deconvolution kernels
// are 5-15x slower than its stride-1 ones); other strides: deconvolution primitives
// (conv_impl.hpp).
#include "kernels/cpu/conv_impl.hpp"
#include "kernels/cpu/conv_transpose_phases.hpp"

namespace crackseg::onednn {
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  if (const auto& cs = std::get<ConvTranspose2dSpec>(s); cs.stride == 2 && phases_supported(cs))
    return make_conv_transpose_phases(s, n, std::move(c));
  return std::make_unique<ConvLayer<true>>(s, n, std::move(c));
}
}  // namespace crackseg::onednn
