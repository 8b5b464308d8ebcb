// oneDNN elementwise sum of all inputs; backward copies dout to each input's gradient.
#include <cstring>

#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {
namespace {

class Add final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  void plan(std::span<const Dims> in) override {
    const auto& eng = ctx_->engine;
    const auto md = act_md(in[0]);
    std::vector<dnnl::memory::desc> mds(in.size(), md);
    std::vector<float> scales(in.size(), 1.0f);
    auto pd = CRACKSEG_DNNL_CALL(dnnl::sum::primitive_desc(md, scales, mds, eng, scratch_attr()));
    fwd_ = make_primitive<dnnl::sum>(pd);
    fs_ = scratch_for(pd);
    dst_ = unbound(md, eng);
    fargs_ = {{DNNL_ARG_DST, dst_}};
    srcs_.clear();
    for (std::size_t k = 0; k < in.size(); ++k) {
      srcs_.push_back(unbound(md, eng));
      fargs_[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(k)] = srcs_.back();
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
    const auto* src = static_cast<const std::byte*>(dout.raw());
    const int64_t bytes = static_cast<int64_t>(dout.nbytes()), chunk = 1 << 16;
    for (Tensor* d : din) {
      if (!d) continue;
      auto* dst = static_cast<std::byte*>(d->raw());
#pragma omp parallel for schedule(static)
      for (int64_t off = 0; off < bytes; off += chunk)
        std::memcpy(dst + off, src + off, static_cast<std::size_t>(std::min(chunk, bytes - off)));
    }
  }

 private:
  dnnl::primitive fwd_;
  dnnl::memory fs_, dst_;
  std::vector<dnnl::memory> srcs_;
  Args fargs_;
};

}  // namespace

std::unique_ptr<Layer> make_add(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Add>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
