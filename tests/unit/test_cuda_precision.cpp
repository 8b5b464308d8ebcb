// ctest-link: crackseg_nn
// The cuda backend's precision rules (kernels/cuda/precision.hpp, issue 15 item 3), without a
// GPU: which train.precision a run may use on which device and determinism, what each
// convolution pass hands cuDNN (data type, compute type, math type, acceptable algorithms),
// the bf16 buffer sizes, and the fp32 -> bf16 rounding of the device conversion kernel
// checked bit for bit against the CPU's (oneDNN's f32 -> bf16 reorder) on NaN, Inf, ties,
// subnormals, overflow and a random sweep. Fails if bf16 is accepted below compute
// capability 8.0 or under bitwise determinism, if a pass would run bf16 without tensor-op
// math or fp32 with it, or if the GPU would round one value differently from the CPU.
#include <gtest/gtest.h>

#include <bit>
#include <functional>
#include <cmath>
#include <dnnl.hpp>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cuda/precision.hpp"

using namespace crackseg;
using namespace crackseg::cuda;

namespace crackseg::onednn {
std::string missing_bf16_isa();
}

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// oneDNN's f32 -> bf16 reorder of `v` (what the CPU backend's bf16 convolutions read).
std::vector<uint16_t> onednn_bf16(const std::vector<float>& v) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  const dnnl::memory::dims d{static_cast<dnnl::memory::dim>(v.size())};
  dnnl::memory src({d, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a}, eng,
                   const_cast<float*>(v.data()));
  std::vector<uint16_t> out(v.size());
  dnnl::memory dst({d, dnnl::memory::data_type::bf16, dnnl::memory::format_tag::a}, eng, out.data());
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
  return out;
}

float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

}  // namespace

TEST(CudaPrecision, ParsesEachValueAndRefusesUnknownOnes) {
  EXPECT_EQ(cuda_precision("fp32", true, "A100", 8, 0), ConvPrecision::fp32);
  EXPECT_EQ(cuda_precision("fp32", false, "V100", 7, 0), ConvPrecision::fp32);
  EXPECT_EQ(cuda_precision("tf32", false, "A100", 8, 0), ConvPrecision::tf32);
  EXPECT_EQ(cuda_precision("bf16", false, "A100", 8, 0), ConvPrecision::bf16);
  EXPECT_EQ(cuda_precision("bf16", false, "H200", 9, 0), ConvPrecision::bf16);
  EXPECT_EQ(cuda_precision("bf16", false, "RTX 3090", 8, 6), ConvPrecision::bf16);
  const std::string m = message_of([] { (void)cuda_precision("fp16", false, "A100", 8, 0); });
  EXPECT_NE(m.find("train.precision = \"fp16\""), std::string::npos) << m;
  EXPECT_NE(m.find("\"bf16\""), std::string::npos) << m;
}

TEST(CudaPrecision, Bf16IsRefusedBelowComputeCapability8NamingTheDevice) {
  for (auto [major, minor] : {std::pair{7, 0}, std::pair{7, 5}, std::pair{6, 1}}) {
    const std::string m = message_of([&] { (void)cuda_precision("bf16", false, "Tesla V100-SXM2-32GB", major, minor); });
    EXPECT_NE(m.find("Tesla V100-SXM2-32GB"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(major) + "." + std::to_string(minor)), std::string::npos) << m;
    EXPECT_NE(m.find("8.0"), std::string::npos) << m;
    EXPECT_NE(m.find("train.precision = \"bf16\""), std::string::npos) << m;
  }
  // tf32 below 8.0 stays accepted (it computes in fp32 there), as before bf16 existed.
  EXPECT_EQ(cuda_precision("tf32", false, "V100", 7, 0), ConvPrecision::tf32);
}

TEST(CudaPrecision, BitwiseDeterminismIsFp32Only) {
  for (const char* v : {"tf32", "bf16"}) {
    const std::string m = message_of([&] { (void)cuda_precision(v, true, "A100", 8, 0); });
    EXPECT_NE(m.find("bitwise"), std::string::npos) << v << ": " << m;
    EXPECT_NE(m.find(std::string("train.precision = \"") + v + "\""), std::string::npos) << m;
  }
}

TEST(CudaPrecision, EachPassGetsBf16OperandsFp32ComputeAndTensorOpMath) {
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
    const ConvNumerics b = conv_numerics(ConvPrecision::bf16, pass);
    EXPECT_EQ(b.operands, DataType::bf16);
    EXPECT_EQ(b.compute, DataType::f32);
    EXPECT_TRUE(b.widen_output);
    for (ConvPrecision p : {ConvPrecision::fp32, ConvPrecision::tf32}) {
      const ConvNumerics f = conv_numerics(p, pass);
      EXPECT_EQ(f.operands, DataType::f32);
      EXPECT_EQ(f.compute, DataType::f32);
      EXPECT_FALSE(f.widen_output);
    }
  }
  for (MathType reported : {MathType::default_math, MathType::tensor_op, MathType::fma}) {
    EXPECT_EQ(math_for(ConvPrecision::fp32, reported), MathType::fma);
    EXPECT_EQ(math_for(ConvPrecision::tf32, reported), reported);
    EXPECT_EQ(math_for(ConvPrecision::bf16, reported), MathType::tensor_op);
  }
}

TEST(CudaPrecision, AlgorithmFilter) {
  const std::size_t lim = 1 << 20;
  for (ConvPrecision p : {ConvPrecision::fp32, ConvPrecision::tf32, ConvPrecision::bf16}) {
    EXPECT_TRUE(algo_acceptable(p, true, lim, lim, false, false, MathType::fma));
    EXPECT_FALSE(algo_acceptable(p, false, 0, lim, false, true, MathType::fma));       // status
    EXPECT_FALSE(algo_acceptable(p, true, lim + 1, lim, false, true, MathType::fma));  // workspace
    EXPECT_FALSE(algo_acceptable(p, true, 0, lim, true, false, MathType::fma));        // determinism
    EXPECT_TRUE(algo_acceptable(p, true, 0, lim, true, true, MathType::default_math));
    EXPECT_FALSE(algo_acceptable(p, true, 0, lim, false, true, MathType::tensor_op_allow_conversion));
  }
  EXPECT_FALSE(algo_acceptable(ConvPrecision::fp32, true, 0, lim, false, true, MathType::tensor_op));
  EXPECT_TRUE(algo_acceptable(ConvPrecision::tf32, true, 0, lim, false, true, MathType::tensor_op));
  EXPECT_TRUE(algo_acceptable(ConvPrecision::bf16, true, 0, lim, false, true, MathType::tensor_op));
}

TEST(CudaPrecision, Bf16BufferSizes) {
  // conv2d 3x3: x (2, 8, 10, 12), w (16, 8, 3, 3), y (2, 16, 10, 12); kept = x.
  const Bf16ConvBuffers c = bf16_conv_buffers({2, 8, 10, 12}, {16, 8, 3, 3}, {2, 16, 10, 12}, KeptOperand::x);
  EXPECT_EQ(c.kept, 2u * 2 * 8 * 10 * 12);
  EXPECT_EQ(c.weights, 2u * 16 * 8 * 9);
  EXPECT_EQ(c.in, 2u * 2 * 16 * 10 * 12);
  EXPECT_EQ(c.out, 2u * 2 * 16 * 10 * 12);
  // conv_transpose2d 2x2 stride 2 as the adjoint geometry: x = the layer's output
  // (2, 4, 20, 24), y = its input (2, 8, 10, 12); kept = dy (the layer's input).
  const Bf16ConvBuffers t = bf16_conv_buffers({2, 4, 20, 24}, {8, 4, 2, 2}, {2, 8, 10, 12}, KeptOperand::dy);
  EXPECT_EQ(t.kept, 2u * 2 * 8 * 10 * 12);
  EXPECT_EQ(t.weights, 2u * 8 * 4 * 4);
  EXPECT_EQ(t.in, 2u * 2 * 4 * 20 * 24);
  EXPECT_EQ(t.out, 2u * 2 * 4 * 20 * 24);
  // A filter larger than both activations (1x1 images, wide layer): out holds dw.
  const Bf16ConvBuffers f = bf16_conv_buffers({1, 64, 1, 1}, {64, 64, 1, 1}, {1, 64, 1, 1}, KeptOperand::x);
  EXPECT_EQ(f.out, 2u * 64 * 64);
}

TEST(CudaPrecision, RoundingMatchesTheCpuOnEdgeCases) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {
      0.0f, -0.0f, 1.0f, -1.0f, inf, -inf,
      std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
      from_bits(0x7f800001u),  // signalling NaN, payload only in the low bits (truncation alone would give Inf)
      from_bits(0xff800001u), from_bits(0x7fa00000u), from_bits(0x7fc0ffffu),
      from_bits(0x3f808000u),  // tie, even below: rounds down to 0x3f80
      from_bits(0x3f818000u),  // tie, odd below: rounds up to 0x3f82
      from_bits(0x3f808001u), from_bits(0x3f807fffu), from_bits(0xbf818000u),
      std::numeric_limits<float>::max(),  // overflows to Inf under round-to-nearest-even
      -std::numeric_limits<float>::max(), from_bits(0x7f7f7fffu), from_bits(0x7f7f8000u),
      std::numeric_limits<float>::min(),         // smallest normal
      std::numeric_limits<float>::denorm_min(),  // subnormals
      -std::numeric_limits<float>::denorm_min(), from_bits(0x007fffffu), from_bits(0x80400000u),
      from_bits(0x00800001u), from_bits(0x00808000u), 3.14159265f, 1e-30f, -65504.0f};
  // Against oneDNN where it runs bf16 (the only CPUs a bf16 run is accepted on; elsewhere its
  // conversion may be an emulation with other subnormal handling, and bf16 is refused).
  if (onednn::missing_bf16_isa().empty()) {
    const std::vector<uint16_t> cpu = onednn_bf16(v);
    for (std::size_t i = 0; i < v.size(); ++i)
      EXPECT_EQ(bf16_bits(v[i]), cpu[i]) << "value bits 0x" << std::hex << std::bit_cast<uint32_t>(v[i]);
  }
  // The cases spelled out, so a change in oneDNN cannot silently move both sides.
  EXPECT_EQ(bf16_bits(from_bits(0x3f808000u)), 0x3f80);
  EXPECT_EQ(bf16_bits(from_bits(0x3f818000u)), 0x3f82);
  EXPECT_EQ(bf16_bits(inf), 0x7f80);
  EXPECT_EQ(bf16_bits(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(bf16_bits(from_bits(0x7f800001u)))));
  EXPECT_EQ(bf16_bits(-std::numeric_limits<float>::denorm_min()), 0x8000);
  EXPECT_EQ(bf16_bits(from_bits(0x007fffffu)), 0x0000);  // largest subnormal: to zero, not up to a normal
  EXPECT_EQ(bf16_bits(from_bits(0x7f800001u)), 0x7fc0);  // signalling NaN: quiet bit set
  EXPECT_EQ(bf16_bits(from_bits(0xffa00000u)), 0xffe0);
  EXPECT_EQ(bf16_bits(-inf), 0xff80);
  EXPECT_EQ(bf16_bits(from_bits(0x3f808001u)), 0x3f81);  // above the tie: up
  EXPECT_EQ(bf16_bits(from_bits(0x3f807fffu)), 0x3f80);  // below the tie: down
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
}

TEST(CudaPrecision, RoundingMatchesTheCpuOnRandomBitPatterns) {
  if (const std::string m = onednn::missing_bf16_isa(); !m.empty()) GTEST_SKIP() << "no bf16 kernels here: " << m;
  std::mt19937 gen(15);
  std::vector<float> v(1 << 16);
  for (auto& x : v) x = from_bits(static_cast<uint32_t>(gen()));
  const std::vector<uint16_t> cpu = onednn_bf16(v);
  int mismatches = 0;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (bf16_bits(v[i]) != cpu[i] && ++mismatches <= 5)
      ADD_FAILURE() << "value bits 0x" << std::hex << std::bit_cast<uint32_t>(v[i]) << ": ours 0x" << bf16_bits(v[i])
                    << ", oneDNN 0x" << cpu[i];
  EXPECT_EQ(mismatches, 0);
}
