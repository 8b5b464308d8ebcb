// Strided transposed convolution as s*s stride-1 "phase" convolutions (oneDNN backend).
// The math, the layout and why: conv_transpose_phases.cpp. make_conv_transpose2d picks it
// for stride 2 where phases_supported(); every other transposed conv stays ConvLayer<true>.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {

// One output phase a (outputs o = s*m + a) along one axis of a transposed convolution with
// input length `in`, kernel K, stride s, padding p, output_padding op.
struct AxisPhase {
  int64_t r = 0;      // kernel taps k = s*j + r, j in [0, taps), feed this phase
  int64_t taps = 0;   // J: the phase convolution's kernel length (0: the phase is bias only)
  int64_t pad_l = 0;  // stride-1 correlation of x with the reversed taps: left / right padding
  int64_t pad_r = 0;
  int64_t out = 0;    // M: outputs of this phase (0 when the output is shorter than a + 1)
};
[[nodiscard]] AxisPhase axis_phase(int64_t in, int64_t K, int64_t s, int64_t p, int64_t op, int64_t a);

// True when every phase's convolution has non-negative padding (what oneDNN accepts for a
// stride-1 convolution); false e.g. for padding >= kernel / 2 with few taps per phase. The
// answer does not depend on the input size.
[[nodiscard]] bool phases_supported(const ConvTranspose2dSpec& s);

std::unique_ptr<Layer> make_conv_transpose_phases(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);

}  // namespace crackseg::onednn
