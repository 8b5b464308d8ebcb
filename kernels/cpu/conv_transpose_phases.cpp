// Transposed convolution with stride s as s*s stride-1 "phase" convolutions (oneDNN).
//
// Why: oneDNN 2.6 runs deconvolution forward and backward-weights on its old strided
// jit:avx512_core kernels, 5-15x slower than its stride-1 brgconv convolutions
// (docs/PERFORMANCE.md, "Spiral-Net: where the time goes"). Splitting the output into its
// s*s phases turns the strided op into dense stride-1 convolutions, which 2.6 runs on brgconv.
//
// Math, per axis (2-D is the product of the two axes). Input length I, kernel K, stride s,
// padding p, output_padding op, output length O = (I-1)s - 2p + K + op:
//   y[o] = sum over (i, k) with o = s*i + k - p of x[i] * w[k].
// Output phase a in [0, s) holds o = s*m + a, m in [0, M_a), M_a = ceil((O - a) / s).
// s*i + k - p = s*m + a  <=>  k = s*(m - i) + a + p: only the taps k = s*j + r with
// r = (a + p) mod s feed phase a, J_a = ceil((K - r) / s) of them (none when r >= K, K < s:
// that phase is the bias alone), and with q = floor((a + p) / s), i = m + q - j:
//   y[s*m + a] = sum_{j < J} x[m + q - j] * w[s*j + r].
// Reversing the taps (t = J-1-j, v[t] = w[s*(J-1-t) + r]) makes it a stride-1 correlation
//   y_a[m] = sum_{t < J} x[m + t - L] * v[t],   L = J - 1 - q   (left padding),
// and M_a = I + L + R - J + 1 gives the right padding R = M_a - 1 + J - L - I. M_a - I, so
// L and R, do not depend on I; negative ones (padding large against the taps per phase) are
// not accepted by oneDNN and phases_supported() keeps those layers on its deconvolution.
// Examples, s = 2: K3 p0 (Spiral-Net, 127 -> 255): phase 0 J=2 L=1 R=1 M=128, phase 1 J=1
// L=R=0 M=127. K2 p0 (U-Net): both J=1 L=R=0 M=I. K3 p1 op1: phase 0 J=1 L=R=0, phase 1 J=2
// L=0 R=1. K4 p1: phase 0 J=2 L=1 R=0, phase 1 J=2 L=0 R=1. K1 p0: phase 1 is bias only.
// 2-D: phase (ah, aw) convolves x with the (J_h, J_w) sub-kernel, weights (I, O, K, K):
//   v[o][i][th][tw] = W[i][o][s*(J_h-1-th) + r_h][s*(J_w-1-tw) + r_w].
//
// Forward: each phase conv (bias and a fused ReLU / LeakyReLU as post-ops) writes a dense
// nhwc temp (N, C, M_h, M_w); one pass interleaves the temps into y (nhwc); bias-only phases
// write act(bias).
// Backward data: the adjoint of a transposed conv is an ordinary stride-s convolution of dy
// with the same, unflipped kernel: dx[i] = sum_k dy[s*i + k - p] * w[k], i.e. one
// convolution_forward with padding p left and p - op right and W read as (O'=I, I'=O, K, K)
// (what oneDNN's deconvolution backward-data runs internally; brgconv in 2.6 too).
// Backward weights: dy is gathered per phase into dense temps, each phase's
// convolution_backward_weights gives dv, and dv is added into W's gradient at the taps
// above (each tap belongs to exactly one phase). The bias gradient is summed during the
// gather, per output row and then over rows in a fixed order: the same bits for any
// thread count. Where oneDNN has no AVX-512 kernels (as ConvLayer, conv_impl.hpp: its
// jit:avx2 weight gradient runs ~2x faster on the blocked nChw8c layout than on nhwc) and
// both channel counts are multiples of 8, the phase weight gradients run blocked: the gather
// writes dy's phases straight into nChw8c (no extra pass) and x is copied once into nChw8c.
//
// Narrow outputs (fewer than kPhasesMinOut channels, e.g. Spiral-Net's 16 -> 1 layers):
// oneDNN pads a convolution's few output channels to a block of 16, so phase convolutions
// waste up to 16x their arithmetic there, and its strided deconvolution_backward_weights is
// 4-9x faster than the four phase ones plus the gather (measured, docs/PERFORMANCE.md).
// Those layers run forward as GEMM + col2im instead: one 1x1 convolution (brgconv) computes
// every tap's product T[n, ih, iw, (kh*K + kw)*C + o] = sum_i x[n, ih, iw, i] * W[i, o, kh, kw]
// (K*K*C channels: fills the block), and one pass sums, per output pixel in a fixed order,
// y[n, s*ih + kh - p, s*iw + kw - p, o] = b[o] + sum over (ih, kh), (iw, kw) of T, then the
// fused activation. Their weight and bias gradients run on a kernel of our own
// (convt_narrow_wgrad.hpp: oneDNN 2.6's strided deconvolution backward-weights ran them at a
// tenth of the multiply rate).
//
// Memory: the phase outputs (forward) and the gathered dy (backward) live in the backend's
// shared user scratchpad behind the primitives' own scratch (layers run one at a time), so
// the layer holds no activation-sized buffer of its own beyond the bf16 input copy.
// bf16 (Context::bf16), as ConvLayer (conv_impl.hpp): x rounded to bf16 once in forward
// (kept for the weight gradient), dy once in backward, weights by the plain -> blocked
// reorders; accumulation and every output fp32; the bias gradient sums the rounded dy (as
// oneDNN's diff_bias does). Counted once in bf16_layers (or bf16_fallbacks). On AMX CPUs the
// phase weight gradients run on our own AMX kernel (amx_wgrad.hpp: oneDNN 2.6's AMX one writes
// out of bounds, its AVX512-BF16 one is slower than fp32's).
#include "kernels/cpu/conv_transpose_phases.hpp"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/amx_wgrad.hpp"
#include "kernels/cpu/blocked_copy.hpp"
#include "kernels/cpu/col2im.hpp"
#include "kernels/cpu/convt_narrow_wgrad.hpp"
#include "kernels/cpu/to_bf16.hpp"

namespace crackseg::onednn {

AxisPhase axis_phase(int64_t in, int64_t K, int64_t s, int64_t p, int64_t op, int64_t a) {
  const int64_t O = (in - 1) * s - 2 * p + K + op;
  AxisPhase ph;
  ph.r = (a + p) % s;
  const int64_t q = (a + p) / s;
  ph.taps = K > ph.r ? (K - ph.r + s - 1) / s : 0;
  ph.out = O > a ? (O - a + s - 1) / s : 0;
  ph.pad_l = ph.taps - 1 - q;
  ph.pad_r = ph.out - 1 + ph.taps - ph.pad_l - in;
  return ph;
}

bool phases_supported(const ConvTranspose2dSpec& s) {
  if (s.stride < 2 || s.kernel < 1 || s.padding < 0 || s.output_padding < 0) return false;
  const int64_t in = 4 * (s.kernel + s.padding + s.stride);  // long enough for every phase to exist
  for (int64_t a = 0; a < s.stride; ++a) {
    const AxisPhase ph = axis_phase(in, s.kernel, s.stride, s.padding, s.output_padding, a);
    if (ph.taps > 0 && (ph.pad_l < 0 || ph.pad_r < 0)) return false;
  }
  return true;
}

namespace {

using bf16_t = uint16_t;
// Output channels from which forward and weight gradient run as phase convolutions (see the
// top); below, GEMM + col2im forward and oneDNN's deconvolution weight gradient.
constexpr int64_t kPhasesMinOut = 16;
[[nodiscard]] inline float to_f32(float v) { return v; }
[[nodiscard]] inline float to_f32(bf16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }
[[nodiscard]] constexpr std::size_t align64(std::size_t b) { return (b + 63) / 64 * 64; }

class ConvTransposePhases final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  ~ConvTransposePhases() override {
    ctx_->blocked_wgrad_layers.erase(this);
    ctx_->amx_wgrad_layers.erase(this);
    ctx_->jit_fwd_layers.erase(this);
  }

  bool fuse_activation(const LayerSpec& act) override {
    if (const auto a = fusable_relu_alpha(act)) fused_ = true, alpha_ = *a;
    return fused_;
  }

  // Into a concat's channels (Graph plan): the phase path writes y in its own interleave
  // pass, which takes any pixel stride, and into a bf16 concat rounding as it goes (the
  // concat's own copy's rounding, f32_to_bf16_serial); the col2im path (few output channels)
  // and a fused activation (whose backward reads y) do not.
  bool write_output_as_channels(int64_t first, int64_t total, bool bf16) override {
    if (!planned_ || !wide_ || fused_ || first < 0 || first + as<ConvTranspose2dSpec>().out_c > total) return false;
    if (bf16 && !avx512bf16_available()) return false;
    out_first_ = first, out_pixel_ = total, out_bf16_ = bf16;
    return true;
  }

  // bf16 activations, as ConvLayer: with bf16 operands every pass reads only the bf16 copy of
  // the input, so a bf16 input can be that copy.
  bool can_read_bf16_input() const override { return planned_ && lp_ && to_lp_src_.own(); }
  void set_input_bf16() override {
    in_bf16_ = true;
    src_lp_buf_ = Tensor{};
  }
  bool can_read_bf16_dout() const override { return planned_ && lp_ && !fused_ && to_lp_g_.own(); }
  void set_dout_bf16() override { dout_bf16_ = true; }

  void plan(std::span<const Dims> in) override {
    const auto& s = as<ConvTranspose2dSpec>();
    in_bf16_ = dout_bf16_ = false;  // the Graph decides again after every plan
    x_ = in[0], y_ = output_dims(in);
    out_first_ = 0, out_pixel_ = s.out_c, out_bf16_ = false;
    const auto& eng = ctx_->engine;
    const int64_t S = s.stride, K = s.kernel, N = x_[0];
    phases_.clear();
    phases_.resize(static_cast<std::size_t>(S * S));
    has_bias_only_ = false;
    for (int64_t ah = 0; ah < S; ++ah)
      for (int64_t aw = 0; aw < S; ++aw) {
        Phase& ph = phase(ah, aw);
        ph.h = axis_phase(x_[2], K, S, s.padding, s.output_padding, ah);
        ph.w = axis_phase(x_[3], K, S, s.padding, s.output_padding, aw);
        ph.conv = ph.h.out > 0 && ph.w.out > 0 && ph.h.taps > 0 && ph.w.taps > 0;
        if (ph.conv && std::min({ph.h.pad_l, ph.h.pad_r, ph.w.pad_l, ph.w.pad_r}) < 0)
          throw Error("conv_transpose2d '" + name_ + "': phase (" + std::to_string(ah) + ", " + std::to_string(aw) +
                      ") would need negative padding (phases_supported() should have refused this spec)");
        has_bias_only_ = has_bias_only_ || (ph.h.out > 0 && ph.w.out > 0 && !ph.conv);
      }

    const dnnl::memory::desc src_md = act_md(x_), dst_md = act_md(y_);
    const dnnl::memory::desc b_md = s.bias ? dnnl::memory::desc({s.out_c}, dt::f32, tag::a) : dnnl::memory::desc();
    dnnl::primitive_attr fattr = scratch_attr();
    if (fused_) {
      dnnl::post_ops po;
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, alpha_, 0.0f);
      fattr.set_post_ops(po);
    }
    const dnnl::memory::dims one{1, 1}, no_dil{0, 0};
    std::vector<dnnl::convolution_forward::primitive_desc> fwd_pd(phases_.size());
    std::vector<dnnl::convolution_backward_weights::primitive_desc> bwd_w_pd(phases_.size());
    dnnl::convolution_forward::primitive_desc bwd_d_pd;
    dnnl::convolution_forward::primitive_desc col_pd;
    wide_ = s.out_c >= kPhasesMinOut;
    // Operand type: bf16 where requested and oneDNN has every kernel, else fp32.
    lp_ = ctx_->bf16;
    ctx_->amx_wgrad_skipped.erase(this);
    ctx_->jit_fwd_layers.erase(this);
    const auto make_pds = [&] {
      const dt op = lp_ ? dt::bf16 : dt::f32;
      const dnnl::memory::desc src_op(to_dnnl(x_), op, tag::nhwc);
      for (std::size_t k = 0; k < phases_.size() && wide_; ++k) {
        const Phase& ph = phases_[k];
        if (!ph.conv) continue;
        const dnnl::memory::dims pd{N, s.out_c, ph.h.out, ph.w.out}, wd{s.out_c, s.in_c, ph.h.taps, ph.w.taps};
        const dnnl::memory::dims pl{ph.h.pad_l, ph.w.pad_l}, pr{ph.h.pad_r, ph.w.pad_r};
        const dnnl::memory::desc pdst(pd, dt::f32, tag::nhwc), pddst(pd, op, tag::nhwc);
        dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                           src_op, dnnl::memory::desc(wd, op, tag::any), b_md, pdst, one, no_dil, pl,
                                           pr);
        fwd_pd[k] = dnnl::convolution_forward::primitive_desc(fd, fattr, eng);
        dnnl::convolution_backward_weights::desc wd_(dnnl::algorithm::convolution_direct, src_op,
                                                     dnnl::memory::desc(wd, dt::f32, tag::any), pddst, one, no_dil,
                                                     pl, pr);
        bwd_w_pd[k] = dnnl::convolution_backward_weights::primitive_desc(wd_, scratch_attr(), eng, fwd_pd[k]);
        if (lp_ && skip_amx_weight_gradient(bwd_w_pd[k])) ctx_->amx_wgrad_skipped.insert(this);  // dnnl_common.hpp
      }
      // dx = stride-s convolution of dy with W read as (I, O, K, K) = oihw of a conv O -> I.
      const dnnl::memory::desc g_op(to_dnnl(y_), op, tag::nhwc);
      const int64_t pr = s.padding - s.output_padding;
      dnnl::convolution_forward::desc dd(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, g_op,
                                         dnnl::memory::desc({s.in_c, s.out_c, K, K}, op, tag::any), src_md, {S, S},
                                         no_dil, {s.padding, s.padding}, {pr, pr});
      bwd_d_pd = dnnl::convolution_forward::primitive_desc(dd, scratch_attr(), eng);
      if (!lp_ && take_jit_forward(bwd_d_pd, s.out_c, x_[2] * x_[3], [&] {  // dnnl_common.hpp: few input channels
            return dnnl::convolution_forward::primitive_desc(dd, scratch_attr(), eng);
          }))
        ctx_->jit_fwd_layers.insert(this);
      if (!wide_) {  // T = x * W as a 1x1 convolution to K*K*C channels
        const int64_t KKC = K * K * s.out_c;
        dnnl::convolution_forward::desc cd(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_op,
            dnnl::memory::desc({KKC, s.in_c, 1, 1}, op, tag::any), dnnl::memory::desc(),
            dnnl::memory::desc({N, KKC, x_[2], x_[3]}, dt::f32, tag::nhwc), one, no_dil, {0, 0}, {0, 0});
        col_pd = dnnl::convolution_forward::primitive_desc(cd, scratch_attr(), eng);
      }
    };
    if (lp_) {
      try {
        make_pds();
      } catch (const dnnl::error& e) {
        if (e.status != dnnl_unimplemented) detail::rethrow_dnnl(e, "bf16 phase convolution primitive descriptors");
        lp_ = false;  // no bf16 kernel for some phase: this layer stays fp32
        ctx_->bf16_fallbacks += 1;
      }
    }
    if (!lp_) CRACKSEG_DNNL_CALL(make_pds());
    if (lp_) ctx_->bf16_layers += 1;
    plan_blocked_wgrad(fwd_pd, bwd_w_pd);

    // Primitives, scratch, per-phase weights; the workspace layout (offsets behind the
    // primitives' scratch): forward = phase outputs, backward = d(pre-activation), bf16 dy,
    // gathered phase dy.
    prim_scratch_ = 0;
    std::size_t fwd_ws = 0, bwd_ws = 0;
    const auto ws_take = [](std::size_t& total, const dnnl::memory::desc& md) {
      const std::size_t off = total;
      total += align64(md.get_size());
      return off;
    };
    if (fused_) dpre_off_ = ws_take(bwd_ws, dst_md);
    if (blkw_) xblk_off_ = ws_take(bwd_ws, bwd_w_pd[first_conv_phase()].src_desc());
    const dnnl::memory::desc g_lp_md(to_dnnl(y_), dt::bf16, tag::nhwc);
    if (lp_) g_lp_off_ = ws_take(bwd_ws, g_lp_md);
    const dnnl::memory::desc plain_w_md({s.in_c, s.out_c, K, K}, dt::f32, tag::oihw);
    for (std::size_t k = 0; k < phases_.size() && wide_; ++k) {
      Phase& ph = phases_[k];
      if (!ph.conv) continue;
      const auto& fpd = fwd_pd[k];
      const auto& wpd = bwd_w_pd[k];
      ph.fwd = make_primitive<dnnl::convolution_forward>(fpd);
      ph.fwd_scratch = scratch_of(fpd);
      ph.dst_off = ws_take(fwd_ws, fpd.dst_desc());
      ph.dst = unbound(fpd.dst_desc(), eng);
      const dnnl::memory::desc plain_v({s.out_c, s.in_c, ph.h.taps, ph.w.taps}, dt::f32, tag::oihw);
      ph.plain_w = owned(plain_v, eng, ph.plain_w_buf);
      ph.wei = owned(fpd.weights_desc(), eng, ph.w_buf);
      ph.reorder_w = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(ph.plain_w, ph.wei));
      ph.reorder_w_args = {{DNNL_ARG_FROM, ph.plain_w}, {DNNL_ARG_TO, ph.wei}};
      ph.bwd_w = make_primitive<dnnl::convolution_backward_weights>(wpd);
      ph.bwd_w_scratch = scratch_of(wpd);
      ph.ddst_off = ws_take(bwd_ws, wpd.diff_dst_desc());
      ph.ddst = unbound(wpd.diff_dst_desc(), eng);
      ph.dw = owned(wpd.diff_weights_desc(), eng, ph.dw_buf);
      ph.plain_dw = owned(plain_v, eng, ph.plain_dw_buf);
      ph.reorder_dw = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(ph.dw, ph.plain_dw));
      ph.reorder_dw_args = {{DNNL_ARG_FROM, ph.dw}, {DNNL_ARG_TO, ph.plain_dw}};
    }
    if (!wide_) {
      col_fwd_ = make_primitive<dnnl::convolution_forward>(col_pd);
      col_scratch_ = scratch_of(col_pd);
      col_off_ = ws_take(fwd_ws, col_pd.dst_desc());
      col_dst_ = unbound(col_pd.dst_desc(), eng);
      const dnnl::memory::desc plain_col_md({K * K * s.out_c, s.in_c, 1, 1}, dt::f32, tag::oihw);
      col_plain_w_ = owned(plain_col_md, eng, col_plain_w_buf_);
      col_w_ = owned(col_pd.weights_desc(), eng, col_w_buf_);
      reorder_col_w_ = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(col_plain_w_, col_w_));
      reorder_col_w_args_ = {{DNNL_ARG_FROM, col_plain_w_}, {DNNL_ARG_TO, col_w_}};
    }
    // bf16 on AMX CPUs: every phase weight gradient on our own AMX kernel (amx_wgrad.hpp; the
    // bias gradient stays in the gather), its scratch behind the gathered dy; not where a
    // phase is too narrow to pay (amx_wgrad_pays).
    amx_w_ = lp_ && wide_ && onednn_allows_amx();
    aw_threads_ = omp_get_max_threads();
    std::size_t aw_bytes = 0;
    for (const Phase& ph : phases_) {
      if (!amx_w_ || !ph.conv) continue;
      const AmxWgradShape sh = amx_phase_shape(ph);
      amx_w_ = amx_wgrad_fits(sh) && amx_wgrad_pays(sh);
      aw_bytes = std::max(aw_bytes, amx_wgrad_scratch_bytes(sh, aw_threads_));
    }
    if (amx_w_) {
      aw_off_ = bwd_ws;
      bwd_ws += align64(aw_bytes);
      ctx_->amx_wgrad_layers.insert(this);
      ctx_->amx_wgrad_skipped.erase(this);  // oneDNN's phase weight gradients are never run
    } else {
      ctx_->amx_wgrad_layers.erase(this);
    }
    if (!wide_) {  // weight and bias gradient: our own kernel, its partial sums in the workspace
      narrow_w_ = {N, x_[2], x_[3], s.in_c, y_[2], y_[3], s.out_c, K, S, s.padding};
      narrow_w_off_ = bwd_ws;
      bwd_ws += align64(narrow_wgrad_scratch_floats(narrow_w_) * sizeof(float));
    }
    bwd_d_ = make_primitive<dnnl::convolution_forward>(bwd_d_pd);
    bwd_d_scratch_ = scratch_of(bwd_d_pd);

    src_ = unbound(src_md, eng);
    dst_ = unbound(dst_md, eng);
    dout_ = unbound(dst_md, eng);
    din_ = unbound(src_md, eng);
    plain_w_ = unbound(plain_w_md, eng);
    w_bwd_ = owned(bwd_d_pd.weights_desc(), eng, w_bwd_buf_);
    reorder_bwd_ = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(plain_w_, w_bwd_));
    reorder_bwd_args_ = {{DNNL_ARG_FROM, plain_w_}, {DNNL_ARG_TO, w_bwd_}};
    if (s.bias) {
      bias_ = unbound(b_md, eng);
      if (wide_) rowsum_buf_ = alloc_buffer({y_[0] * y_[2] * s.out_c});
    }
    bias_act_.assign(static_cast<std::size_t>(s.out_c), 0.0f);
    if (lp_) {  // bf16 copy of the input (forward, kept for the weight gradient)
      const dnnl::memory::desc src_lp_md(to_dnnl(x_), dt::bf16, tag::nhwc);
      src_lp_ = owned(src_lp_md, eng, src_lp_buf_);
      to_lp_src_.plan(src_, src_lp_);
    }

    dnnl::memory g = dout_;  // what the weight and input gradients read: dout, or d(pre-act)
    if (fused_) {  // d(pre-activation) = dout * act'(saved dst)
      dpre_ = unbound(dst_md, eng);
      dnnl::eltwise_forward::desc ef(dnnl::prop_kind::forward_training, dnnl::algorithm::eltwise_relu_use_dst_for_bwd,
                                     dst_md, alpha_, 0.0f);
      auto ef_pd = CRACKSEG_DNNL_CALL(dnnl::eltwise_forward::primitive_desc(ef, eng));
      dnnl::eltwise_backward::desc eb(dnnl::algorithm::eltwise_relu_use_dst_for_bwd, dst_md, dst_md, alpha_, 0.0f);
      auto eb_pd = CRACKSEG_DNNL_CALL(dnnl::eltwise_backward::primitive_desc(eb, scratch_attr(), eng, ef_pd));
      act_bwd_ = make_primitive<dnnl::eltwise_backward>(eb_pd);
      act_scratch_ = scratch_of(eb_pd);
      act_args_ = {{DNNL_ARG_DST, dst_}, {DNNL_ARG_DIFF_DST, dout_}, {DNNL_ARG_DIFF_SRC, dpre_}};
      g = dpre_;
    }
    if (lp_) {
      g_lp_ = unbound(g_lp_md, eng);
      to_lp_g_.plan(g, g_lp_);
      g = g_lp_;
    }
    for (Phase& ph : phases_) {
      if (!ph.conv) continue;
      ph.fwd_args = {{DNNL_ARG_SRC, lp_ ? src_lp_ : src_}, {DNNL_ARG_WEIGHTS, ph.wei}, {DNNL_ARG_DST, ph.dst}};
      if (s.bias) ph.fwd_args[DNNL_ARG_BIAS] = bias_;
      ph.bwd_w_args = {{DNNL_ARG_SRC, lp_ ? src_lp_ : blkw_ ? xblk_ : src_}, {DNNL_ARG_DIFF_DST, ph.ddst},
                       {DNNL_ARG_DIFF_WEIGHTS, ph.dw}};
    }
    bwd_d_args_ = {{DNNL_ARG_SRC, g}, {DNNL_ARG_WEIGHTS, w_bwd_}, {DNNL_ARG_DST, din_}};
    if (!wide_) col_args_ = {{DNNL_ARG_SRC, lp_ ? src_lp_ : src_}, {DNNL_ARG_WEIGHTS, col_w_}, {DNNL_ARG_DST, col_dst_}};

    ws_off_ = align64(prim_scratch_);
    ctx_->reserve_scratch(ws_off_ + std::max(fwd_ws, bwd_ws));
    planned_ = true;
    refresh_weights();
  }

  void params_changed() override {
    if (planned_) refresh_weights();
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& s = as<ConvTranspose2dSpec>();
    bind(src_, *in[0]);
    std::byte* ws = workspace();
    if (s.bias) bind(bias_, params_[1].value);
    if (in_bf16_)
      src_lp_.set_data_handle(const_cast<void*>(in[0]->raw()));
    else if (lp_)
      to_lp_src_.run(ctx_->stream);
    if (!wide_) {
      col_dst_.set_data_handle(ws + col_off_);
      exec(col_fwd_, col_args_, col_scratch_);
      wait();
      col2im(reinterpret_cast<const float*>(ws + col_off_), s.bias ? params_[1].value.data<float>() : nullptr,
             out.data<float>());
      return;
    }
    for (Phase& ph : phases_) {
      if (!ph.conv) continue;
      ph.dst.set_data_handle(ws + ph.dst_off);
      exec(ph.fwd, ph.fwd_args, ph.fwd_scratch);
    }
    wait();
    if (has_bias_only_) {
      const float* b = s.bias ? params_[1].value.data<float>() : nullptr;
      for (std::size_t c = 0; c < bias_act_.size(); ++c) {
        const float v = b ? b[c] : 0.0f;
        bias_act_[c] = fused_ && v <= 0.0f ? alpha_ * v : v;
      }
    }
    if (out.c() != out_pixel_ || out.n() != y_[0] || out.h() != y_[2] || out.w() != y_[3])
      throw Error("conv_transpose2d '" + name_ + "': output tensor " + to_string(out.dims()) + " is not the planned " +
                  std::to_string(out_pixel_) + "-channel destination");
    if (out_bf16_) {
      if (out.dtype() != DType::bf16)
        throw Error("conv_transpose2d '" + name_ + "': output is not the planned bf16 concat tensor");
      interleave(ws, static_cast<uint16_t*>(out.raw()) + out_first_);
    } else {
      interleave(ws, out.data<float>() + out_first_);
    }
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& s = as<ConvTranspose2dSpec>();
    bind(src_, *in[0]);
    bind(dout_, dout);
    std::byte* ws = workspace();
    const void* g = dout.raw();
    if (fused_) {
      bind(dst_, out);
      dpre_.set_data_handle(ws + dpre_off_);
      exec(act_bwd_, act_args_, act_scratch_);
      g = ws + dpre_off_;
    }
    // The weight gradient reads the bf16 input saved by this layer's forward (the Graph runs
    // a layer's backward after its own forward, with no other forward of it in between).
    if (in_bf16_) src_lp_.set_data_handle(const_cast<void*>(in[0]->raw()));
    if (dout_bf16_) {
      g_lp_.set_data_handle(const_cast<void*>(dout.raw()));
    } else if (lp_) {
      g_lp_.set_data_handle(ws + g_lp_off_);
      to_lp_g_.run(ctx_->stream);
      g = ws + g_lp_off_;
    }
    if (din[0]) {
      bind(din_, *din[0]);
      exec(bwd_d_, bwd_d_args_, bwd_d_scratch_);
    }
    if (!wide_) {
      wait();
      float* nw = reinterpret_cast<float*>(ws + narrow_w_off_);
      float* db = s.bias ? params_[1].grad.data<float>() : nullptr;
      if (lp_)
        narrow_convt_wgrad(narrow_w_, static_cast<const uint16_t*>(src_lp_.get_data_handle()),
                           static_cast<const uint16_t*>(g), nw, params_[0].grad.data<float>(), db);
      else
        narrow_convt_wgrad(narrow_w_, in[0]->data<float>(), static_cast<const float*>(g), nw,
                           params_[0].grad.data<float>(), db);
      return;
    }
    wait();
    if (lp_) gather(static_cast<const bf16_t*>(g), ws);
    else gather(static_cast<const float*>(g), ws);
    if (blkw_) {
      xblk_.set_data_handle(ws + xblk_off_);
      nhwc_to_blocked(in[0]->data<float>(), reinterpret_cast<float*>(ws + xblk_off_), x_[0], x_[1], x_[2] * x_[3], 8);
    }
    for (Phase& ph : phases_) {
      if (!ph.conv) continue;
      ph.ddst.set_data_handle(ws + ph.ddst_off);
      if (amx_w_) {  // dv = 0, += the phase's weight gradient (no bias: summed in the gather)
        std::fill_n(ph.plain_dw_buf.data<float>(), ph.plain_dw_buf.numel(), 0.0f);
        amx_wgrad(amx_phase_shape(ph), static_cast<const uint16_t*>(src_lp_.get_data_handle()),
                  reinterpret_cast<const uint16_t*>(ws + ph.ddst_off), ws + aw_off_, ph.plain_dw_buf.data<float>(),
                  nullptr, aw_threads_);
        continue;
      }
      exec(ph.bwd_w, ph.bwd_w_args, ph.bwd_w_scratch);
      CRACKSEG_DNNL_CALL(ph.reorder_dw.execute(ctx_->stream, ph.reorder_dw_args));
    }
    wait();
    scatter_weight_grad();
    if (s.bias) {  // rows in a fixed order: the same sum for any thread count
      const int64_t rows = y_[0] * y_[2], C = s.out_c;
      const float* rs = rowsum_buf_.data<float>();
      float* gb = params_[1].grad.data<float>();
#pragma omp parallel for schedule(static) if (rows * C > 65536)
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0.0f;
        for (int64_t r = 0; r < rows; ++r) acc += rs[r * C + c];
        gb[c] += acc;
      }
    }
  }

 private:
  struct Phase {
    AxisPhase h, w;
    bool conv = false;  // has taps on both axes (else its outputs are act(bias))
    std::size_t dst_off = 0, ddst_off = 0;  // workspace offsets of its output / gathered dy
    dnnl::primitive fwd, bwd_w, reorder_w, reorder_dw;
    dnnl::memory fwd_scratch, bwd_w_scratch, dst, ddst, plain_w, wei, dw, plain_dw;
    Tensor plain_w_buf, w_buf, dw_buf, plain_dw_buf;
    Args fwd_args, bwd_w_args, reorder_w_args, reorder_dw_args;
  };

  Phase& phase(int64_t ah, int64_t aw) { return phases_[static_cast<std::size_t>(ah * stride() + aw)]; }
  [[nodiscard]] const Phase& phase(int64_t ah, int64_t aw) const {
    return phases_[static_cast<std::size_t>(ah * stride() + aw)];
  }
  [[nodiscard]] int64_t stride() const { return as<ConvTranspose2dSpec>().stride; }
  [[nodiscard]] std::size_t first_conv_phase() const {
    for (std::size_t k = 0; k < phases_.size(); ++k)
      if (phases_[k].conv) return k;
    return 0;
  }

  // The phase weight gradients on the blocked nChw8c layout (see the top): fp32, no AVX-512
  // kernels in oneDNN, both channel counts multiples of 8 (no padded block), and a jit kernel
  // for every phase; else they stay nhwc.
  void plan_blocked_wgrad(const std::vector<dnnl::convolution_forward::primitive_desc>& fwd_pd,
                          std::vector<dnnl::convolution_backward_weights::primitive_desc>& bwd_w_pd) {
    const auto& s = as<ConvTranspose2dSpec>();
    blkw_ = false;
    ctx_->blocked_wgrad_layers.erase(this);
    if (lp_ || !wide_ || onednn_has_avx512_core() || s.in_c % 8 != 0 || s.out_c % 8 != 0) return;
    std::vector<dnnl::convolution_backward_weights::primitive_desc> pds(phases_.size());
    const dnnl::memory::dims one{1, 1}, no_dil{0, 0};
    try {
      for (std::size_t k = 0; k < phases_.size(); ++k) {
        const Phase& ph = phases_[k];
        if (!ph.conv) continue;
        const dnnl::memory::dims pd{x_[0], s.out_c, ph.h.out, ph.w.out}, wd{s.out_c, s.in_c, ph.h.taps, ph.w.taps};
        dnnl::convolution_backward_weights::desc d(
            dnnl::algorithm::convolution_direct, dnnl::memory::desc(to_dnnl(x_), dt::f32, tag::nChw8c),
            dnnl::memory::desc(wd, dt::f32, tag::any), dnnl::memory::desc(pd, dt::f32, tag::nChw8c),
            one, no_dil, {ph.h.pad_l, ph.w.pad_l}, {ph.h.pad_r, ph.w.pad_r});
        pds[k] = dnnl::convolution_backward_weights::primitive_desc(d, scratch_attr(), ctx_->engine, fwd_pd[k]);
        if (std::string(pds[k].impl_info_str()).find("jit") == std::string::npos) return;  // no fast kernel
      }
    } catch (const dnnl::error& e) {
      if (e.status != dnnl_unimplemented) detail::rethrow_dnnl(e, "blocked phase weight-gradient primitive descriptor");
      return;
    }
    bwd_w_pd = std::move(pds);
    blkw_ = true;
    ctx_->blocked_wgrad_layers.insert(this);
    xblk_ = unbound(bwd_w_pd[first_conv_phase()].src_desc(), ctx_->engine);
  }

  template <class PD>
  dnnl::memory scratch_of(const PD& pd) {
    prim_scratch_ = std::max(prim_scratch_, pd.scratchpad_desc().get_size());
    return scratch_for(pd);
  }
  std::byte* workspace() { return static_cast<std::byte*>(ctx_->scratch_ptr()) + ws_off_; }

  // W (I, O, K, K) -> each phase's reversed sub-kernel (O, I, J_h, J_w) -> oneDNN layout;
  // W -> the backward-data convolution's layout.
  void refresh_weights() {
    const auto& s = as<ConvTranspose2dSpec>();
    const int64_t S = s.stride, K = s.kernel, I = s.in_c, O = s.out_c;
    const float* W = params_[0].value.data<float>();
    if (!wide_) {  // (I, O, K, K) -> (K*K*O, I): row (kh*K + kw)*O + o
      float* v = col_plain_w_buf_.data<float>();
      const int64_t KK = K * K;
      for (int64_t i = 0; i < I; ++i)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t kk = 0; kk < KK; ++kk) v[(kk * O + o) * I + i] = W[(i * O + o) * KK + kk];
      CRACKSEG_DNNL_CALL(reorder_col_w_.execute(ctx_->stream, reorder_col_w_args_));
    }
    for (Phase& ph : phases_) {
      if (!ph.conv || !wide_) continue;
      const int64_t Jh = ph.h.taps, Jw = ph.w.taps;
      float* v = ph.plain_w_buf.data<float>();
      // Plain copies, every element written once: threads change no bit (the serial shuffles
      // were ~2% of a bf16 Spiral-Net step on the master thread while the other waited).
#pragma omp parallel for schedule(static) if (O * I > 4096)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < I; ++i)
          for (int64_t th = 0; th < Jh; ++th)
            for (int64_t tw = 0; tw < Jw; ++tw) {
              const int64_t kh = S * (Jh - 1 - th) + ph.h.r, kw = S * (Jw - 1 - tw) + ph.w.r;
              v[((o * I + i) * Jh + th) * Jw + tw] = W[((i * O + o) * K + kh) * K + kw];
            }
      CRACKSEG_DNNL_CALL(ph.reorder_w.execute(ctx_->stream, ph.reorder_w_args));
    }
    bind(plain_w_, params_[0].value);
    CRACKSEG_DNNL_CALL(reorder_bwd_.execute(ctx_->stream, reorder_bwd_args_));
    wait();
  }

  // y (N, Ho, Wo, C) nhwc = act(b + col2im(T)), T (N, H, W, K*K*C) nhwc (col2im.hpp).
  void col2im(const float* T, const float* b, float* y) const {
    const auto& s = as<ConvTranspose2dSpec>();
    col2im_nhwc(T, x_[0], x_[2], x_[3], s.kernel, s.stride, s.padding, s.out_c, b, y, y_[2], y_[3], fused_, alpha_);
  }

  // y (N, Ho, Wo, C) nhwc <- phase outputs (N, M_h, M_w, C): y[n, s*mh+ah, s*mw+aw, :].
  // y: the output's first channel; pixels are out_pixel_ floats apart (C, or a concat's total).
  // y: float, or uint16_t (bf16 bit patterns, rounded as f32_to_bf16 rounds: a bf16 concat).
  template <class Y>
  void interleave(const std::byte* ws, Y* y) const {
    constexpr bool lp = std::is_same_v<Y, uint16_t>;
    const int64_t S = stride(), C = as<ConvTranspose2dSpec>().out_c, Ho = y_[2], Wo = y_[3], rows = y_[0] * Ho;
    const int64_t P = out_pixel_;
#pragma omp parallel for schedule(static) if (rows * Wo * C > 16384)
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t n = row / Ho, oh = row % Ho, ah = oh % S, mh = oh / S;
      Y* yr = y + row * Wo * P;
      for (int64_t aw = 0; aw < S && aw < Wo; ++aw) {
        const Phase& ph = phase(ah, aw);
        const int64_t Mw = ph.w.out, step = S * P;
        Y* d = yr + aw * P;
        if (!ph.conv) {
          for (int64_t mw = 0; mw < Mw; ++mw) {
            if constexpr (lp) f32_to_bf16_serial(bias_act_.data(), d + mw * step, C);
            else
              for (int64_t c = 0; c < C; ++c) d[mw * step + c] = bias_act_[static_cast<std::size_t>(c)];
          }
          continue;
        }
        const float* t = reinterpret_cast<const float*>(ws + ph.dst_off) + (n * ph.h.out + mh) * Mw * C;
        if constexpr (lp) {
          for (int64_t mw = 0; mw < Mw; ++mw) f32_to_bf16_serial(t + mw * C, d + mw * step, C);
        } else if (C == 1) {
          for (int64_t mw = 0; mw < Mw; ++mw) d[mw * step] = t[mw];
        } else {
          for (int64_t mw = 0; mw < Mw; ++mw)
            for (int64_t c = 0; c < C; ++c) d[mw * step + c] = t[mw * C + c];
        }
      }
    }
  }

  // Phase dy (N, M_h, M_w, C) <- g (N, Ho, Wo, C) nhwc; per-row bias sums of g.
  template <class T>
  void gather(const T* g, std::byte* ws) {
    const auto& s = as<ConvTranspose2dSpec>();
    const int64_t S = s.stride, C = s.out_c, Ho = y_[2], Wo = y_[3], rows = y_[0] * Ho;
    float* rs = s.bias ? rowsum_buf_.data<float>() : nullptr;
#pragma omp parallel for schedule(static) if (rows * Wo * C > 16384)
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t n = row / Ho, oh = row % Ho, ah = oh % S, mh = oh / S;
      const T* gr = g + row * Wo * C;
      for (int64_t aw = 0; aw < S && aw < Wo; ++aw) {
        const Phase& ph = phase(ah, aw);
        if (!ph.conv) continue;
        const int64_t Mw = ph.w.out, step = S * C;
        const T* src = gr + aw * C;
        if (blkw_) {  // nChw8c: (n, c / 8, mh, mw, c % 8)
          T* t = reinterpret_cast<T*>(ws + ph.ddst_off) + (n * (C / 8) * ph.h.out + mh) * Mw * 8;
          const int64_t plane = ph.h.out * Mw * 8;
          for (int64_t cb = 0; cb < C / 8; ++cb)
            for (int64_t mw = 0; mw < Mw; ++mw) std::memcpy(t + cb * plane + mw * 8, src + mw * step + cb * 8, 8 * sizeof(T));
          continue;
        }
        T* t = reinterpret_cast<T*>(ws + ph.ddst_off) + (n * ph.h.out + mh) * Mw * C;
        if (C == 1) {
          for (int64_t mw = 0; mw < Mw; ++mw) t[mw] = src[mw * S];
        } else {
          for (int64_t mw = 0; mw < Mw; ++mw)
            for (int64_t c = 0; c < C; ++c) t[mw * C + c] = src[mw * step + c];
        }
      }
      if (rs) {  // accumulated in registers, 16 channels at a time
        float* b = rs + row * C;
        for (int64_t c0 = 0; c0 < C; c0 += 16) {
          const int64_t cn = std::min<int64_t>(16, C - c0);
          float acc[16] = {};
          for (int64_t ow = 0; ow < Wo; ++ow) {
            const T* v = gr + ow * C + c0;
#pragma omp simd
            for (int64_t c = 0; c < cn; ++c) acc[c] += to_f32(v[c]);
          }
          for (int64_t c = 0; c < cn; ++c) b[c0 + c] = acc[c];
        }
      }
    }
  }

  // A phase's stride-1 convolution (x, its gathered dy, the Jh x Jw sub-kernel) for amx_wgrad.
  AmxWgradShape amx_phase_shape(const Phase& ph) const {
    const auto& s = as<ConvTranspose2dSpec>();
    return {x_[0], x_[1], x_[2], x_[3], s.out_c, ph.h.out, ph.w.out, ph.h.taps, ph.w.taps, 1, ph.h.pad_l, ph.w.pad_l};
  }
  // dW (I, O, K, K) += each phase's dv (O, I, J_h, J_w) at its taps.
  void scatter_weight_grad() {
    const auto& s = as<ConvTranspose2dSpec>();
    const int64_t S = s.stride, K = s.kernel, I = s.in_c, O = s.out_c;
    float* dW = params_[0].grad.data<float>();
    for (const Phase& ph : phases_) {
      if (!ph.conv) continue;
      const int64_t Jh = ph.h.taps, Jw = ph.w.taps;
      const float* dv = ph.plain_dw_buf.data<float>();
      // Each tap belongs to one phase: every element of dW gets one addition here, whatever
      // the thread that makes it.
#pragma omp parallel for schedule(static) if (O * I > 4096)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < I; ++i)
          for (int64_t th = 0; th < Jh; ++th)
            for (int64_t tw = 0; tw < Jw; ++tw) {
              const int64_t kh = S * (Jh - 1 - th) + ph.h.r, kw = S * (Jw - 1 - tw) + ph.w.r;
              dW[((i * O + o) * K + kh) * K + kw] += dv[((o * I + i) * Jh + th) * Jw + tw];
            }
    }
  }

  bool fused_ = false, planned_ = false, lp_ = false, has_bias_only_ = false, wide_ = true;
  bool blkw_ = false;             // phase weight gradients on nChw8c (plan_blocked_wgrad)
  bool amx_w_ = false;            // bf16 phase weight gradients on our own AMX kernel
  int aw_threads_ = 1;
  std::size_t aw_off_ = 0;        // its scratch in the workspace
  dnnl::memory xblk_;             // ... and x's blocked copy in the workspace
  std::size_t xblk_off_ = 0;
  int64_t out_first_ = 0, out_pixel_ = 0;  // where forward writes y (write_output_as_channels)
  bool out_bf16_ = false;                   // ... and whether that concat is bf16
  float alpha_ = 0.0f;
  Dims x_, y_;
  std::vector<Phase> phases_;  // (ah, aw) row-major
  std::vector<float> bias_act_;  // act(bias): the output of bias-only phases
  std::size_t prim_scratch_ = 0, ws_off_ = 0, dpre_off_ = 0, g_lp_off_ = 0, col_off_ = 0;
  dnnl::primitive col_fwd_, reorder_col_w_;  // narrow outputs: T = x * W (1x1 convolution)
  dnnl::memory col_scratch_, col_dst_, col_plain_w_, col_w_;
  Tensor col_plain_w_buf_, col_w_buf_;
  Args col_args_, reorder_col_w_args_;
  dnnl::primitive bwd_d_, act_bwd_, reorder_bwd_;
  ToBf16 to_lp_src_, to_lp_g_;  // bf16 copies of the input and of the gradient (lp_)
  bool in_bf16_ = false;        // the input tensor is bf16 already (set_input_bf16)
  bool dout_bf16_ = false;      // the output gradient is bf16 already (set_dout_bf16)
  dnnl::memory bwd_d_scratch_, act_scratch_;
  dnnl::memory src_, dst_, dout_, din_, plain_w_, w_bwd_, bias_, dpre_, src_lp_, g_lp_;
  Tensor w_bwd_buf_, src_lp_buf_, rowsum_buf_;
  Args bwd_d_args_, act_args_, reorder_bwd_args_;
  NarrowWgradShape narrow_w_;     // narrow outputs: the weight gradient kernel's shape
  std::size_t narrow_w_off_ = 0;  // and its partial sums' workspace offset
};

}  // namespace

std::unique_ptr<Layer> make_conv_transpose_phases(const LayerSpec& s, const std::string& n,
                                                  std::shared_ptr<Context> c) {
  return std::make_unique<ConvTransposePhases>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
