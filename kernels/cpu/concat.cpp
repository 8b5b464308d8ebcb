// oneDNN concat along channels; backward reorders channel slices of dout (sub-memory
// views of the nhwc tensor) into each input's gradient.
#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {
namespace {

class Concat final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  void plan(std::span<const Dims> in) override {
    const auto& eng = ctx_->engine;
    const Dims y = output_dims(in);
    const auto dst_md = act_md(y);
    std::vector<dnnl::memory::desc> mds;
    for (const auto& d : in) mds.push_back(act_md(d));
    auto pd = CRACKSEG_DNNL_CALL(dnnl::concat::primitive_desc(dst_md, 1, mds, eng, scratch_attr()));
    fwd_ = make_primitive<dnnl::concat>(pd);
    fs_ = scratch_for(pd);
    dst_ = unbound(dst_md, eng);
    fargs_ = {{DNNL_ARG_DST, dst_}};
    srcs_.clear(), slices_.clear(), dins_.clear(), bwd_.clear(), bargs_.clear();
    int64_t c0 = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {
      srcs_.push_back(unbound(mds[k], eng));
      fargs_[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(k)] = srcs_.back();
      const auto sub = dst_md.submemory_desc(to_dnnl(in[k]), {0, c0, 0, 0});
      slices_.push_back(unbound(sub, eng));
      dins_.push_back(unbound(mds[k], eng));
      bwd_.push_back(make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(slices_.back(), dins_.back())));
      bargs_.push_back({{DNNL_ARG_FROM, slices_.back()}, {DNNL_ARG_TO, dins_.back()}});
      c0 += in[k][1];
    }
  }
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    for (std::size_t k = 0; k < in.size(); ++k) bind(srcs_[k], *in[k]);
    bind(dst_, out);
    exec(fwd_, fargs_, fs_);
    wait();
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    for (std::size_t k = 0; k < din.size(); ++k) {
      if (!din[k]) continue;
      bind(slices_[k], dout);  // the slice's offset lives in its descriptor
      bind(dins_[k], *din[k]);
      CRACKSEG_DNNL_CALL(bwd_[k].execute(ctx_->stream, bargs_[k]));
    }
    wait();
  }

 private:
  dnnl::primitive fwd_;
  dnnl::memory fs_, dst_;
  std::vector<dnnl::memory> srcs_, slices_, dins_;
  std::vector<dnnl::primitive> bwd_;
  Args fargs_;
  std::vector<Args> bargs_;
};

}  // namespace

std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Concat>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
