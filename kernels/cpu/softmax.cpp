// oneDNN softmax over channels (axis 1 of (N, C, H, W) or (N, F)).
#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {
namespace {

class Softmax final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  void plan(std::span<const Dims> in) override {
    const auto& eng = ctx_->engine;
    const auto md = act_md(in[0]);
    dnnl::softmax_forward::desc fd(dnnl::prop_kind::forward_training, md, 1);
    auto fpd = CRACKSEG_DNNL_CALL(dnnl::softmax_forward::primitive_desc(fd, scratch_attr(), eng));
    dnnl::softmax_backward::desc bd(md, md, 1);
    auto bpd = CRACKSEG_DNNL_CALL(dnnl::softmax_backward::primitive_desc(bd, scratch_attr(), eng, fpd));
    fwd_ = make_primitive<dnnl::softmax_forward>(fpd);
    bwd_ = make_primitive<dnnl::softmax_backward>(bpd);
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

std::unique_ptr<Layer> make_softmax(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Softmax>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
