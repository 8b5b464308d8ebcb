// Plain launchers for the .cu kernels the layers use (all on the context's stream). Kept
// free of Layer types so nvcc compiles only kernels and the C++ compiler the layer classes.
#pragma once
#include <cstdint>

namespace crackseg::cuda {

// y = x > 0 ? x : slope * x;  dx = y > 0 ? dy : slope * dy (from the saved output).
void leaky_relu_forward(const float* x, float* y, float slope, int64_t count);
void leaky_relu_backward(const float* y, const float* dy, float* dx, float slope, int64_t count);

// out = sum of `count` inputs (summed in double, as the reference does).
void add_n(const float* const* inputs, int num_inputs, float* out, int64_t count);

// Dropout mask per src/layers/dropout_mask.hpp. `sample_ids` (device, N entries) or null
// for "item n is sample n". Layout: nhwc (n, c, h, w) with (C, H, W) = (c, h, w), or a 2-D
// (N, F) tensor with c = F, h = w = 1. dst = dropped ? 0 : src * 1/(1-p).
struct DropoutArgs {
  uint64_t seed = 0, epoch = 0;
  uint32_t salt = 0;
  float p = 0.5f;
  int64_t n = 0, c = 0, h = 0, w = 0;
  bool nhwc = true;
};
// Sample ids passed by value in the launch (kernel parameters, 8 + 8 * 64 bytes): no copy
// from pageable memory, hence no stream drain, for batches of up to kDropoutInlineIds.
inline constexpr int kDropoutInlineIds = 64;
struct DropoutIds {
  int64_t count = 0;  // 0: not used
  uint64_t ids[kDropoutInlineIds] = {};
};
// Sample of item n: sample_ids[n] (device array) when not null, else inline_ids.ids[n] when
// inline_ids.count > 0, else n.
void dropout_apply(const DropoutArgs& a, const DropoutIds& inline_ids, const uint64_t* sample_ids, const float* src,
                   float* dst);
// The raw 32-bit words rng_word(seed, epoch, sample, Purpose::dropout, i) for i in
// [first, first + count), computed on the device (test of CPU/GPU agreement).
void dropout_rng_words(uint64_t seed, uint64_t epoch, uint64_t sample, uint64_t first, int64_t count,
                       uint32_t* out);

// Batchnorm backward with fixed (running) statistics, nhwc x (M = N*H*W rows of C):
//   dx = dy * scale * inv_std;  dscale += sum dy * (x - mean) * inv_std;  dshift += sum dy.
void batchnorm_fixed_backward(const float* x, const float* dy, const float* scale, const float* mean,
                              const float* var, float eps, int64_t rows, int64_t channels, float* dx,
                              float* dscale, float* dshift);

// dst[r * dst_pitch + c] = src[r * src_pitch + c] for r < rows, c < width (floats): the
// channel slices of a concat, nhwc.
void copy_columns(float* dst, int64_t dst_pitch, const float* src, int64_t src_pitch, int64_t width, int64_t rows);

// Training batch statistics, nhwc x (rows = N*H*W rows of C), one block per channel in a
// fixed order (deterministic), in double: out[c] = mean, out[C + c] = biased variance *
// var_factor (the caller passes unbiased_variance(1, rows) of src/layers/running_stats.hpp).
void batchnorm_batch_stats(const float* x, int64_t rows, int64_t channels, float var_factor, float* out);
// running_mean = (1 - momentum) * running_mean + momentum * stats[c], running_var likewise
// with stats[C + c] (in double, rounded once, as the CPU backends do).
void batchnorm_running_update(const float* stats, int64_t channels, float momentum, float* running_mean,
                              float* running_var);

}  // namespace crackseg::cuda
