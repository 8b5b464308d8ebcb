#include "kernels/cuda/labelled_layer.hpp"

#include <nvtx3/nvToolsExt.h>

namespace crackseg::cuda {

NvtxRange::NvtxRange(const char* label) { nvtxRangePushA(label); }
NvtxRange::~NvtxRange() { nvtxRangePop(); }

namespace {

class Labelled final : public Layer {
 public:
  Labelled(std::unique_ptr<Layer> inner, const std::string& name)
      : inner_(std::move(inner)),
        plan_(kind_name(inner_->spec()) + " " + name + " plan"),
        fwd_(kind_name(inner_->spec()) + " " + name + " forward"),
        bwd_(kind_name(inner_->spec()) + " " + name + " backward") {}
  const LayerSpec& spec() const override { return inner_->spec(); }
  Dims output_dims(std::span<const Dims> in) const override { return inner_->output_dims(in); }
  void plan(std::span<const Dims> in) override {
    NvtxRange r(plan_.c_str());
    inner_->plan(in);
  }
  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    NvtxRange r(fwd_.c_str());
    inner_->forward(ctx, in, out);
  }
  void backward(const StepContext& ctx, std::span<const Tensor* const> in, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    NvtxRange r(bwd_.c_str());
    inner_->backward(ctx, in, out, dout, din);
  }
  std::vector<Param*> params() override { return inner_->params(); }
  std::vector<std::pair<std::string, Tensor*>> buffers() override { return inner_->buffers(); }
  bool fuse_activation(const LayerSpec& a) override { return inner_->fuse_activation(a); }
  void params_changed() override { inner_->params_changed(); }
  // Every Layer hook must be forwarded (a missing one silently takes the no-op default).
  std::size_t batch_stats_size() const override { return inner_->batch_stats_size(); }
  void set_defer_running_stats(bool defer) override { inner_->set_defer_running_stats(defer); }
  void read_batch_stats(std::span<float> dst) const override { inner_->read_batch_stats(dst); }
  void apply_batch_stats(std::span<const float> src) override { inner_->apply_batch_stats(src); }

 private:
  std::unique_ptr<Layer> inner_;
  std::string plan_, fwd_, bwd_;
};

}  // namespace

std::unique_ptr<Layer> labelled(std::unique_ptr<Layer> inner, const std::string& name) {
  return std::make_unique<Labelled>(std::move(inner), name);
}

}  // namespace crackseg::cuda
