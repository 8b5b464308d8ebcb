// oneDNN batchnorm2d. Training: statistics of this call's batch (the micro-batch), running
// mean/var updated PyTorch-style (unbiased variance). Eval: running statistics; its backward
// (rare: frozen BN) is a plain OpenMP loop.
#include <cmath>

#include "kernels/cpu/dnnl_common.hpp"
#include "src/layers/running_stats.hpp"

namespace crackseg::onednn {
namespace {

using nf = dnnl::normalization_flags;

class BatchNorm2d final : public DnnlLayer {
 public:
  BatchNorm2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c)
      : DnnlLayer(s, n, std::move(c)),
        stats_(std::get<BatchNorm2dSpec>(s).channels, std::get<BatchNorm2dSpec>(s).momentum) {}
  std::vector<std::pair<std::string, Tensor*>> buffers() override {
    return {{name_ + ".running_mean", &stats_.mean()}, {name_ + ".running_var", &stats_.var()}};
  }
  std::size_t batch_stats_size() const override { return stats_.size(); }
  bool backward_reads_output() const override { return false; }  // src, mean, variance, dout only
  void set_defer_running_stats(bool defer) override { stats_.set_defer(defer); }
  void read_batch_stats(std::span<float> dst) const override { stats_.read(dst); }
  void apply_batch_stats(std::span<const float> src) override { stats_.apply(src); }

  void plan(std::span<const Dims> in) override {
    const auto& s = as<BatchNorm2dSpec>();
    const auto& eng = ctx_->engine;
    // One channel: nhwc and nchw are the same bytes, and oneDNN 2.6 vectorises nchw batchnorm
    // over space (bnorm_jit) but runs the nhwc one channel-wise (nspc_bnorm, nothing to
    // vectorise with C = 1: ~3.4x slower per element; Spiral-Net's 1-channel module outputs).
    const bool one_channel = in[0].size() == 4 && in[0][1] == 1;
    const auto md = one_channel ? dnnl::memory::desc(to_dnnl(in[0]), dt::f32, tag::nchw) : act_md(in[0]);
    const dnnl::memory::desc c_md({s.channels}, dt::f32, tag::a);
    const auto train_flags = nf::use_scale | nf::use_shift;
    dnnl::batch_normalization_forward::desc td(dnnl::prop_kind::forward_training, md, s.eps, train_flags);
    auto tpd = CRACKSEG_DNNL_CALL(dnnl::batch_normalization_forward::primitive_desc(td, scratch_attr(), eng));
    dnnl::batch_normalization_forward::desc id(dnnl::prop_kind::forward_inference, md, s.eps,
                                               train_flags | nf::use_global_stats);
    auto ipd = CRACKSEG_DNNL_CALL(dnnl::batch_normalization_forward::primitive_desc(id, scratch_attr(), eng));
    dnnl::batch_normalization_backward::desc bd(dnnl::prop_kind::backward, md, md, s.eps, train_flags);
    auto bpd = CRACKSEG_DNNL_CALL(dnnl::batch_normalization_backward::primitive_desc(bd, scratch_attr(), eng, tpd));
    train_ = make_primitive<dnnl::batch_normalization_forward>(tpd);
    infer_ = make_primitive<dnnl::batch_normalization_forward>(ipd);
    bwd_ = make_primitive<dnnl::batch_normalization_backward>(bpd);
    ts_ = scratch_for(tpd), is_ = scratch_for(ipd), bs_ = scratch_for(bpd);
    src_ = unbound(md, eng), dst_ = unbound(md, eng), dout_ = unbound(md, eng), din_ = unbound(md, eng);
    scale_ = unbound(c_md, eng), shift_ = unbound(c_md, eng);
    rmean_ = unbound(c_md, eng), rvar_ = unbound(c_md, eng);
    mean_ = owned(c_md, eng, mean_buf_), var_ = owned(c_md, eng, var_buf_);
    dscale_ = owned(c_md, eng, dscale_buf_), dshift_ = owned(c_md, eng, dshift_buf_);
    targs_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DST, dst_}, {DNNL_ARG_SCALE, scale_}, {DNNL_ARG_SHIFT, shift_},
              {DNNL_ARG_MEAN, mean_}, {DNNL_ARG_VARIANCE, var_}};
    iargs_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DST, dst_}, {DNNL_ARG_SCALE, scale_}, {DNNL_ARG_SHIFT, shift_},
              {DNNL_ARG_MEAN, rmean_}, {DNNL_ARG_VARIANCE, rvar_}};
    bargs_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DIFF_DST, dout_}, {DNNL_ARG_SCALE, scale_}, {DNNL_ARG_SHIFT, shift_}, {DNNL_ARG_MEAN, mean_},
              {DNNL_ARG_VARIANCE, var_}, {DNNL_ARG_DIFF_SRC, din_}, {DNNL_ARG_DIFF_SCALE, dscale_},
              {DNNL_ARG_DIFF_SHIFT, dshift_}};
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    bind(src_, *in[0]);
    bind(dst_, out);
    bind(scale_, params_[0].value);
    bind(shift_, params_[1].value);
    if (!ctx.training) {
      bind(rmean_, stats_.mean());
      bind(rvar_, stats_.var());
      exec(infer_, iargs_, is_);
      wait();
      return;
    }
    exec(train_, targs_, ts_);
    wait();
    const Tensor& x = *in[0];
    stats_.record(mean_buf_.data<float>(), var_buf_.data<float>(), static_cast<double>(x.n() * x.h() * x.w()));
  }

  void backward(const StepContext& ctx, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!ctx.training) return eval_backward(*in[0], dout, din[0]);
    // oneDNN always produces diff_src; without a consumer it goes to a scratch-sized
    // buffer owned here (allocated on first use only).
    Tensor* dx = din[0];
    if (!dx) {
      if (!unused_din_.defined() || unused_din_.dims() != in[0]->dims())
        unused_din_ = alloc_buffer(in[0]->dims(), DType::f32, in[0]->format());
      dx = &unused_din_;
    }
    bind(src_, *in[0]);
    bind(dout_, dout);
    bind(din_, *dx);
    bind(scale_, params_[0].value);
    bind(shift_, params_[1].value);
    exec(bwd_, bargs_, bs_);
    wait();
    const int64_t C = as<BatchNorm2dSpec>().channels;
    float* dg = params_[0].grad.data<float>();
    float* db = params_[1].grad.data<float>();
    for (int64_t c = 0; c < C; ++c) dg[c] += dscale_buf_.data<float>()[c], db[c] += dshift_buf_.data<float>()[c];
  }

 private:
  // y = (x - rm) / sqrt(rv + eps) * g + b with constants rm, rv (nhwc: channel fastest).
  void eval_backward(const Tensor& x, const Tensor& dout, Tensor* din) {
    const auto& s = as<BatchNorm2dSpec>();
    const int64_t C = s.channels, P = x.numel() / C;
    const float* xd = x.data<float>();
    const float* dy = dout.data<float>();
    const float* g = params_[0].value.data<float>();
    const float* rm = stats_.mean().data<float>();
    const float* rv = stats_.var().data<float>();
    std::vector<double> sdy(static_cast<std::size_t>(C), 0.0), sdyx(static_cast<std::size_t>(C), 0.0);
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) {
        const double inv = 1.0 / std::sqrt(double(rv[c]) + s.eps);
        const double d = dy[p * C + c];
        sdy[c] += d;
        sdyx[c] += d * (xd[p * C + c] - rm[c]) * inv;
        if (din) din->data<float>()[p * C + c] = static_cast<float>(d * g[c] * inv);
      }
    for (int64_t c = 0; c < C; ++c) {
      params_[0].grad.data<float>()[c] += static_cast<float>(sdyx[c]);
      params_[1].grad.data<float>()[c] += static_cast<float>(sdy[c]);
    }
  }

  RunningStats stats_;
  Tensor unused_din_;
  dnnl::primitive train_, infer_, bwd_;
  dnnl::memory ts_, is_, bs_, src_, dst_, dout_, din_, scale_, shift_, rmean_, rvar_, mean_, var_, dscale_, dshift_;
  Tensor mean_buf_, var_buf_, dscale_buf_, dshift_buf_;
  Args targs_, iargs_, bargs_;
};

}  // namespace

std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<BatchNorm2d>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
