// oneDNN relu, leaky_relu (relu with alpha = slope) and sigmoid (logistic), both with the
// use_dst_for_bwd algorithms so backward needs only the saved output.
#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {
namespace {

class Eltwise final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  // oneDNN eltwise runs with src == dst, and the use_dst_for_bwd algorithms differentiate
  // from the output alone.
  bool runs_in_place() const override { return true; }
  // relu_use_dst_for_bwd: diff_src = diff_dst * (dst > 0 ? 1 : alpha); logistic needs dst itself.
  bool backward_reads_output_sign_only() const override { return !std::holds_alternative<SigmoidSpec>(spec_); }
  void plan(std::span<const Dims> in) override {
    const auto& eng = ctx_->engine;
    const auto md = act_md(in[0]);
    auto algo = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
    float alpha = 0.0f;
    if (std::holds_alternative<LeakyReluSpec>(spec_)) alpha = as<LeakyReluSpec>().slope;
    if (std::holds_alternative<SigmoidSpec>(spec_)) algo = dnnl::algorithm::eltwise_logistic_use_dst_for_bwd;
    dnnl::eltwise_forward::desc fd(dnnl::prop_kind::forward_training, algo, md, alpha, 0.0f);
    auto fpd = CRACKSEG_DNNL_CALL(dnnl::eltwise_forward::primitive_desc(fd, scratch_attr(), eng));
    dnnl::eltwise_backward::desc bd(algo, md, md, alpha, 0.0f);
    auto bpd = CRACKSEG_DNNL_CALL(dnnl::eltwise_backward::primitive_desc(bd, scratch_attr(), eng, fpd));
    fwd_ = make_primitive<dnnl::eltwise_forward>(fpd);
    bwd_ = make_primitive<dnnl::eltwise_backward>(bpd);
    fs_ = scratch_for(fpd), bs_ = scratch_for(bpd);
    src_ = unbound(md, eng), dst_ = unbound(md, eng), dout_ = unbound(md, eng), din_ = unbound(md, eng);
    fargs_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DST, dst_}};
    bargs_ = {{DNNL_ARG_DST, dst_}, {DNNL_ARG_DIFF_DST, dout_}, {DNNL_ARG_DIFF_SRC, din_}};
  }
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    bind(src_, *in[0]);
    bind(dst_, out);
    exec(fwd_, fargs_, fs_);
    wait();
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    bind(dst_, out);
    bind(dout_, dout);
    bind(din_, *din[0]);
    exec(bwd_, bargs_, bs_);
    wait();
  }

 private:
  dnnl::primitive fwd_, bwd_;
  dnnl::memory fs_, bs_, src_, dst_, dout_, din_;
  Args fargs_, bargs_;
};

}  // namespace

std::unique_ptr<Layer> make_eltwise(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Eltwise>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
