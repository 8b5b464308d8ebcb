// conv2d and conv_transpose2d on oneDNN, one template (the two differ only in primitive
// types, plain weight layout and padding arithmetic). Activations nhwc; weights in the
// layout oneDNN picks (format_tag::any), reordered from the plain master copy in
// Param::value only when params_changed(); bias and a following ReLU/LeakyReLU fused as
// post-ops; the fused activation's backward runs from the saved (activated) output.
//
// bf16 mixed precision (Context::bf16, train.precision = "bf16"): the three primitives read
// bf16 operands (source, weights, gradient of the output) and accumulate in fp32; their
// outputs (activation, gradient of the input, weight gradient) stay fp32, so every other
// layer, the loss, batchnorm statistics and the optimizer's master weights stay fp32. The
// layer rounds its fp32 input to bf16 once in forward (kept for the weight gradient) and
// the incoming gradient once in backward; weights are rounded by the plain -> blocked reorder
// that already runs once per step. A shape oneDNN has no bf16 kernel for stays fp32
// (Context::bf16_fallbacks counts them; `crackseg bench` reports it). With a fused
// activation, its backward and the rounding of d(pre-activation) run as one pass of our own
// (to_bf16.hpp relu_bwd_to_bf16: oneDNN's select and multiply, then the same rounding).
//
// Winograd (Context::winograd, train.conv_algorithm = "winograd"): a 3x3 stride-1 fp32
// convolution runs oneDNN's Winograd F(4x4, 3x3) kernels (jit_wino_4x3) for all three passes
// where oneDNN has them and the input has at least kWinoMinPerImage values per image (else
// direct, counted). They take blocked activations, so the layer runs them one image at a
// time, reordering nhwc -> blocked before and blocked -> nhwc after each call; the blocked
// temps (one image's) live in the shared scratchpad, and the blocked input is rebuilt in
// backward from the nhwc input the Graph keeps anyway (no per-layer copy). Measured 2-2.5x
// faster per pass than direct on the U-Net's convolutions (docs/PERFORMANCE.md); rounding
// differs from direct.
//
// Single-input-channel strided convolutions (conv2d, fp32, 1 input channel, stride >= 2, no
// dilation: Spiral-Net's module 2, which reads module 1's map): oneDNN 2.6 runs their
// backward-data on its old jit kernel with the input channel padded to a block of 16 (3.3 ms
// per call at 255x255, batch 4, 1 thread, about what 16 input channels would cost). There the
// input gradient is computed as GEMM + col2im instead: one 1x1 convolution (brgconv) of dy to
// K*K channels, T[n, oh, ow, kh*K + kw] = sum_o dy[n, oh, ow, o] * W[o, 0, kh, kw], then
// dx[n, S*oh + kh - p, S*ow + kw - p] = sum of T (col2im.hpp): the transposed conv's narrow
// forward, read backwards (2.2 ms). Measured and not taken for 2-6 input channels: equal at 2,
// slower from 3 (at 6 the 1x1 convolution to 54 channels alone costs 3.8 ms, col2im 3 more).
// T lives in the shared scratchpad behind the 1x1 primitive's own scratch.
//
// Few input channels (1-7, kernel >= 2, K*K*I <= 64, fp32, direct, dilation 1, AVX-512;
// Spiral-Net's modules 2-7 read 1-6 maps): the input gradient runs on small_conv_dgrad.hpp
// instead of oneDNN's (which pads the input channels to 16) or the GEMM + col2im above: our
// own T GEMM, kept in cache per block of rows, gathered into dx by col2im_add_row. The
// 1-channel path above stays for CPUs without AVX-512.
//
// bf16 weight gradients on AMX CPUs (conv2d, stride 1 or 2, kernel up to 7, no dilation; any
// channel counts): our own AMX kernel (amx_wgrad.hpp) reads the layer's bf16 input and
// output-gradient copies and adds into the parameters' gradients directly; oneDNN 2.6's AMX
// kernel writes out of bounds (dnnl_common.hpp skip_amx_weight_gradient) and its AVX512-BF16
// one was slower than fp32's. Other shapes keep the AVX512-BF16 kernel.
#pragma once
#include <algorithm>
#include <array>
#include <cstdlib>
#include <type_traits>

#include <omp.h>

#include "kernels/cpu/amx_wgrad.hpp"
#include "kernels/cpu/blocked_copy.hpp"
#include "kernels/cpu/col2im.hpp"
#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/relu_bwd.hpp"
#include "kernels/cpu/small_conv_dgrad.hpp"
#include "kernels/cpu/small_conv_wgrad.hpp"
#include "kernels/cpu/to_bf16.hpp"

namespace crackseg::onednn {

template <bool Transposed>
class ConvLayer final : public DnnlLayer {
  using Fwd = std::conditional_t<Transposed, dnnl::deconvolution_forward, dnnl::convolution_forward>;
  using BwdD = std::conditional_t<Transposed, dnnl::deconvolution_backward_data, dnnl::convolution_backward_data>;
  using BwdW = std::conditional_t<Transposed, dnnl::deconvolution_backward_weights, dnnl::convolution_backward_weights>;
  using Spec = std::conditional_t<Transposed, ConvTranspose2dSpec, Conv2dSpec>;
  static constexpr dnnl::algorithm kAlgo =
      Transposed ? dnnl::algorithm::deconvolution_direct : dnnl::algorithm::convolution_direct;

 public:
  using DnnlLayer::DnnlLayer;
  ~ConvLayer() override {
    ctx_->blocked_wgrad_layers.erase(this);
    ctx_->small_wgrad_layers.erase(this);
    ctx_->amx_wgrad_layers.erase(this);
    ctx_->jit_fwd_layers.erase(this);
    ctx_->bf16_narrow_fp32.erase(this);
  }

  bool fuse_activation(const LayerSpec& act) override {
    if (const auto a = fusable_relu_alpha(act)) fused_ = true, alpha_ = *a;
    return fused_;
  }

  void plan(std::span<const Dims> in) override {
    const auto& s = as<Spec>();
    const Dims x = in[0], y = output_dims(in);
    const auto& eng = ctx_->engine;
    const int64_t K = s.kernel;
    int64_t dil = 0, pr_h, pr_w;
    if constexpr (Transposed) {
      pr_h = s.padding - s.output_padding, pr_w = pr_h;
    } else {
      dil = s.dilation - 1;
      const int64_t ext = s.dilation * (K - 1) + 1;
      pr_h = (y[2] - 1) * s.stride + ext - x[2] - s.padding;
      pr_w = (y[3] - 1) * s.stride + ext - x[3] - s.padding;
    }
    const dnnl::memory::dims strides{s.stride, s.stride}, dilates{dil, dil}, pl{s.padding, s.padding}, pr{pr_h, pr_w};
    const auto src_md = act_md(x), dst_md = act_md(y);
    plain_w_md_ = dnnl::memory::desc({s.out_c, s.in_c, K, K}, dt::f32, Transposed ? tag::iohw : tag::oihw);
    const dnnl::memory::desc b_md = s.bias ? dnnl::memory::desc({s.out_c}, dt::f32, tag::a) : dnnl::memory::desc();
    const dnnl::memory::desc dw_any({s.out_c, s.in_c, K, K}, dt::f32, tag::any);

    dnnl::primitive_attr fattr = scratch_attr();
    if (fused_) {
      dnnl::post_ops po;
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, alpha_, 0.0f);
      fattr.set_post_ops(po);
    }
    // Operand type: bf16 where requested and oneDNN has the kernel, else fp32.
    in_bf16_ = dout_bf16_ = false;  // the Graph decides again after every plan
    lp_ = ctx_->bf16;
    ctx_->bf16_narrow_fp32.erase(this);
    if (lp_ && s.in_c < kBf16MinIn && !bf16_few_channels_forced())  // dnnl_common.hpp
      lp_ = false, ctx_->bf16_narrow_fp32.insert(this);
    typename BwdD::primitive_desc bwd_d_pd;
    typename BwdW::primitive_desc bwd_w_pd;
    // any_layout: activations in the layout the algorithm wants (Winograd: blocked), reordered
    // from and to this backend's nhwc around each call.
    // Winograd runs one image at a time (any_layout): its blocked temps are one image's.
    const dnnl::memory::dims x1{1, x[1], x[2], x[3]}, y1{1, y[1], y[2], y[3]};
    ctx_->amx_wgrad_skipped.erase(this);  // make_pds() adds it back if it skips AMX again
    const auto make_pds = [&](dnnl::algorithm algo, bool any_layout) {
      const dt op = lp_ ? dt::bf16 : dt::f32;
      const tag at = any_layout ? tag::any : tag::nhwc;
      const dnnl::memory::desc src_op(any_layout ? x1 : to_dnnl(x), op, at), dst_op(any_layout ? y1 : to_dnnl(y), op, at);
      const dnnl::memory::desc src_f = any_layout ? src_op : src_md;
      const dnnl::memory::desc dst_f = any_layout ? dnnl::memory::desc(y1, dt::f32, tag::any) : dst_md;
      const dnnl::memory::desc w_any({s.out_c, s.in_c, K, K}, op, tag::any);
      typename Fwd::desc fd(dnnl::prop_kind::forward_training, algo, src_op, w_any, b_md, dst_f, strides, dilates, pl,
                            pr);
      fwd_pd_ = typename Fwd::primitive_desc(fd, fattr, eng);
      ctx_->jit_fwd_layers.erase(this);
      if (!Transposed && !lp_ && algo == kAlgo &&  // dnnl_common.hpp: few input channels
          take_jit_forward(fwd_pd_, s.in_c, y[2] * y[3], [&] { return typename Fwd::primitive_desc(fd, fattr, eng); }))
        ctx_->jit_fwd_layers.insert(this);
      typename BwdD::desc bdd(algo, src_f, w_any, dst_op, strides, dilates, pl, pr);
      bwd_d_pd = typename BwdD::primitive_desc(bdd, scratch_attr(), eng, fwd_pd_);
      typename BwdW::desc bwd(algo, src_op, dw_any, b_md, dst_op, strides, dilates, pl, pr);
      bwd_w_pd = typename BwdW::primitive_desc(bwd, scratch_attr(), eng, fwd_pd_);
      if (lp_ && skip_amx_weight_gradient(bwd_w_pd)) ctx_->amx_wgrad_skipped.insert(this);  // dnnl_common.hpp
    };
    wino_ = false;
    if constexpr (!Transposed) {
      const bool wino_shape = ctx_->winograd && !lp_ && K == 3 && s.stride == 1 && s.dilation == 1;
      if (wino_shape && x[1] * x[2] * x[3] < kWinoMinPerImage) {
        ctx_->wino_fallbacks += 1;  // too small to gain: direct (see kWinoMinPerImage)
      } else if (wino_shape) {
        try {
          make_pds(dnnl::algorithm::convolution_winograd, true);
          wino_ = true;
          ctx_->wino_layers += 1;
        } catch (const dnnl::error& e) {
          if (e.status != dnnl_unimplemented) detail::rethrow_dnnl(e, "Winograd convolution primitive descriptors");
          ctx_->wino_fallbacks += 1;  // no Winograd kernel for this shape: direct
        }
      }
    }
    if (lp_) {
      try {
        make_pds(kAlgo, false);
      } catch (const dnnl::error& e) {
        if (e.status != dnnl_unimplemented) detail::rethrow_dnnl(e, "bf16 convolution primitive descriptors");
        lp_ = false;  // no bf16 kernel for this shape: this layer stays fp32
        ctx_->bf16_fallbacks += 1;
      }
    }
    if (!lp_ && !wino_) CRACKSEG_DNNL_CALL(make_pds(kAlgo, false));
    if (lp_) ctx_->bf16_layers += 1;
    blk_w_ = false;
    ctx_->blocked_wgrad_layers.erase(this);
    if constexpr (!Transposed) {
      // No AVX-512: oneDNN 2.6's jit:avx2 weight gradient runs 2-4x slower on nhwc activations
      // than on its blocked nChw8c layout (measured 24-53 against 82-121 GFLOP/s on the U-Net's
      // 3x3 layers, AMD Zen 3), while the two reorders there cost 1-9 ms a call. So where the
      // blocked primitive exists (blocked channels: not the 3-channel first layer), the input
      // and the output gradient are reordered for it; not where the block pads the channels
      // (Spiral-Net's 1-7-channel inputs: 8x the bytes to reorder), and not where our own AVX2
      // kernel takes the weight gradient (own_wgrad, below). AVX-512 kernels run nhwc at full speed.
      if (!lp_ && !wino_ && !onednn_has_avx512_core() && !own_wgrad(s, K)) {
        // In chunks of wnb_ images (the largest divisor of the batch whose copies fit
        // blocked_wgrad_bytes(); at least one): the big layers' copies are one image's, not the
        // batch's (peak RSS), the small layers run in one call (speed).
        const int64_t per_image = (x[1] * x[2] * x[3] + y[1] * y[2] * y[3]) * static_cast<int64_t>(sizeof(float));
        const int64_t budget = blocked_wgrad_bytes();
        wnb_ = 1;
        for (int64_t d = 1; d <= x[0]; ++d)
          if (x[0] % d == 0 && d * per_image <= budget) wnb_ = d;
        const dnnl::memory::dims xb{wnb_, x[1], x[2], x[3]}, yb{wnb_, y[1], y[2], y[3]};
        const dnnl::memory::desc sany(xb, dt::f32, tag::any), dany(yb, dt::f32, tag::any);
        try {
          typename Fwd::desc hint_d(dnnl::prop_kind::forward_training, kAlgo, dnnl::memory::desc(xb, dt::f32, tag::nhwc),
                                    dw_any, b_md, dnnl::memory::desc(yb, dt::f32, tag::nhwc), strides, dilates, pl, pr);
          typename Fwd::primitive_desc hint(hint_d, fattr, eng);
          typename BwdW::desc bwd(kAlgo, sany, dw_any, b_md, dany, strides, dilates, pl, pr);
          typename BwdW::primitive_desc pd(bwd, scratch_attr(), eng, hint);
          const auto& blk = pd.src_desc().data;
          const bool padded = blk.padded_dims[1] != blk.dims[1] || pd.diff_dst_desc().data.padded_dims[1] != y[1];
          if (blk.format_kind == dnnl_blocked && blk.format_desc.blocking.inner_nblks > 0 && !padded)
            bwd_w_pd = pd, blk_w_ = true, ctx_->blocked_wgrad_layers.insert(this);
        } catch (const dnnl::error& e) {
          if (e.status != dnnl_unimplemented) detail::rethrow_dnnl(e, "blocked weight-gradient primitive descriptor");
        }
      }
    }
    narrow_ = false;
    small_.reset();
    if constexpr (!Transposed) {
      if (!lp_ && !wino_ && s.dilation == 1 && small_conv_dgrad_fits(s.in_c, K))
        small_ = std::make_unique<SmallConvDgrad>(
            SmallConvShape{x[0], x[1], x[2], x[3], s.out_c, y[2], y[3], K, s.stride, s.padding});
      if (small_) ctx_->reserve_scratch(small_->scratch_bytes());
      small_w_ = own_wgrad(s, K);
      if (small_w_) {
        sw_shape_ = {x[0], x[1], x[2], x[3], s.out_c, y[2], y[3], K, K, s.stride, s.padding, s.padding};
        sw_threads_ = omp_get_max_threads();
        ctx_->reserve_scratch(small_conv_wgrad_scratch_floats(sw_shape_, sw_threads_) * sizeof(float));
        ctx_->small_wgrad_layers.insert(this);
      } else {
        ctx_->small_wgrad_layers.erase(this);
      }
      narrow_ = !small_ && !lp_ && s.in_c == 1 && s.stride >= 2 && s.dilation == 1;
      amx_w_ = false;
      if (lp_ && s.dilation == 1) {
        aw_shape_ = {x[0], x[1], x[2], x[3], s.out_c, y[2], y[3], K, K, s.stride, s.padding, s.padding};
        amx_w_ = amx_wgrad_fits(aw_shape_) && amx_wgrad_pays(aw_shape_) && onednn_allows_amx();
      }
      if (amx_w_) {
        aw_threads_ = omp_get_max_threads();
        ctx_->reserve_scratch(amx_wgrad_scratch_bytes(aw_shape_, aw_threads_));
        ctx_->amx_wgrad_layers.insert(this);
        ctx_->amx_wgrad_skipped.erase(this);  // oneDNN's weight-gradient primitive is never run
      } else {
        ctx_->amx_wgrad_layers.erase(this);
      }
    }
    if (narrow_) {  // dx = col2im(dy * W as a 1x1 convolution to K*K*I channels)
      const int64_t KKI = K * K * s.in_c;
      dnnl::convolution_forward::desc cd(
          dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, dst_md,
          dnnl::memory::desc({KKI, s.out_c, 1, 1}, dt::f32, tag::any), dnnl::memory::desc(),
          dnnl::memory::desc({y[0], KKI, y[2], y[3]}, dt::f32, tag::nhwc), {1, 1}, {0, 0}, {0, 0}, {0, 0});
      const auto col_pd = CRACKSEG_DNNL_CALL(dnnl::convolution_forward::primitive_desc(cd, scratch_attr(), eng));
      col_ = make_primitive<dnnl::convolution_forward>(col_pd);
      col_scratch_ = scratch_for(col_pd);
      col_off_ = (col_pd.scratchpad_desc().get_size() + 63) / 64 * 64;
      ctx_->reserve_scratch(col_off_ + col_pd.dst_desc().get_size());
      col_dst_ = unbound(col_pd.dst_desc(), eng);
      col_plain_w_ = owned(dnnl::memory::desc({KKI, s.out_c, 1, 1}, dt::f32, tag::oihw), eng, col_plain_w_buf_);
      col_w_ = owned(col_pd.weights_desc(), eng, col_w_buf_);
      reorder_col_w_ = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(col_plain_w_, col_w_));
      reorder_col_w_args_ = {{DNNL_ARG_FROM, col_plain_w_}, {DNNL_ARG_TO, col_w_}};
    }
    fwd_ = make_primitive<Fwd>(fwd_pd_);
    bwd_d_ = make_primitive<BwdD>(bwd_d_pd);
    bwd_w_ = make_primitive<BwdW>(bwd_w_pd);
    fwd_scratch_ = scratch_for(fwd_pd_);
    bwd_d_scratch_ = scratch_for(bwd_d_pd);
    bwd_w_scratch_ = scratch_for(bwd_w_pd);

    src_ = unbound(src_md, eng);
    dst_ = unbound(dst_md, eng);
    if (lp_) {  // bf16 copies of the input (forward, kept for the weight gradient) and of dout
      src_lp_ = owned(fwd_pd_.src_desc(), eng, src_lp_buf_);
      ddst_lp_ = unbound(bwd_w_pd.diff_dst_desc(), eng);  // bound to Context::bf16_grad in backward
      ctx_->reserve_bf16_grad(bwd_w_pd.diff_dst_desc().get_size());
    }
    dout_ = unbound(dst_md, eng);
    din_ = unbound(src_md, eng);
    plain_w_ = unbound(plain_w_md_, eng);
    plain_dw_ = unbound(plain_w_md_, eng);
    w_fwd_ = owned(fwd_pd_.weights_desc(), eng, w_fwd_buf_);
    w_bwd_ = bwd_d_pd.weights_desc() == fwd_pd_.weights_desc() ? w_fwd_ : owned(bwd_d_pd.weights_desc(), eng, w_bwd_buf_);
    dw_ = owned(bwd_w_pd.diff_weights_desc(), eng, dw_buf_);
    if (s.bias) {
      bias_ = unbound(b_md, eng);
      db_ = owned(b_md, eng, db_buf_);
    }
    // Weight reorders: plain -> forward layout (-> backward-data layout); diff -> plain grad
    // accumulating (sum post-op), since backward accumulates into Param::grad.
    reorder_fwd_ = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(plain_w_, w_fwd_));
    if (w_bwd_ != w_fwd_) reorder_bwd_ = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(plain_w_, w_bwd_));
    dnnl::primitive_attr sum_attr;
    dnnl::post_ops sum_po;
    sum_po.append_sum(1.0f);
    sum_attr.set_post_ops(sum_po);
    reorder_dw_ = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(dw_, plain_dw_, sum_attr));
    reorder_fwd_args_ = {{DNNL_ARG_FROM, plain_w_}, {DNNL_ARG_TO, w_fwd_}};
    reorder_bwd_args_ = {{DNNL_ARG_FROM, plain_w_}, {DNNL_ARG_TO, w_bwd_}};
    reorder_dw_args_ = {{DNNL_ARG_FROM, dw_}, {DNNL_ARG_TO, plain_dw_}};

    fwd_args_ = {{DNNL_ARG_SRC, lp_ ? src_lp_ : src_}, {DNNL_ARG_WEIGHTS, w_fwd_}, {DNNL_ARG_DST, dst_}};
    if (s.bias) fwd_args_[DNNL_ARG_BIAS] = bias_;
    dnnl::memory ddst = dout_;
    if (fused_) dpre_ = owned(dst_md, eng, dpre_buf_), ddst = dpre_;  // d(pre-activation) = dout * act'(saved dst)
    if (fused_ && lp_) {  // oneDNN's eltwise backward only where our bf16 pass cannot run; fp32 uses relu_bwd.hpp
      dnnl::eltwise_forward::desc ef(dnnl::prop_kind::forward_training, dnnl::algorithm::eltwise_relu_use_dst_for_bwd,
                                     dst_md, alpha_, 0.0f);
      auto ef_pd = CRACKSEG_DNNL_CALL(dnnl::eltwise_forward::primitive_desc(ef, eng));
      dnnl::eltwise_backward::desc eb(dnnl::algorithm::eltwise_relu_use_dst_for_bwd, dst_md, dst_md, alpha_, 0.0f);
      auto eb_pd = CRACKSEG_DNNL_CALL(dnnl::eltwise_backward::primitive_desc(eb, scratch_attr(), eng, ef_pd));
      act_bwd_ = make_primitive<dnnl::eltwise_backward>(eb_pd);
      act_scratch_ = scratch_for(eb_pd);
      act_args_ = {{DNNL_ARG_DST, dst_}, {DNNL_ARG_DIFF_DST, dout_}, {DNNL_ARG_DIFF_SRC, dpre_}};
    }
    if (lp_) {
      to_lp_src_.plan(src_, src_lp_);
      to_lp_ddst_.plan(ddst, ddst_lp_);
      ddst = ddst_lp_;
    }
    bwd_d_args_ = {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, w_bwd_}, {DNNL_ARG_DIFF_SRC, din_}};
    // Blocked temps (Winograd, the blocked weight gradient) live in the shared scratchpad
    // behind the primitives' own scratch.
    const auto al = [](std::size_t b) { return (b + 63) / 64 * 64; };
    const std::size_t temps_off = al(std::max({fwd_pd_.scratchpad_desc().get_size(), bwd_d_pd.scratchpad_desc().get_size(),
                                               bwd_w_pd.scratchpad_desc().get_size()}));
    const auto reo = [&](const dnnl::memory& from, const dnnl::memory& to, dnnl::primitive& p, Args& a) {
      p = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(from, to));
      a = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    };
    if (wino_) {
      blk_src_off_ = temps_off;
      blk_dst_off_ = blk_src_off_ + al(fwd_pd_.src_desc().get_size());
      blk_dsrc_off_ = blk_dst_off_ + al(std::max(fwd_pd_.dst_desc().get_size(), bwd_w_pd.diff_dst_desc().get_size()));
      ctx_->reserve_scratch(blk_dsrc_off_ + al(bwd_d_pd.diff_src_desc().get_size()));
      src_blk_ = unbound(fwd_pd_.src_desc(), eng);
      dst_blk_ = unbound(fwd_pd_.dst_desc(), eng);
      ddst_blk_ = unbound(bwd_w_pd.diff_dst_desc(), eng);
      dsrc_blk_ = unbound(bwd_d_pd.diff_src_desc(), eng);
      img_in_bytes_ = x[1] * x[2] * x[3] * static_cast<int64_t>(sizeof(float));
      img_out_bytes_ = y[1] * y[2] * y[3] * static_cast<int64_t>(sizeof(float));
      img_src_ = unbound(dnnl::memory::desc(x1, dt::f32, tag::nhwc), eng);
      img_dst_ = unbound(dnnl::memory::desc(y1, dt::f32, tag::nhwc), eng);
      img_ddst_ = unbound(dnnl::memory::desc(y1, dt::f32, tag::nhwc), eng);
      img_din_ = unbound(dnnl::memory::desc(x1, dt::f32, tag::nhwc), eng);
      reo(img_src_, src_blk_, blk_in_, blk_in_args_);
      reo(dst_blk_, img_dst_, blk_out_, blk_out_args_);
      reo(img_ddst_, ddst_blk_, blk_dout_, blk_dout_args_);
      reo(dsrc_blk_, img_din_, blk_din_, blk_din_args_);
      fwd_args_[DNNL_ARG_SRC] = src_blk_;
      fwd_args_[DNNL_ARG_DST] = dst_blk_;
      bwd_d_args_[DNNL_ARG_DIFF_DST] = ddst_blk_;
      bwd_d_args_[DNNL_ARG_DIFF_SRC] = dsrc_blk_;
    }
    if (blk_w_) {
      wblk_src_off_ = temps_off;
      wblk_ddst_off_ = wblk_src_off_ + al(bwd_w_pd.src_desc().get_size());
      ctx_->reserve_scratch(wblk_ddst_off_ + al(bwd_w_pd.diff_dst_desc().get_size()));
      src_wblk_ = unbound(bwd_w_pd.src_desc(), eng);
      ddst_wblk_ = unbound(bwd_w_pd.diff_dst_desc(), eng);
      const dnnl::memory::dims xb{wnb_, x[1], x[2], x[3]}, yb{wnb_, y[1], y[2], y[3]};
      wimg_src_ = unbound(dnnl::memory::desc(xb, dt::f32, tag::nhwc), eng);
      wimg_ddst_ = unbound(dnnl::memory::desc(yb, dt::f32, tag::nhwc), eng);
      reo(wimg_src_, src_wblk_, wblk_src_, wblk_src_args_);
      reo(wimg_ddst_, ddst_wblk_, wblk_ddst_, wblk_ddst_args_);
      // Our copy loop where the blocked layout is the dense nChw8c / nChw16c (blocked_copy.hpp):
      // oneDNN's reorder ran 1.5-2.7x slower on the big tensors.
      wsrc_b_ = dense_channel_block(bwd_w_pd.src_desc());
      wddst_b_ = dense_channel_block(bwd_w_pd.diff_dst_desc());
      wx_ = {x[1], x[2] * x[3]}, wy_ = {y[1], y[2] * y[3]};
      img_in_bytes_ = wnb_ * x[1] * x[2] * x[3] * static_cast<int64_t>(sizeof(float));  // per chunk
      img_out_bytes_ = wnb_ * y[1] * y[2] * y[3] * static_cast<int64_t>(sizeof(float));
    }
    if (narrow_) col_args_ = {{DNNL_ARG_SRC, ddst}, {DNNL_ARG_WEIGHTS, col_w_}, {DNNL_ARG_DST, col_dst_}};
    bwd_w_args_ = {{DNNL_ARG_SRC, lp_ ? src_lp_ : src_}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dw_}};
    if (s.bias) bwd_w_args_[DNNL_ARG_DIFF_BIAS] = db_;
    if (wino_) bwd_w_args_[DNNL_ARG_SRC] = src_blk_, bwd_w_args_[DNNL_ARG_DIFF_DST] = ddst_blk_;
    if (blk_w_) bwd_w_args_[DNNL_ARG_SRC] = src_wblk_, bwd_w_args_[DNNL_ARG_DIFF_DST] = ddst_wblk_;
    planned_ = true;
    refresh_weights();
  }

  // bf16 activations: a bf16 layer whose input copy would be a plain dense rounding can read
  // a bf16 input directly (its forward and weight gradient use nothing else of it).
  bool can_read_bf16_input() const override { return planned_ && lp_ && !wino_ && to_lp_src_.own(); }
  void set_input_bf16() override {
    in_bf16_ = true;
    src_lp_buf_ = Tensor{};  // the input itself is the bf16 copy now
  }
  // ... and its output gradient likewise, where nothing reads it in fp32 (no fused
  // activation's backward, no few-channel input-gradient kernel of our own).
  bool can_read_bf16_dout() const override {
    return planned_ && lp_ && !wino_ && !fused_ && !small_ && to_lp_ddst_.own();
  }
  void set_dout_bf16() override { dout_bf16_ = true; }

  void params_changed() override {
    if (planned_) refresh_weights();
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    bind(src_, *in[0]);
    bind(dst_, out);
    if (as<Spec>().bias) bind(bias_, params_[1].value);
    if (in_bf16_)
      src_lp_.set_data_handle(const_cast<void*>(in[0]->raw()));
    else if (lp_)
      to_lp_src_.run(ctx_->stream);
    if (wino_) {  // image by image: nhwc -> blocked, Winograd, blocked -> nhwc
      blk(src_blk_, blk_src_off_), blk(dst_blk_, blk_dst_off_);
      for (int64_t n = 0; n < out.n(); ++n) {
        img(img_src_, in[0]->raw(), n, img_in_bytes_), img(img_dst_, out.raw(), n, img_out_bytes_);
        CRACKSEG_DNNL_CALL(blk_in_.execute(ctx_->stream, blk_in_args_));
        exec(fwd_, fwd_args_, fwd_scratch_);
        CRACKSEG_DNNL_CALL(blk_out_.execute(ctx_->stream, blk_out_args_));
      }
      return wait();
    }
    exec(fwd_, fwd_args_, fwd_scratch_);
    wait();
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    bind(src_, *in[0]);
    bind(dst_, out);
    bind(dout_, dout);
    // bf16 with a fused activation: only the rounded d(pre-activation) is read (no Winograd,
    // no few-channel kernel of our own with bf16), so its backward and the rounding run as one
    // pass of our own where our rounding loop runs (same select, multiply and rounding).
    const bool act_lp = fused_ && lp_ && to_lp_ddst_.own();
    // fp32: our own pass (relu_bwd.hpp), which also writes the blocked copy the blocked weight
    // gradient needs when it takes the whole batch in one chunk.
    act_blk_ = false;
    if (fused_ && !lp_) {
      wait();
      act_blk_ = blk_w_ && wnb_ == in[0]->n() && wddst_b_ > 0;
      if (act_blk_) {
        blk(ddst_wblk_, wblk_ddst_off_);
        relu_bwd_f32_blocked(out.data<float>(), dout.data<float>(), alpha_, dpre_buf_.data<float>(),
                             static_cast<float*>(ddst_wblk_.get_data_handle()), wnb_, wy_[0], wy_[1], wddst_b_);
      } else {
        relu_bwd_f32(out.data<float>(), dout.data<float>(), alpha_, dpre_buf_.data<float>(), out.numel());
      }
    } else if (fused_ && !act_lp) {
      exec(act_bwd_, act_args_, act_scratch_);
    }
    // The weight gradient reads the bf16 input saved by this layer's forward (the Graph runs
    // a layer's backward after its own forward, with no other forward of it in between).
    if (in_bf16_) src_lp_.set_data_handle(const_cast<void*>(in[0]->raw()));
    if (dout_bf16_) {
      ddst_lp_.set_data_handle(const_cast<void*>(dout.raw()));
    } else if (act_lp) {
      ddst_lp_.set_data_handle(ctx_->bf16_grad.raw());
      wait();
      relu_bwd_to_bf16(out.data<float>(), dout.data<float>(), alpha_, static_cast<uint16_t*>(ctx_->bf16_grad.raw()),
                       out.numel());
    } else if (lp_) {
      ddst_lp_.set_data_handle(ctx_->bf16_grad.raw());
      to_lp_ddst_.run(ctx_->stream);
    }
    if (wino_) return wino_backward(*in[0], fused_ ? dpre_buf_.raw() : dout.raw(), din[0]);
    if (din[0] && small_) {  // few input channels: our own GEMM + col2im (small_conv_dgrad.hpp)
      wait();  // the fused activation's d(pre-activation) is read below
      small_->run(static_cast<const float*>(fused_ ? dpre_buf_.raw() : dout.raw()), din[0]->data<float>(),
                  static_cast<float*>(ctx_->scratch_ptr()));
    } else if (din[0] && narrow_) {
      std::byte* T = static_cast<std::byte*>(ctx_->scratch_ptr()) + col_off_;
      col_dst_.set_data_handle(T);
      exec(col_, col_args_, col_scratch_);
      wait();
      const auto& s = as<Spec>();
      const Dims& x = in[0]->dims();
      col2im_nhwc(reinterpret_cast<const float*>(T), x[0], out.h(), out.w(), s.kernel, s.stride, s.padding, s.in_c,
                  nullptr, din[0]->data<float>(), x[2], x[3]);
    } else if (din[0]) {
      bind(din_, *din[0]);
      exec(bwd_d_, bwd_d_args_, bwd_d_scratch_);
    }
    if (blk_w_) return blocked_wgrad(*in[0], fused_ ? dpre_buf_.raw() : dout.raw());
    if (amx_w_) {  // the bf16 input and output-gradient copies are final here (after wait())
      wait();
      amx_wgrad(aw_shape_, static_cast<const uint16_t*>(src_lp_.get_data_handle()),
                static_cast<const uint16_t*>(ddst_lp_.get_data_handle()), ctx_->scratch_ptr(),
                params_[0].grad.data<float>(), as<Spec>().bias ? params_[1].grad.data<float>() : nullptr, aw_threads_);
      return;
    }
    if (small_w_) {
      wait();
      small_conv_wgrad(sw_shape_, in[0]->data<float>(), static_cast<const float*>(fused_ ? dpre_buf_.raw() : dout.raw()),
                       static_cast<float*>(ctx_->scratch_ptr()), params_[0].grad.data<float>(),
                       as<Spec>().bias ? params_[1].grad.data<float>() : nullptr, sw_threads_);
      return;
    }
    bind(plain_dw_, params_[0].grad);
    add_weight_grad();
  }

 private:
  void refresh_weights() {
    if (small_) small_->set_weights(params_[0].value.data<float>());
    if (narrow_) {  // (O, I, K, K) -> (K*K*I, O): row (kh*K + kw)*I + i (I = 1 today)
      const auto& s = as<Spec>();
      const int64_t O = s.out_c, I = s.in_c, KK = s.kernel * s.kernel;
      const float* W = params_[0].value.data<float>();
      float* v = col_plain_w_buf_.data<float>();
      for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < I; ++i)
          for (int64_t kk = 0; kk < KK; ++kk) v[(kk * I + i) * O + o] = W[(o * I + i) * KK + kk];
      CRACKSEG_DNNL_CALL(reorder_col_w_.execute(ctx_->stream, reorder_col_w_args_));
    }
    bind(plain_w_, params_[0].value);
    CRACKSEG_DNNL_CALL(reorder_fwd_.execute(ctx_->stream, reorder_fwd_args_));
    if (w_bwd_ != w_fwd_) CRACKSEG_DNNL_CALL(reorder_bwd_.execute(ctx_->stream, reorder_bwd_args_));
    wait();
  }

  // Winograd backward, image by image (the blocked input is rebuilt from the kept nhwc one, no
  // copy kept per layer); each image's weight and bias gradients are added into the
  // parameters' (the sum post-op reorder, as for the whole batch otherwise). g: dout, or the
  // fused activation's d(pre-activation).
  void wino_backward(const Tensor& x, const void* g, Tensor* dx) {
    blk(src_blk_, blk_src_off_), blk(ddst_blk_, blk_dst_off_), blk(dsrc_blk_, blk_dsrc_off_);
    bind(plain_dw_, params_[0].grad);
    for (int64_t n = 0; n < x.n(); ++n) {
      img(img_ddst_, g, n, img_out_bytes_), img(img_src_, x.raw(), n, img_in_bytes_);
      CRACKSEG_DNNL_CALL(blk_dout_.execute(ctx_->stream, blk_dout_args_));
      if (dx) {
        img(img_din_, dx->raw(), n, img_in_bytes_);
        exec(bwd_d_, bwd_d_args_, bwd_d_scratch_);
        CRACKSEG_DNNL_CALL(blk_din_.execute(ctx_->stream, blk_din_args_));
      }
      CRACKSEG_DNNL_CALL(blk_in_.execute(ctx_->stream, blk_in_args_));
      add_weight_grad();
    }
  }
  // The weight gradient on oneDNN's blocked layout (plan()), chunk by chunk (wnb_ images):
  // input and output gradient (g: dout, or the fused activation's d(pre-activation))
  // reordered into the scratchpad, each chunk's weight and bias gradients added into the
  // parameters'.
  void blocked_wgrad(const Tensor& x, const void* g) {
    blk(src_wblk_, wblk_src_off_), blk(ddst_wblk_, wblk_ddst_off_);
    bind(plain_dw_, params_[0].grad);
    for (int64_t n = 0; n < x.n() / wnb_; ++n) {
      img(wimg_src_, x.raw(), n, img_in_bytes_), img(wimg_ddst_, g, n, img_out_bytes_);
      copy_blocked(wimg_src_, src_wblk_, wblk_src_, wblk_src_args_, wsrc_b_, wx_[0], wx_[1]);
      if (!act_blk_) copy_blocked(wimg_ddst_, ddst_wblk_, wblk_ddst_, wblk_ddst_args_, wddst_b_, wy_[0], wy_[1]);
      add_weight_grad();
    }
  }
  // nhwc chunk `from` -> its blocked copy `to`: our loop for a dense nChw{B}c (B > 0), else
  // oneDNN's reorder.
  void copy_blocked(const dnnl::memory& from, const dnnl::memory& to, const dnnl::primitive& reorder, const Args& args,
                    int64_t B, int64_t C, int64_t HW) {
    if (B == 0) {
      CRACKSEG_DNNL_CALL(reorder.execute(ctx_->stream, args));
      return;
    }
    wait();
    nhwc_to_blocked(static_cast<const float*>(from.get_data_handle()), static_cast<float*>(to.get_data_handle()), wnb_,
                    C, HW, B);
  }
  // Runs the weight-gradient primitive on what its arguments point at now and adds its
  // result into the parameters' gradients (plain_dw_ bound to the weight's: the sum post-op
  // reorder; the bias by hand).
  void add_weight_grad() {
    exec(bwd_w_, bwd_w_args_, bwd_w_scratch_);
    CRACKSEG_DNNL_CALL(reorder_dw_.execute(ctx_->stream, reorder_dw_args_));
    wait();
    if (as<Spec>().bias) add_into(params_[1].grad, db_buf_, as<Spec>().out_c);
  }
  // Points a per-image nhwc view at image n of the tensor at `base` (`bytes` per image).
  static void img(const dnnl::memory& m, const void* base, int64_t n, int64_t bytes) {
    m.set_data_handle(static_cast<std::byte*>(const_cast<void*>(base)) + n * bytes);
  }
  // Points a blocked temp at its offset in the shared scratchpad (which plan() may regrow).
  void blk(const dnnl::memory& m, std::size_t off) {
    m.set_data_handle(static_cast<std::byte*>(ctx_->scratch_ptr()) + off);
  }

  // Winograd only from this many input values per image (C*H*W) up: measured, the patch CNN's
  // 27x27 / 13x13 layers (<= 12k) ran 17% slower with it (reorders and partial 4x4 tiles),
  // the U-Net's (>= 80k, down to 128 channels at 25x25) 2-2.5x faster.
  static constexpr int64_t kWinoMinPerImage = 32768;
  bool fused_ = false, planned_ = false, lp_ = false, narrow_ = false, wino_ = false;
  // Winograd (train.conv_algorithm): blocked copies of the input, output / output gradient and
  // input gradient in the scratchpad, and the reorders to and from this backend's nhwc.
  dnnl::primitive blk_in_, blk_out_, blk_dout_, blk_din_;
  dnnl::memory src_blk_, dst_blk_, ddst_blk_, dsrc_blk_, img_src_, img_dst_, img_ddst_, img_din_;
  Args blk_in_args_, blk_out_args_, blk_dout_args_, blk_din_args_;
  std::size_t blk_src_off_ = 0, blk_dst_off_ = 0, blk_dsrc_off_ = 0;
  int64_t img_in_bytes_ = 0, img_out_bytes_ = 0;
  dnnl::primitive col_, reorder_col_w_;
  dnnl::memory col_scratch_, col_dst_, col_plain_w_, col_w_;
  Tensor col_plain_w_buf_, col_w_buf_;
  Args col_args_, reorder_col_w_args_;
  std::size_t col_off_ = 0;
  // Weight gradient on oneDNN's blocked layout (CPUs without AVX-512, see plan()): the input
  // and output gradient reordered into the scratchpad first.
  // The blocked weight gradient's copies per chunk: 64 MB, or CRACKSEG_BLOCKED_WGRAD_BYTES
  // (tests make it small so that small tensors run several chunks). Read at plan.
  // Where oneDNN has no AVX-512 kernels, the weight gradient of convolutions with few input
  // channels or a small weight runs on our own AVX2 kernel (small_conv_wgrad.hpp: oneDNN's
  // jit:avx2 ran the few-channel ones at 8-31 GFLOP/s, and the 16-32-channel ones slower than
  // ours in the network with their reorders to nChw8c).
  bool own_wgrad(const Spec& s, int64_t K) const {
    return !lp_ && !wino_ && s.dilation == 1 && !onednn_has_avx512_core() && small_conv_wgrad_fits(s.in_c, s.out_c, K);
  }

  static int64_t blocked_wgrad_bytes() {
    const char* v = std::getenv("CRACKSEG_BLOCKED_WGRAD_BYTES");
    return v && *v ? std::strtoll(v, nullptr, 10) : int64_t{64} << 20;
  }
  bool blk_w_ = false;
  int64_t wnb_ = 1;
  int64_t wsrc_b_ = 0, wddst_b_ = 0;  // channel block of the copies when ours do them (else 0)
  std::array<int64_t, 2> wx_{}, wy_{};  // (C, H*W) of the input and the output gradient
  bool act_blk_ = false;  // this backward's fused activation wrote the blocked copy already
  dnnl::primitive wblk_src_, wblk_ddst_;
  dnnl::memory src_wblk_, ddst_wblk_, wimg_src_, wimg_ddst_;
  Args wblk_src_args_, wblk_ddst_args_;
  std::size_t wblk_src_off_ = 0, wblk_ddst_off_ = 0;
  float alpha_ = 0.0f;
  typename Fwd::primitive_desc fwd_pd_;
  dnnl::primitive fwd_, bwd_d_, bwd_w_, act_bwd_, reorder_fwd_, reorder_bwd_, reorder_dw_;
  ToBf16 to_lp_src_, to_lp_ddst_;  // bf16 copies of the input and of dout (lp_)
  bool in_bf16_ = false;            // the input tensor is bf16 already (set_input_bf16)
  bool dout_bf16_ = false;          // the output gradient is bf16 already (set_dout_bf16)
  dnnl::memory fwd_scratch_, bwd_d_scratch_, bwd_w_scratch_, act_scratch_;
  dnnl::memory::desc plain_w_md_;
  dnnl::memory src_, dst_, dout_, din_, plain_w_, plain_dw_, w_fwd_, w_bwd_, dw_, bias_, db_, dpre_, src_lp_, ddst_lp_;
  Tensor w_fwd_buf_, w_bwd_buf_, dw_buf_, db_buf_, dpre_buf_, src_lp_buf_;
  std::unique_ptr<SmallConvDgrad> small_;  // few input channels: own input gradient
  bool small_w_ = false;                    // ... and own weight gradient (no AVX-512)
  SmallWgradShape sw_shape_;
  int sw_threads_ = 1;
  bool amx_w_ = false;  // bf16 weight gradient on our own AMX kernel (amx_wgrad.hpp)
  AmxWgradShape aw_shape_;
  int aw_threads_ = 1;
  Args fwd_args_, bwd_d_args_, bwd_w_args_, act_args_, reorder_fwd_args_, reorder_bwd_args_, reorder_dw_args_;
};

}  // namespace crackseg::onednn
