// batchnorm2d on the CPU backend. Training: statistics of this call's batch (the
// micro-batch), running mean/var updated PyTorch-style (unbiased variance). Eval: running
// statistics; its backward (rare: frozen BN) is a plain loop.
//
// The kernels are our own (batchnorm_kernels.hpp says why: oneDNN 2.6 cannot fuse
// LeakyReLU into batchnorm and runs 1-channel batchnorm slowly). A following ReLU /
// LeakyReLU (slope > 0) is fused when the Graph offers it: forward writes act(bn(x)) and
// backward recomputes the activation's mask from x with the constants forward used (kept
// here), so the activation costs no memory pass of its own and backward never reads the
// output: whatever follows may overwrite it in place. A dropout after that is fused too when
// the Graph offers it (fuse_dropout): forward draws the dropout node's mask (same salt, same
// bits) and applies it in its apply pass, backward in both of its passes.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/batchnorm_kernels.hpp"
#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/to_bf16.hpp"
#include "src/layers/dropout_mask.hpp"
#include "src/layers/running_stats.hpp"

namespace crackseg::onednn {
namespace {

class BatchNorm2d final : public DnnlLayer {
 public:
  BatchNorm2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c)
      : DnnlLayer(s, n, std::move(c)),
        stats_(std::get<BatchNorm2dSpec>(s).channels, std::get<BatchNorm2dSpec>(s).momentum) {
    const auto C = static_cast<std::size_t>(std::get<BatchNorm2dSpec>(s).channels);
    mean_.assign(C, 0.0), var_.assign(C, 0.0), invstd_.assign(C, 0.0);
    meanf_.assign(C, 0.0f), scale_.assign(C, 0.0f), shift_.assign(C, 0.0f);
  }
  std::vector<std::pair<std::string, Tensor*>> buffers() override {
    return {{name_ + ".running_mean", &stats_.mean()}, {name_ + ".running_var", &stats_.var()}};
  }
  std::size_t batch_stats_size() const override { return stats_.size(); }
  // Backward reads src, the batch statistics, forward's constants and dout only, fused or not.
  bool backward_reads_output() const override { return false; }
  bool fuse_activation(const LayerSpec& act) override {
    if (const auto a = fusable_relu_alpha(act)) act_ = {true, *a};
    return act_.on;
  }
  bool fuse_dropout(const LayerSpec& d, const std::string& name) override {
    const auto* spec = std::get_if<DropoutSpec>(&d);
    if (!spec) return false;
    drop_p_ = spec->p, drop_salt_ = name_salt(name), drop_fused_ = true;
    return true;
  }
  // bf16 activations: where the only readers are bf16 convolutions, forward writes its output
  // rounded to bf16 (what those convolutions would have done to it), half the bytes; where it
  // is the only reader of a bf16 convolution's output, backward writes that convolution's
  // output gradient (its own dx) rounded to bf16 likewise.
  bool can_write_bf16_output() const override { return ctx_->bf16 && avx512bf16_available(); }
  bool can_write_bf16_din() const override { return ctx_->bf16 && avx512bf16_available(); }
  void set_din_bf16() override {
    din_bf16_ = true;
    ctx_->bf16_dins.insert(this);
  }
  void set_output_bf16() override {
    out_bf16_ = true;
    ctx_->bf16_outputs.insert(this);
  }
  ~BatchNorm2d() override { ctx_->bf16_outputs.erase(this), ctx_->bf16_dins.erase(this); }
  void set_defer_running_stats(bool defer) override { stats_.set_defer(defer); }
  void read_batch_stats(std::span<float> dst) const override { stats_.read(dst); }
  void apply_batch_stats(std::span<const float> src) override { stats_.apply(src); }

  void plan(std::span<const Dims> in) override {
    const Dims& d = in[0];
    if (d.size() != 4 || d[1] != as<BatchNorm2dSpec>().channels)
      throw Error("batchnorm2d '" + name_ + "': input " + to_string(d) + " is not (N, " +
                  std::to_string(as<BatchNorm2dSpec>().channels) + ", H, W)");
    shape_ = {d[0] * d[2], d[3], d[1]};
    out_bf16_ = din_bf16_ = false;  // the Graph decides again after every plan
    ctx_->bf16_outputs.erase(this), ctx_->bf16_dins.erase(this);
    work_.reserve(shape_);
    if (drop_fused_) {
      drop_.tiles = DropoutTiles(d[0], d[1], d[2] * d[3]);
      drop_mask_ = alloc_buffer({drop_.tiles.words() * 8}, DType::u8, Format::plain);
      ids_.assign(static_cast<std::size_t>(d[0]), 0);
    }
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    const Tensor& x = *in[0];
    check_layout(x);
    const auto& s = as<BatchNorm2dSpec>();
    const int64_t C = s.channels;
    const float* g = params_[0].value.data<float>();
    const float* b = params_[1].value.data<float>();
    if (!ctx.training) {
      const float* rm = stats_.mean().data<float>();
      const float* rv = stats_.var().data<float>();
      for (int64_t c = 0; c < C; ++c) {
        meanf_[c] = rm[c];
        scale_[c] = static_cast<float>(g[c] / std::sqrt(static_cast<double>(rv[c]) + s.eps));
      }
    } else {
      bn_batch_stats(x.data<float>(), shape_, work_, mean_, var_);
      for (int64_t c = 0; c < C; ++c) {
        invstd_[c] = 1.0 / std::sqrt(var_[c] + s.eps);
        meanf_[c] = static_cast<float>(mean_[c]);
        scale_[c] = static_cast<float>(g[c] * invstd_[c]);
      }
    }
    std::copy(b, b + C, shift_.begin());
    // The fused dropout, as the dropout layer would run it: only in training and for p > 0.
    drop_.words = nullptr;
    if (drop_fused_ && ctx.training && drop_p_ > 0.0f) {
      for (std::size_t n = 0; n < ids_.size(); ++n) ids_[n] = dropout_sample_id(ctx, static_cast<int64_t>(n));
      drop_.words = static_cast<uint64_t*>(drop_mask_.raw());
      drop_.scale = dropout_scale(drop_p_);
      dropout_fill(drop_.tiles, tile_draw(ctx, drop_salt_, drop_p_), ids_, static_cast<uint64_t*>(drop_mask_.raw()));
    }
    if (out_bf16_)
      bn_apply(x.data<float>(), nullptr, shape_, meanf_, scale_, shift_, act_, &drop_, static_cast<uint16_t*>(out.raw()));
    else
      bn_apply(x.data<float>(), out.data<float>(), shape_, meanf_, scale_, shift_, act_, &drop_);
    if (ctx.training) stats_.record(mean_.data(), var_.data(), static_cast<double>(shape_.pixels()));
  }

  void backward(const StepContext& ctx, std::span<const Tensor* const> in, const Tensor& /*out*/, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!ctx.training) return eval_backward(*in[0], dout, din[0]);
    check_layout(*in[0]);
    // Statistics, invstd and the constants are this layer's last training forward's (the
    // Graph runs a layer's backward after its own forward). Without a consumer of dx only the
    // sums run.
    float* dx = din[0] && !din_bf16_ ? din[0]->data<float>() : nullptr;
    uint16_t* dx_bf16 = din[0] && din_bf16_ ? static_cast<uint16_t*>(din[0]->raw()) : nullptr;
    bn_backward(in[0]->data<float>(), dout.data<float>(), dx, shape_, work_, {meanf_, scale_, shift_, &drop_}, invstd_,
                std::span<const float>(params_[0].value.data<float>(), mean_.size()), act_,
                params_[0].grad.data<float>(), params_[1].grad.data<float>(), dx_bf16);
  }

 private:
  void check_layout(const Tensor& x) const {
    if (x.dtype() != DType::f32 || (x.format() != Format::nhwc && shape_.channels != 1) || x.dims()[0] * x.dims()[2] != shape_.rows ||
        x.dims()[3] != shape_.width)
      throw Error("batchnorm2d '" + name_ + "': input " + to_string(x.dims()) +
                  " is not the planned f32 nhwc tensor (this backend's layout)");
  }

  // y = (x - rm) / sqrt(rv + eps) * g + b with constants rm, rv (nhwc: channel fastest).
  // With a fused activation, dout is first multiplied by its derivative (the sign of the
  // pre-activation, recomputed from x as the eval forward computed it).
  void eval_backward(const Tensor& x, const Tensor& dout, Tensor* din) {
    const auto& s = as<BatchNorm2dSpec>();
    const int64_t C = s.channels, P = x.numel() / C;
    const float* xd = x.data<float>();
    const float* dy = dout.data<float>();
    const float* g = params_[0].value.data<float>();
    const float* rm = stats_.mean().data<float>();
    const float* rv = stats_.var().data<float>();
    std::vector<double> sdy(static_cast<std::size_t>(C), 0.0), sdyx(static_cast<std::size_t>(C), 0.0);
    std::vector<float> dx_f32(din && din_bf16_ ? static_cast<std::size_t>(P * C) : 0);  // rounded out below
    float* dx = !din ? nullptr : din_bf16_ ? dx_f32.data() : din->data<float>();
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) {
        const double inv = 1.0 / std::sqrt(double(rv[c]) + s.eps);
        const bool on = bn_pre_activation(xd[p * C + c], meanf_[c], scale_[c], shift_[c]) > 0.0f;
        const double d = act_.on && !on ? dy[p * C + c] * act_.slope : dy[p * C + c];
        sdy[c] += d;
        sdyx[c] += d * (xd[p * C + c] - rm[c]) * inv;
        if (dx) dx[p * C + c] = static_cast<float>(d * g[c] * inv);
      }
    if (din && din_bf16_) f32_to_bf16(dx_f32.data(), static_cast<uint16_t*>(din->raw()), P * C);
    for (int64_t c = 0; c < C; ++c) {
      params_[0].grad.data<float>()[c] += static_cast<float>(sdyx[c]);
      params_[1].grad.data<float>()[c] += static_cast<float>(sdy[c]);
    }
  }

  RunningStats stats_;
  BnShape shape_;
  BnWork work_;
  BnAct act_;
  std::vector<double> mean_, var_, invstd_;  // the last training forward's batch statistics
  std::vector<float> meanf_, scale_, shift_;  // per call: y = act((x - mean) * scale + shift)
  bool out_bf16_ = false;  // output buffer is bf16 (set_output_bf16)
  bool din_bf16_ = false;  // input gradient buffer is bf16 (set_din_bf16)
  // A fused dropout (fuse_dropout): its rate and salt, the mask of the last training forward.
  bool drop_fused_ = false;
  float drop_p_ = 0.0f;
  uint32_t drop_salt_ = 0;
  BnDropout drop_;  // words == null: no dropout in the last forward
  Tensor drop_mask_;
  std::vector<uint64_t> ids_;
};

}  // namespace

std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<BatchNorm2d>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
