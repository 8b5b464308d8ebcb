// Shared pieces of the oneDNN backend: one engine + stream per backend instance, a user
// scratchpad shared by all primitives of that backend (grown only in plan()), memory
// descriptor helpers and a counting primitive factory.
//
// Steady state: every primitive, memory object and argument map is built in plan(); forward
// and backward only point memory objects at the step's buffers (set_data_handle) and execute.
#pragma once
#include <dnnl.hpp>

#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>

#include "kernels/cpu/dnnl_check.hpp"
#include "kernels/cpu/simd_switches.hpp"
#include "src/graph/backend.hpp"
#include "src/layers/layer_base.hpp"

namespace crackseg::onednn {

// oneDNN 2.6's AMX bf16 convolution backward-weights kernel (`jit:avx512_core_amx_bf16`)
// stores whole 16x16 fp32 tiles outside its buffers for some shapes (the U-Net's stride-1
// 3x3 layers at 400 pixels wide, nhwc or blocked, with or without bias, any thread count:
// found with CRACKSEG_GUARD_PAGES; it corrupted the heap and crashed `crackseg bench
// --precision bf16` on the first AMX CPU we had; docs/DEBUGGING.md). So a bf16 weight
// gradient never takes it: the next implementation oneDNN offers (its AVX512-BF16 kernel,
// the same bf16 operands and fp32 accumulation) runs instead. Returns whether it moved off
// AMX (false also if oneDNN offered nothing else; none of our shapes). Most bf16 weight
// gradients no longer run oneDNN's at all on AMX CPUs: our own AMX kernel takes them
// (amx_wgrad.hpp); this guards the shapes it does not take.
template <class PD>
bool skip_amx_weight_gradient(PD& pd) {
  const auto is_amx = [&] { return std::string_view(pd.impl_info_str()).find("amx") != std::string_view::npos; };
  if (!is_amx()) return false;
  while (is_amx())
    if (!pd.next_impl()) return false;
  return true;
}

// fp32 forward convolutions of few input channels on small maps: oneDNN 2.6 offers its
// brgemm kernel (`brgconv:avx512_core`) first, but its older direct kernel
// (`jit:avx512_core`) ran such layers of the bench models as fast or faster on both CPUs
// measured: on the AMX Xeon of the fifteenth session the patch CNN's 3 -> 16 at 27x27 0.62 ->
// 0.28 ms, its 16 -> 16 1.89 -> 1.31 ms, Spiral-Net's 1-6 -> 16 stride-2 layers 6-25%; on the
// Zen 4 of the sixteenth the patch CNN +9% a step, Spiral-Net's 1-2 -> 16 entries 0.33-0.62
// -> 0.25-0.36 ms. For more input channels the brgemm kernel mostly wins (U-Net's 32/64 ->
// 16/32: 10-13% slower on jit, Xeon), and on big maps it wins by far on the Zen 4: U-Net's 16
// -> 16 at 400x400 took 24.9-29.7 ms a call on jit against 16.8-19.2 on brgconv, its 16 -> 32
// at 200x200 10.1-13.6 against 8.5-9.3 (where the Xeon had jit 3-8% ahead): docs/
// PERFORMANCE.md "Sixteenth session". So where the input has at most kJitForwardMaxIn
// channels, each image's output map at most kJitForwardMaxPixels pixels (Spiral-Net's 127 x
// 127 and everything smaller), the operands are fp32 and oneDNN's first choice is brgconv, the
// descriptor is rebuilt by `make` and moved on to jit:avx512_core if oneDNN offers it (else
// oneDNN's first choice stays). The rule reads the layer's shape only, so a given model and
// input size always gets the same kernels (eval and predict reproduce training's records).
// Another kernel sums in another order: the run's arithmetic line counts these layers.
// CRACKSEG_NO_JIT_FORWARD=1 keeps oneDNN's first choice everywhere (A/B runs with one binary).
inline constexpr int64_t kJitForwardMaxIn = 16;
inline constexpr int64_t kJitForwardMaxPixels = 128 * 128;
[[nodiscard]] inline bool jit_forward_enabled() { return !simd_switched_off("CRACKSEG_NO_JIT_FORWARD"); }
// in_c: the convolution's input channels; out_pixels: its output map's height x width.
template <class PD, class Make>
bool take_jit_forward(PD& pd, int64_t in_c, int64_t out_pixels, Make make) {
  if (in_c > kJitForwardMaxIn || out_pixels > kJitForwardMaxPixels || !jit_forward_enabled()) return false;
  if (std::string_view(pd.impl_info_str()) != "brgconv:avx512_core") return false;
  PD alt = make();
  while (alt.next_impl())
    if (std::string_view(alt.impl_info_str()) == "jit:avx512_core") {
      pd = alt;
      return true;
    }
  return false;
}

// train.precision = "bf16": convolutions with fewer input channels than this stay fp32. Their
// bf16 kernels pad the channels (AMX and AVX512-BF16 work on pairs, oneDNN's blocks and our
// AMX weight gradient on 16), and the rounding copies cost more than the arithmetic saved:
// on the AMX Xeon of the fifteenth session Spiral-Net's 1-7-channel module entries and head
// ran slower in bf16 than in fp32 (enc1 backward 1.6-1.85 ms against 1.0-1.9, forward
// 0.5-0.9 against 0.35-0.76), and keeping the <8-channel layers fp32 took the bf16 bench
// from 35.2 to 36.6 img/s (Spiral-Net), 14,490 to 15,245 patches/s (patch CNN, its 3-channel
// first layer), U-Net 10.5 -> 10.6-10.9 (docs/PERFORMANCE.md "Fifteenth session"). The
// layer's own arithmetic is then fp32 (closer to the fp32 run); the run's arithmetic line
// counts these layers. CRACKSEG_BF16_FEW_CHANNELS=1 runs them in bf16 too (A/B runs; the
// tests of the bf16 kernels on few channels).
inline constexpr int64_t kBf16MinIn = 8;
[[nodiscard]] inline bool bf16_few_channels_forced() {
  const char* v = std::getenv("CRACKSEG_BF16_FEW_CHANNELS");
  return v && std::string_view(v) == "1";
}

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using Args = std::unordered_map<int, dnnl::memory>;

struct Context {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  Tensor scratch;  // user scratchpad, shared: layers run one at a time
  // train.precision = "bf16": convolutions made after this is set read bf16 operands
  // (conv_impl.hpp). The counts say how many did and how many had no bf16 kernel.
  bool bf16 = false;
  int bf16_layers = 0, bf16_fallbacks = 0;
  // Layers whose output is currently stored as bf16 (Layer::set_output_bf16; a re-plan that
  // does not choose it again removes the layer).
  std::set<const void*> bf16_outputs;
  // Layers whose input gradient is currently written as bf16 (Layer::set_din_bf16).
  std::set<const void*> bf16_dins;
  // train.conv_algorithm = "winograd": 3x3 stride-1 fp32 convolutions made after this is set
  // run oneDNN's Winograd F(4x4, 3x3) where it has a kernel (conv_impl.hpp); counts as above.
  bool winograd = false;
  int wino_layers = 0, wino_fallbacks = 0;
  // Convolutions whose weight gradient runs on oneDNN's blocked layout (no AVX-512:
  // conv_impl.hpp), as planned now (a re-plan that does not choose it removes the layer).
  std::set<const void*> blocked_wgrad_layers;
  // Few-input-channel convolutions whose weight gradient runs on our own AVX2 kernel (no
  // AVX-512: small_conv_wgrad.hpp), likewise.
  std::set<const void*> small_wgrad_layers;
  // bf16 convolutions whose weight gradient left oneDNN's AMX kernel (skip_amx_weight_gradient).
  std::set<const void*> amx_wgrad_skipped;
  // bf16 convolutions whose weight gradient runs on our own AMX kernel (amx_wgrad.hpp).
  std::set<const void*> amx_wgrad_layers;
  // fp32 convolutions whose forward runs oneDNN's jit:avx512_core kernel, not its first choice
  // brgconv (take_jit_forward), as planned now.
  std::set<const void*> jit_fwd_layers;
  // bf16 runs: convolutions kept fp32 for their few input channels (kBf16MinIn), as planned now.
  std::set<const void*> bf16_narrow_fp32;
  // The bf16 copy of a convolution's output gradient lives only during that layer's
  // backward: one buffer, shared, sized to the largest (grown only in plan()).
  Tensor bf16_grad;
  void reserve_bf16_grad(std::size_t bytes) {
    if (bf16_grad.defined() && bf16_grad.nbytes() >= bytes) return;
    bf16_grad = alloc_buffer({static_cast<int64_t>((bytes + 3) / 4)});
  }

  void reserve_scratch(std::size_t bytes) {
    if (scratch.defined() && scratch.nbytes() >= bytes) return;
    scratch = alloc_buffer({static_cast<int64_t>((bytes + 3) / 4)});
  }
  void* scratch_ptr() { return scratch.defined() ? scratch.raw() : nullptr; }
};

// "" when oneDNN may dispatch to bf16 kernels here (AVX512-BF16 or AMX, after any
// DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA limit); otherwise what it found instead.
[[nodiscard]] std::string missing_bf16_isa();
// False when CRACKSEG_CONVT_PHASES=0 keeps stride-2 transposed convolutions on oneDNN's
// deconvolution primitives (A/B benchmarks; conv_transpose2d.cpp).
[[nodiscard]] bool convt_phases_enabled();

[[nodiscard]] inline dnnl::memory::dims to_dnnl(const Dims& d) { return {d.begin(), d.end()}; }

// Activation descriptor: 4-D -> nhwc, 2-D -> nc, 1-D -> a.
[[nodiscard]] inline dnnl::memory::desc act_md(const Dims& d) {
  const tag t = d.size() == 4 ? tag::nhwc : d.size() == 2 ? tag::nc : tag::a;
  return {to_dnnl(d), dt::f32, t};
}

[[nodiscard]] inline dnnl::primitive_attr scratch_attr() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

// Creates a primitive from its descriptor and counts it (tests: none in steady state).
template <class P, class PD>
[[nodiscard]] P make_primitive(const PD& pd) {
  nn_counters().primitives_created.fetch_add(1, std::memory_order_relaxed);
  return CRACKSEG_DNNL_CALL(P(pd));
}

// A memory object with no data yet; forward/backward bind it with bind().
[[nodiscard]] inline dnnl::memory unbound(const dnnl::memory::desc& md, const dnnl::engine& e) {
  return CRACKSEG_DNNL_CALL(dnnl::memory(md, e, DNNL_MEMORY_NONE));
}
// A memory object over a buffer the layer owns (allocated here, once, in plan).
[[nodiscard]] inline dnnl::memory owned(const dnnl::memory::desc& md, const dnnl::engine& e, Tensor& storage) {
  storage = alloc_buffer({static_cast<int64_t>((md.get_size() + 3) / 4) + 1});
  return CRACKSEG_DNNL_CALL(dnnl::memory(md, e, storage.raw()));
}
inline void bind(const dnnl::memory& m, const Tensor& t) { m.set_data_handle(const_cast<void*>(t.raw())); }
// Whether oneDNN dispatches to AVX-512 (avx512_core) kernels here, after any ONEDNN_MAX_CPU_ISA /
// DNNL_MAX_CPU_ISA limit.
[[nodiscard]] inline bool onednn_has_avx512_core() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto core = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
  return (isa & core) == core;
}
// Whether oneDNN may use AMX here (after any ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA limit): our
// own AMX kernels follow the same limit, so that one variable keeps a run off AMX.
[[nodiscard]] inline bool onednn_allows_amx() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto amx = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_amx);
  return (isa & amx) == amx;
}
// grad[0..n) += delta[0..n): a primitive's bias gradient into the parameter's accumulated one.
inline void add_into(Tensor& grad, const Tensor& delta, int64_t n) {
  float* g = grad.data<float>();
  const float* d = delta.data<float>();
  for (int64_t i = 0; i < n; ++i) g[i] += d[i];
}

// The activation a convolution may fuse as a relu post-op (backward from the saved output):
// ReLU (alpha 0) or a LeakyReLU with slope > 0 (dst > 0 <=> pre-activation > 0); else none.
[[nodiscard]] inline std::optional<float> fusable_relu_alpha(const LayerSpec& act) {
  if (std::holds_alternative<ReluSpec>(act)) return 0.0f;
  if (const auto* l = std::get_if<LeakyReluSpec>(&act); l && l->slope > 0.0f) return l->slope;
  return std::nullopt;
}

// Base for oneDNN layers: the shared context and execution with the user scratchpad.
class DnnlLayer : public LayerBase {
 public:
  DnnlLayer(const LayerSpec& s, const std::string& name, std::shared_ptr<Context> ctx)
      : LayerBase(s, name), ctx_(std::move(ctx)) {}

 protected:
  // Registers a primitive's scratchpad need; call in plan() for every primitive descriptor.
  template <class PD>
  dnnl::memory scratch_for(const PD& pd) {
    ctx_->reserve_scratch(pd.scratchpad_desc().get_size());
    return unbound(pd.scratchpad_desc(), ctx_->engine);
  }
  void exec(const dnnl::primitive& p, Args& args, const dnnl::memory& scratch) {
    scratch.set_data_handle(ctx_->scratch_ptr());
    args[DNNL_ARG_SCRATCHPAD] = scratch;  // key exists after the first call: no allocation
    try {
      p.execute(ctx_->stream, args);
    } catch (const dnnl::error& e) {
      const std::string call = "execute " + kind_name(spec_) + " '" + name_ + "' primitive";
      detail::rethrow_dnnl(e, call.c_str());
    }
  }
  void wait() { CRACKSEG_DNNL_CALL(ctx_->stream.wait()); }
  std::shared_ptr<Context> ctx_;
};

// Factories, one per op file.
std::unique_ptr<Layer> make_conv2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_maxpool2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_eltwise(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_softmax(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_add(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_linear(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);
std::unique_ptr<Layer> make_flatten(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c);

}  // namespace crackseg::onednn
