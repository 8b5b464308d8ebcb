// Dropout layer: the mask of src/layers/dropout_mask.hpp computed on the device, recomputed
// in backward from the same StepContext instead of stored (no mask memory; Philox is cheap).
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"

namespace crackseg::cuda {
namespace {

class Dropout final : public CudaLayer {
 public:
  Dropout(const LayerSpec& s, const std::string& name) : CudaLayer(s, name), salt_(name_salt(name)) {}

  void plan(std::span<const Dims> in) override {
    (void)output_dims(in);
    if (in[0][0] > kDropoutInlineIds) ids_.reserve(sizeof(uint64_t) * static_cast<std::size_t>(in[0][0]));
  }

  void apply(const StepContext& ctx, const Tensor& src, Tensor& dst) {
    const float p = as<DropoutSpec>().p;
    if (!ctx.training || p <= 0.0f) {
      CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(dst.raw(), src.raw(), src.nbytes(), cudaMemcpyDeviceToDevice, ctx_.stream()));
      return;
    }
    DropoutArgs a;
    a.seed = ctx.seed;
    a.epoch = ctx.epoch;
    a.salt = salt_;
    a.p = p;
    a.n = src.dim(0);
    if (src.rank() == 4) {
      a.c = src.c(), a.h = src.h(), a.w = src.w();
      a.nhwc = src.format() == Format::nhwc;
    } else {
      a.c = a.n ? src.numel() / a.n : 0, a.h = 1, a.w = 1;
      a.nhwc = false;
    }
    const uint64_t* ids = nullptr;
    DropoutIds inline_ids;
    if (!ctx.sample_ids.empty()) {
      if (ctx.sample_ids.size() < static_cast<std::size_t>(a.n))
        throw Error("dropout '" + name_ + "': StepContext.sample_ids has " + std::to_string(ctx.sample_ids.size()) +
                    " ids but the batch has " + std::to_string(a.n) + " items");
      if (a.n <= kDropoutInlineIds) {  // in the launch arguments: no copy, no stream drain
        inline_ids.count = a.n;
        for (int64_t k = 0; k < a.n; ++k) inline_ids.ids[k] = ctx.sample_ids[static_cast<std::size_t>(k)];
      } else {
        ids_.reserve(sizeof(uint64_t) * static_cast<std::size_t>(a.n));
        // Pageable source: the copy is staged before the call returns, so the span may die.
        CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(ids_.get(), ctx.sample_ids.data(), sizeof(uint64_t) * a.n,
                                            cudaMemcpyHostToDevice, ctx_.stream()));
        ids = ids_.as<uint64_t>();
      }
    }
    dropout_apply(a, inline_ids, ids, src.data<float>(), dst.data<float>());
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    expect_input(*in[0], "input");
    apply(ctx, *in[0], out);
  }
  void backward(const StepContext& ctx, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (din[0]) apply(ctx, dout, *din[0]);  // same mask and scale: the op is linear
  }

 private:
  uint32_t salt_;
  DevicePtr ids_;  // (N) sample ids
};

}  // namespace

std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Dropout>(s, name);
}

}  // namespace crackseg::cuda
