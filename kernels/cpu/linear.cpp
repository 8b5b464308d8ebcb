// oneDNN linear (inner product) on (N, F) activations. Weights stay in their plain (O, I)
// layout: the layers are small (patch CNN heads) and skipping reorders keeps them simple.
// Backward-weights writes into owned buffers that are then added to Param::grad.
#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {
namespace {

class Linear final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  void plan(std::span<const Dims> in) override {
    const auto& s = as<LinearSpec>();
    const auto& eng = ctx_->engine;
    const auto src_md = act_md(in[0]), dst_md = act_md(output_dims(in));
    const dnnl::memory::desc w_md({s.out_f, s.in_f}, dt::f32, tag::oi);
    const dnnl::memory::desc b_md = s.bias ? dnnl::memory::desc({s.out_f}, dt::f32, tag::a) : dnnl::memory::desc();
    dnnl::inner_product_forward::desc fd(dnnl::prop_kind::forward_training, src_md, w_md, b_md, dst_md);
    auto fpd = CRACKSEG_DNNL_CALL(dnnl::inner_product_forward::primitive_desc(fd, scratch_attr(), eng));
    dnnl::inner_product_backward_data::desc dd(src_md, w_md, dst_md);
    auto dpd = CRACKSEG_DNNL_CALL(dnnl::inner_product_backward_data::primitive_desc(dd, scratch_attr(), eng, fpd));
    dnnl::inner_product_backward_weights::desc wd(src_md, w_md, b_md, dst_md);
    auto wpd = CRACKSEG_DNNL_CALL(dnnl::inner_product_backward_weights::primitive_desc(wd, scratch_attr(), eng, fpd));
    fwd_ = make_primitive<dnnl::inner_product_forward>(fpd);
    bwd_d_ = make_primitive<dnnl::inner_product_backward_data>(dpd);
    bwd_w_ = make_primitive<dnnl::inner_product_backward_weights>(wpd);
    fs_ = scratch_for(fpd), ds_ = scratch_for(dpd), ws_ = scratch_for(wpd);
    src_ = unbound(src_md, eng), dst_ = unbound(dst_md, eng), dout_ = unbound(dst_md, eng), din_ = unbound(src_md, eng);
    w_ = unbound(w_md, eng);
    dw_ = owned(w_md, eng, dw_buf_);
    fargs_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_WEIGHTS, w_}, {DNNL_ARG_DST, dst_}};
    dargs_ = {{DNNL_ARG_DIFF_DST, dout_}, {DNNL_ARG_WEIGHTS, w_}, {DNNL_ARG_DIFF_SRC, din_}};
    wargs_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DIFF_DST, dout_}, {DNNL_ARG_DIFF_WEIGHTS, dw_}};
    if (s.bias) {
      b_ = unbound(b_md, eng);
      db_ = owned(b_md, eng, db_buf_);
      fargs_[DNNL_ARG_BIAS] = b_;
      wargs_[DNNL_ARG_DIFF_BIAS] = db_;
    }
  }
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    bind(src_, *in[0]);
    bind(dst_, out);
    bind(w_, params_[0].value);
    if (as<LinearSpec>().bias) bind(b_, params_[1].value);
    exec(fwd_, fargs_, fs_);
    wait();
  }
  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    bind(src_, *in[0]);
    bind(dout_, dout);
    bind(w_, params_[0].value);
    if (din[0]) {
      bind(din_, *din[0]);
      exec(bwd_d_, dargs_, ds_);
    }
    exec(bwd_w_, wargs_, ws_);
    wait();
    accumulate(params_[0].grad, dw_buf_, params_[0].grad.numel());
    if (as<LinearSpec>().bias) accumulate(params_[1].grad, db_buf_, params_[1].grad.numel());
  }

 private:
  static void accumulate(Tensor& g, const Tensor& d, int64_t n) {
    float* gp = g.data<float>();
    const float* dp = d.data<float>();
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) gp[i] += dp[i];
  }
  dnnl::primitive fwd_, bwd_d_, bwd_w_;
  dnnl::memory fs_, ds_, ws_, src_, dst_, dout_, din_, w_, b_, dw_, db_;
  Tensor dw_buf_, db_buf_;
  Args fargs_, dargs_, wargs_;
};

}  // namespace

std::unique_ptr<Layer> make_linear(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Linear>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
