// maxpool2d: our own nhwc loops (maxpool_kernels.hpp: oneDNN 2.6's pooling ran at 2.6 GB/s
// on an AVX2 CPU); oneDNN's primitives (forward_training keeps the argmax workspace) where the
// window is too large for the loops' one-byte winner, or with CRACKSEG_OWN_MAXPOOL=0 (A/B).
#include <cstdlib>
#include <string_view>

#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/maxpool_kernels.hpp"

namespace crackseg::onednn {
namespace {

class MaxPool2d final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  void plan(std::span<const Dims> in) override {
    const auto& s = as<MaxPool2dSpec>();
    const Dims x = in[0], y = output_dims(in);
    const char* ab = std::getenv("CRACKSEG_OWN_MAXPOOL");
    own_ = own_maxpool_fits(s.kernel) && !(ab && std::string_view(ab) == "0");
    if (own_) {
      shape_ = PoolShape{x[0], x[2], x[3], x[1], y[2], y[3], s.kernel, s.stride, s.padding};
      win_buf_ = alloc_buffer({(y[0] * y[1] * y[2] * y[3] + 3) / 4});
      return;
    }
    const auto& eng = ctx_->engine;
    const auto src_md = act_md(x), dst_md = act_md(y);
    const dnnl::memory::dims k{s.kernel, s.kernel}, st{s.stride, s.stride}, pl{s.padding, s.padding},
        pr{(y[2] - 1) * s.stride + s.kernel - x[2] - s.padding, (y[3] - 1) * s.stride + s.kernel - x[3] - s.padding};
    dnnl::pooling_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_max, src_md, dst_md, st,
                                   k, pl, pr);
    auto fpd = CRACKSEG_DNNL_CALL(dnnl::pooling_forward::primitive_desc(fd, scratch_attr(), eng));
    dnnl::pooling_backward::desc bd(dnnl::algorithm::pooling_max, src_md, dst_md, st, k, pl, pr);
    auto bpd = CRACKSEG_DNNL_CALL(dnnl::pooling_backward::primitive_desc(bd, scratch_attr(), eng, fpd));
    fwd_ = make_primitive<dnnl::pooling_forward>(fpd);
    bwd_ = make_primitive<dnnl::pooling_backward>(bpd);
    fs_ = scratch_for(fpd);
    bs_ = scratch_for(bpd);
    src_ = unbound(src_md, eng), dst_ = unbound(dst_md, eng), din_ = unbound(src_md, eng), dout_ = unbound(dst_md, eng);
    ws_ = owned(fpd.workspace_desc(), eng, ws_buf_);
    fargs_ = {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DST, dst_}, {DNNL_ARG_WORKSPACE, ws_}};
    bargs_ = {{DNNL_ARG_DIFF_DST, dout_}, {DNNL_ARG_DIFF_SRC, din_}, {DNNL_ARG_WORKSPACE, ws_}};
  }
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    if (own_) return maxpool_forward(shape_, in[0]->data<float>(), out.data<float>(), win());
    bind(src_, *in[0]);
    bind(dst_, out);
    exec(fwd_, fargs_, fs_);
    wait();
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    if (own_) return maxpool_backward(shape_, dout.data<float>(), win(), din[0]->data<float>());
    bind(dout_, dout);
    bind(din_, *din[0]);
    exec(bwd_, bargs_, bs_);
    wait();
  }

 private:
  uint8_t* win() { return static_cast<uint8_t*>(win_buf_.raw()); }
  bool own_ = false;
  PoolShape shape_{};
  Tensor win_buf_;  // the winners' window positions (own loops)
  dnnl::primitive fwd_, bwd_;
  dnnl::memory fs_, bs_, src_, dst_, din_, dout_, ws_;
  Tensor ws_buf_;
  Args fargs_, bargs_;
};

}  // namespace

std::unique_ptr<Layer> make_maxpool2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<MaxPool2d>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
