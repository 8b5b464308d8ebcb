// fp32 <-> bf16 conversion kernels of the bf16 convolutions (conv_core.cpp), on the
// context's compute stream. The rounding is precision.hpp's bf16_bits (round to nearest
// even, bit for bit oneDNN's, so GPU and CPU runs round operands alike).
#pragma once
#include <cstdint>

namespace crackseg::cuda {

// dst[i] = bf16(src[i]), count elements.
void round_to_bf16(const float* src, uint16_t* dst, int64_t count);
// dst[i] = float(src[i]) + beta * dst[i] (beta 0: dst is only written).
void widen_bf16(const uint16_t* src, float* dst, int64_t count, float beta);

}  // namespace crackseg::cuda
