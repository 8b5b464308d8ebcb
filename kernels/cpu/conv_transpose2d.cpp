// oneDNN conv_transpose2d (weights (I, O, kh, kw) = oneDNN iohw). Stride 2: s*s stride-1
// phase convolutions (conv_transpose_phases.cpp; oneDNN 2.6's strided deconvolution kernels
// are 5-15x slower than its stride-1 ones); other strides: deconvolution primitives
// (conv_impl.hpp). CRACKSEG_CONVT_PHASES=0 in the environment keeps every transposed conv on
// the deconvolution primitives (A/B benchmarks, docs/PERFORMANCE.md).
#include <cstdlib>
#include <string_view>

#include "kernels/cpu/conv_impl.hpp"
#include "kernels/cpu/conv_transpose_phases.hpp"

namespace crackseg::onednn {
bool convt_phases_enabled() {
  const char* env = std::getenv("CRACKSEG_CONVT_PHASES");
  return env == nullptr || std::string_view(env) != "0";
}

std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  if (const auto& cs = std::get<ConvTranspose2dSpec>(s); convt_phases_enabled() && cs.stride == 2 && phases_supported(cs))
    return make_conv_transpose_phases(s, n, std::move(c));
  return std::make_unique<ConvLayer<true>>(s, n, std::move(c));
}
}  // namespace crackseg::onednn
