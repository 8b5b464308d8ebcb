// The cuda backend's arithmetic rules (train.precision = fp32 | tf32 | bf16), free of CUDA
// headers so that host tests run them in CI (tests/unit/test_cuda_precision.cpp):
//   - which precision a run may use on which GPU and determinism (cuda_precision);
//   - what each convolution pass hands cuDNN (conv_numerics, math_for, algo_acceptable; in
//     cuDNN's enums: cudnn_numerics.hpp);
//   - the fp32 -> bf16 rounding of the conversion kernels (bf16_bits, also compiled for the
//     device by bf16.cu), bit for bit the CPU's (oneDNN's f32 -> bf16 conversion);
//   - the bf16 buffers a convolution needs (bf16_conv_buffers), allocated at plan time.
//
// bf16 mirrors the CPU design (docs/PERFORMANCE.md "bf16 mixed precision"): a convolution's
// operands (input, weights, output gradient) are rounded to bf16 by our own kernels, cuDNN
// multiplies them on tensor cores and accumulates in fp32 (the PSEUDO_BFLOAT16 configuration:
// bf16 tensors, CUDNN_DATA_FLOAT compute type, CUDNN_TENSOR_OP_MATH); master weights,
// optimizer state, batchnorm statistics, losses and every other layer stay fp32. One
// difference from the CPU: cuDNN's legacy API takes the output in the operands' type, so the
// result of each pass (y, dx, dw) is written in bf16 and widened back to fp32 by a kernel;
// the CPU (oneDNN) writes fp32 outputs directly. bf16 implies tensor-op math whatever
// TF32 says: "tf32" and "bf16" are alternatives, bf16 the narrower one.
//
// Determinism: bitwise mode (train.determinism = "bitwise") is fp32-only on cuda, for bf16
// as for tf32: which algorithm cuDNN's heuristics return (and so the summation order, and
// for some algorithms a transform before the rounding) is not something bitwise mode can
// promise across GPUs and cuDNN versions, and no GPU run has shown bf16 runs rank-invariant.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "src/core/error.hpp"
#include "src/tensor/tensor.hpp"

#if defined(__CUDACC__)
#define CRACKSEG_HOST_DEVICE __host__ __device__
#else
#define CRACKSEG_HOST_DEVICE
#endif

namespace crackseg::cuda {

enum class ConvPrecision { fp32, tf32, bf16 };

[[nodiscard]] inline const char* precision_name(ConvPrecision p) {
  switch (p) {
    case ConvPrecision::fp32: return "fp32";
    case ConvPrecision::tf32: return "tf32";
    case ConvPrecision::bf16: return "bf16";
  }
  return "?";
}

// Compute capability from which a GPU has bf16 tensor cores (Ampere, sm_80).
inline constexpr int kBf16MinCcMajor = 8;

// train.precision for the cuda backend on the GPU `device_name` (compute capability
// cc_major.cc_minor). Throws InputError naming the key, the value and (for bf16) the device:
// an unknown value; tf32 or bf16 with bitwise determinism; bf16 below compute capability 8.0.
// tf32 below 8.0 is accepted and computes in fp32 (there are no TF32 tensor cores).
[[nodiscard]] inline ConvPrecision cuda_precision(const std::string& value, bool deterministic,
                                                  const std::string& device_name, int cc_major, int cc_minor) {
  ConvPrecision p{};
  if (value == "fp32") p = ConvPrecision::fp32;
  else if (value == "tf32") p = ConvPrecision::tf32;
  else if (value == "bf16") p = ConvPrecision::bf16;
  else
    throw InputError("train.precision = \"" + value + "\": the cuda backend computes in \"fp32\", \"tf32\" or \"bf16\"");
  if (p != ConvPrecision::fp32 && deterministic)
    throw InputError("train.precision = \"" + value + "\" with train.determinism = \"bitwise\": " +
                     (p == ConvPrecision::tf32 ? "TF32" : "bf16") +
                     " products depend on the algorithm cuDNN picks, which bitwise mode cannot promise; use "
                     "precision = \"fp32\" or determinism = \"fast\"");
  if (p == ConvPrecision::bf16 && cc_major < kBf16MinCcMajor)
    throw InputError("train.precision = \"bf16\" needs bf16 tensor cores (compute capability 8.0 or newer); the "
                     "GPU '" + device_name + "' has compute capability " + std::to_string(cc_major) + "." +
                     std::to_string(cc_minor) + ": use precision = \"fp32\"");
  return p;
}

// The cuDNN choices of one convolution pass, in our own terms (conv_core.cpp maps them to
// cudnnDataType_t / cudnnMathType_t).
enum class DataType { f32, bf16 };
// Mirrors cudnnMathType_t: DEFAULT, TENSOR_OP, TENSOR_OP_ALLOW_CONVERSION, FMA.
enum class MathType { default_math, tensor_op, tensor_op_allow_conversion, fma };
enum class ConvPass { forward, backward_data, backward_filter };

struct ConvNumerics {
  DataType operands = DataType::f32;  // x, w, y tensor descriptors (and so the pass's output)
  DataType compute = DataType::f32;   // the convolution descriptor's compute type: always fp32
  bool widen_output = false;          // the pass writes bf16; a kernel widens it into the fp32 tensor
};

// Same for the three passes: bf16 operands in, fp32 accumulation, bf16 out (widened).
[[nodiscard]] inline ConvNumerics conv_numerics(ConvPrecision p, ConvPass) {
  if (p == ConvPrecision::bf16) return {DataType::bf16, DataType::f32, true};
  return {DataType::f32, DataType::f32, false};
}

// The math type a pass runs under, given what cuDNN's heuristics reported for its algorithm:
//   fp32: FMA always (CUDNN_DEFAULT_MATH would still allow TF32 on Ampere and later);
//   tf32: the reported one (tensor op = TF32 on fp32 data);
//   bf16: tensor op always (bf16 data on tensor cores; TENSOR_OP permits, never forbids,
//         other kernels, so it fits every algorithm the heuristics offer for bf16 data).
[[nodiscard]] inline MathType math_for(ConvPrecision p, MathType reported) {
  switch (p) {
    case ConvPrecision::fp32: return MathType::fma;
    case ConvPrecision::tf32: return reported;
    case ConvPrecision::bf16: return MathType::tensor_op;
  }
  return MathType::fma;
}

// Whether a heuristics entry may be used. ALLOW_CONVERSION would convert operands to fp16
// inside cuDNN: never. fp32 refuses tensor-op entries (they would be TF32); deterministic
// mode refuses non-deterministic algorithms; the workspace must fit the limit.
[[nodiscard]] inline bool algo_acceptable(ConvPrecision p, bool status_ok, std::size_t memory, std::size_t limit,
                                          bool deterministic, bool algo_deterministic, MathType reported) {
  if (!status_ok || memory > limit) return false;
  if (deterministic && !algo_deterministic) return false;
  if (reported == MathType::tensor_op_allow_conversion) return false;
  if (p == ConvPrecision::fp32 && reported == MathType::tensor_op) return false;
  return true;
}

// fp32 -> bf16 bits, round to nearest even: oneDNN's conversion (bfloat16_t from float, and
// the AVX512-BF16 vcvtneps2bf16 its kernels use), so a GPU bf16 run rounds exactly like a CPU
// one: zero and subnormal inputs -> zero of the same sign; Inf kept; NaN kept NaN with the
// quiet bit set (its payload truncated); finite values round to nearest even (overflowing to
// Inf past the largest bf16).
CRACKSEG_HOST_DEVICE inline uint16_t bf16_bits(float f) {
  uint32_t u = 0;
  memcpy(&u, &f, sizeof u);
  const uint32_t exponent = u & 0x7f800000u;
  if (exponent == 0x7f800000u) {  // Inf or NaN
    uint32_t hi = u >> 16;
    if ((u & 0x007fffffu) != 0) hi |= 0x0040u;
    return static_cast<uint16_t>(hi);
  }
  if (exponent == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
CRACKSEG_HOST_DEVICE inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f = 0;
  memcpy(&f, &u, sizeof f);
  return f;
}

// Which operand of a ConvCore geometry is the layer's own input, rounded to bf16 once in
// forward and kept (per layer) for the weight gradient: x for conv2d, dy for
// conv_transpose2d (whose forward is the geometry's backward-data).
enum class KeptOperand { x, dy };

// Bytes of bf16 buffers a convolution geometry x (N,C,H,W), w (K,C,R,S), y (N,K,P,Q) needs:
//   kept    the layer's input in bf16, per layer (forward -> weight gradient);
//   weights the KRSC weights in bf16, per layer (refreshed when the parameters change);
//   in      the other operand in bf16 (the output gradient of conv2d; the input gradient's
//           source of conv_transpose2d), one buffer shared by every convolution;
//   out     a pass's bf16 result before widening (y, dx or dw), shared likewise.
// The shared ones are the context's, grown at plan time to the largest geometry: every
// convolution runs in program order on the one compute stream.
struct Bf16ConvBuffers {
  std::size_t kept = 0, weights = 0, in = 0, out = 0;
};
[[nodiscard]] inline Bf16ConvBuffers bf16_conv_buffers(const Dims& x, const Dims& w, const Dims& y,
                                                       KeptOperand kept) {
  auto count = [](const Dims& d) {
    std::size_t n = 1;
    for (int64_t v : d) n *= static_cast<std::size_t>(v);
    return n;
  };
  const std::size_t cx = count(x), cw = count(w), cy = count(y), b = 2;  // sizeof(bf16)
  Bf16ConvBuffers r;
  r.kept = b * (kept == KeptOperand::x ? cx : cy);
  r.weights = b * cw;
  r.in = b * (kept == KeptOperand::x ? cy : cx);
  r.out = b * std::max({cx, cy, cw});
  return r;
}

}  // namespace crackseg::cuda
