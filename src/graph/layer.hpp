// The Layer interface every backend implements (kernels/reference, kernels/cpu = oneDNN,
// kernels/cuda = cuDNN). forward and backward sit side by side in each implementation.
//
// Contract:
// - plan(in_dims) is called when input shapes change (first step, new batch or crop size):
//   build primitives, allocate workspaces. A steady-state step calls only forward/backward
//   and allocates nothing.
// - forward writes `out`, whose dims and format the Graph allocated from output_dims() and
//   the backend's activation format.
// - backward *writes* din[i] (nullptr when input i needs no gradient, e.g. the image) and
//   *accumulates* into its parameters' grads (so gradient accumulation over micro-batches is
//   just several backward calls; the optimizer zeroes grads).
// - Tensors are (N, C, H, W) logically; the backend chooses the memory format (oneDNN: nhwc).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "src/layers/specs.hpp"
#include "src/tensor/tensor.hpp"

namespace crackseg {

// A trainable parameter and its gradient; both plain layout, f32, same dims. Weight layouts:
// conv2d (O, I, kh, kw); conv_transpose2d (I, O, kh, kw) (PyTorch's convention);
// linear (O, I); batchnorm scale and shift (C).
struct Param {
  std::string name;  // "enc1.conv1.weight"
  Tensor value;
  Tensor grad;
  bool decay = true;  // weight decay applies (false for biases and batchnorm)
};

// Per-step information stochastic and mode-dependent layers need.
struct StepContext {
  bool training = true;
  uint64_t seed = 0;
  uint64_t epoch = 0;
  // Global sample index of each item in the batch (size N). Dropout keys its mask by
  // (seed, epoch, sample id, Purpose::dropout, layer salt + element), never by rank/thread.
  std::span<const uint64_t> sample_ids;
};

class Layer {
 public:
  virtual ~Layer() = default;
  Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  [[nodiscard]] virtual const LayerSpec& spec() const = 0;
  // Output dims for the given input dims; throws naming the layer and both shapes when the
  // inputs do not fit.
  [[nodiscard]] virtual Dims output_dims(std::span<const Dims> in) const = 0;
  virtual void plan(std::span<const Dims> in) = 0;
  virtual void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) = 0;
  virtual void backward(const StepContext& ctx, std::span<const Tensor* const> in, const Tensor& out,
                        const Tensor& dout, std::span<Tensor* const> din) = 0;
  // Parameters in a fixed order (weight, bias / scale, shift); empty for parameterless layers.
  [[nodiscard]] virtual std::vector<Param*> params() { return {}; }
  // Non-trainable state saved in checkpoints (batchnorm running mean and variance).
  [[nodiscard]] virtual std::vector<std::pair<std::string, Tensor*>> buffers() { return {}; }

  // ---- optional hooks (defaults keep simple layers simple) ----
  // Fusion: the Graph offers a conv / transposed conv / batchnorm the ReLU or LeakyReLU spec
  // that directly follows it when the producer's output has no other consumer. Returning true means
  // forward now writes act(conv(x) + b) (oneDNN post-op) and backward receives that
  // activated `out` and the gradient w.r.t. it (the activation's backward uses the saved
  // output). The Graph then skips the activation node.
  [[nodiscard]] virtual bool fuse_activation(const LayerSpec& /*activation*/) { return false; }
  // Fusion, second step: the Graph offers the dropout that directly follows a layer (or its
  // fused activation) when nothing else reads what the dropout reads. Returning true means
  // forward now writes dropout(...) with the dropout node's own mask (`name` is the dropout
  // node's name: the mask is salted by it, so the bits are those of the unfused plan) and
  // backward receives the gradient w.r.t. that output; the Graph skips the dropout node.
  // Batchnorm on the oneDNN backend accepts (one memory pass fewer each way).
  [[nodiscard]] virtual bool fuse_dropout(const LayerSpec& /*dropout*/, const std::string& /*name*/) { return false; }
  // In-place execution (memory; docs/ARCHITECTURE.md): an elementwise layer whose forward may
  // write over its input (out and in[0] the same buffer) and whose backward reads only its
  // output says so here; the Graph then gives it its producer's buffer when that producer
  // feeds nothing else and does not read its own output in backward (below).
  [[nodiscard]] virtual bool runs_in_place() const { return false; }
  // Whether backward() reads the `out` it is given (the forward's output). A layer that
  // returns false (batchnorm on oneDNN: it differentiates from its input and the batch
  // statistics) lets a following in-place activation overwrite its output.
  [[nodiscard]] virtual bool backward_reads_output() const { return true; }
  // Whether backward() reads `out` only through its sign (> 0 or not): ReLU / LeakyReLU
  // with the use_dst_for_bwd algorithms (their derivative is 1 or the slope). Such an
  // output may be overwritten by an in-place consumer that keeps_sign_where_grad_flows().
  [[nodiscard]] virtual bool backward_reads_output_sign_only() const { return false; }
  // An in-place layer whose output has its input's sign wherever its backward passes a
  // nonzero gradient, and whose backward writes an exact zero elsewhere (dropout: kept
  // elements scaled by 1 / (1 - p) > 0, dropped ones 0 in both directions). Overwriting a
  // sign-only producer's output with it then changes no bit of that producer's backward:
  // where the sign could differ (a dropped element) the gradient it multiplies is zero.
  [[nodiscard]] virtual bool keeps_sign_where_grad_flows() const { return false; }
  // Writing straight into a concat (memory, Graph plan): after plan(), the Graph may ask the
  // sole producer of a concat input to write its output as channels [first, first + C) of
  // the concat's nhwc output of `total` channels; a layer that can (and whose backward does
  // not read `out`) returns true and from then on receives that concat tensor as `out`. The
  // concat, asked first whether it can_take_inputs_in_place(), is then told to skip input k.
  // plan() resets both. Saves the U-Net decoder's upsampled tensor and its copy. bf16: the
  // concat is stored as bf16 (set_output_bf16), so the producer must write its output rounded
  // to bf16 exactly as the concat's own copy would (to_bf16.hpp's rounding).
  [[nodiscard]] virtual bool write_output_as_channels(int64_t /*first*/, int64_t /*total*/, bool /*bf16*/ = false) {
    return false;
  }
  [[nodiscard]] virtual bool can_take_inputs_in_place() const { return false; }
  // bf16 activations (train.precision = "bf16" on the CPU; memory and one conversion pass
  // fewer): after plan(), when every reader of a layer's output can_read_bf16_input() and the
  // layer can_write_bf16_output(), the Graph gives that output a bf16 buffer (raw 16-bit
  // patterns, half the bytes) and tells both sides (set_output_bf16 / set_input_bf16). Only
  // where the readers would round that input to bf16 anyway (a bf16 convolution), so no bit
  // of the results changes. plan() resets both.
  [[nodiscard]] virtual bool can_write_bf16_output() const { return false; }
  [[nodiscard]] virtual bool can_read_bf16_input() const { return false; }
  virtual void set_output_bf16() {}
  virtual void set_input_bf16() {}
  // The same for gradients: a layer that would round its output's gradient to bf16 anyway
  // (can_read_bf16_dout) gets it as bf16 when the only reader of its output writes that
  // gradient (its input gradient) as bf16 (can_write_bf16_din).
  [[nodiscard]] virtual bool can_write_bf16_din() const { return false; }
  [[nodiscard]] virtual bool can_read_bf16_dout() const { return false; }
  virtual void set_din_bf16() {}
  virtual void set_dout_bf16() {}
  virtual void take_input_in_place(std::size_t /*k*/) {}
  // Parameter values changed (optimizer step, checkpoint load, init): refresh derived copies
  // such as oneDNN's blocked weights. The Graph calls it before the first forward after
  // instantiate, backward() or params().
  virtual void params_changed() {}

  // Batchnorm running statistics, deferred (docs/ARCHITECTURE.md, distributed semantics):
  // with deferral on, a training forward leaves the running buffers alone and keeps its
  // batch's per-channel statistics; the trainer gathers those of every micro-batch of the
  // global step and applies the momentum updates in global micro-batch order, so the buffers
  // are a function of the global batch only (the same on every rank, for any rank or thread
  // count). batch_stats_size() = floats per micro-batch (mean[C] then unbiased var[C]; 0 for
  // layers without running statistics).
  [[nodiscard]] virtual std::size_t batch_stats_size() const { return 0; }
  virtual void set_defer_running_stats(bool /*defer*/) {}
  // The last training forward's statistics into dst (batch_stats_size() floats).
  virtual void read_batch_stats(std::span<float> /*dst*/) const {}
  // One micro-batch's momentum update: running = (1 - momentum) * running + momentum * stats.
  virtual void apply_batch_stats(std::span<const float> /*src*/) {}
};

// Creates layers for one device. Each backend registers its layer implementations here.
class Backend {
 public:
  virtual ~Backend() = default;
  [[nodiscard]] virtual std::string name() const = 0;  // "reference", "onednn", "cuda"
  [[nodiscard]] virtual Device device() const = 0;
  [[nodiscard]] virtual Format activation_format() const = 0;
  // `name` is the node name (for messages and parameter names: "<name>.weight").
  [[nodiscard]] virtual std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& name) = 0;
  // Copies a CPU plain tensor into `dst` (same dims) on this backend's device; the Graph
  // initialises parameters on the host and uploads them with it. CPU backends: copy_from.
  virtual void upload(const Tensor& host, Tensor& dst) { dst.copy_from(host); }
  // Arithmetic of the layers made after this call (train.precision): "fp32" on every
  // backend; "bf16" on oneDNN where the CPU has AVX512-BF16 or AMX. Throws InputError naming
  // the backend and the missing instruction set otherwise. Call before Graph::instantiate.
  virtual void set_precision(const std::string& precision);
  // Algorithm of the 3x3 stride-1 convolutions made after this call (train.conv_algorithm):
  // "direct" on every backend; "winograd" on oneDNN (Winograd F(4x4, 3x3), fp32). Throws
  // InputError naming the backend otherwise. Call before Graph::instantiate.
  virtual void set_conv_algorithm(const std::string& algorithm);
  // What the layers made so far compute in, for records and benchmarks ("fp32", or e.g.
  // "bf16 (19 convolutions; 0 without a bf16 kernel stay fp32)").
  [[nodiscard]] virtual std::string precision_summary() const { return "fp32"; }

  // The tensor operations the Graph itself performs between layers (input and output
  // gradient staging, gradient sums for outputs with several consumers, zero_grad), so it
  // never touches tensor memory directly. The defaults are the CPU ones; a device backend
  // overrides all three.
  // dst <- src: same dims and dtype; formats may differ (converted). A device backend also
  // takes any device pair (host <-> device), which is how host batches get uploaded.
  virtual void copy(const Tensor& src, Tensor& dst);
  // dst += src: f32, same dims and format, both on this backend's device.
  virtual void accumulate(Tensor& dst, const Tensor& src);
  // t <- 0 (any dtype), t on this backend's device.
  virtual void zero(Tensor& t) { t.zero_(); }
};

// "reference" (plain loops, double accumulation; tests only) or "onednn" (CPU default);
// "cuda" when built with CRACKSEG_CUDA. Throws listing the available names otherwise.
[[nodiscard]] std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace crackseg
