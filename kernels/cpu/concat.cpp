// Concat along channels on the CPU backend. With nhwc activations a concat is, per pixel,
// the inputs' channel vectors back to back, so forward and backward are OpenMP copy loops
// ("layers::concat_forward" / "layers::concat_backward"). oneDNN's concat primitive was
// used first; for nhwc with few channels per input (Spiral-Net concatenates 1-channel maps)
// it picked its slow "simple:any" path and cost up to 4% of a training step, so it went.
#include <cstring>

#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {
namespace {

// dst[p*dst_stride + j] = src[p*src_stride + j], j < count, for p < pixels.
inline void copy_channels(float* dst, int64_t dst_stride, const float* src, int64_t src_stride, int64_t count,
                          int64_t pixels) {
#pragma omp parallel for schedule(static) if (pixels * count > 32768)
  for (int64_t p = 0; p < pixels; ++p) {
    float* d = dst + p * dst_stride;
    const float* s = src + p * src_stride;
    if (count >= 16) {
      std::memcpy(d, s, static_cast<std::size_t>(count) * sizeof(float));
    } else {
      for (int64_t j = 0; j < count; ++j) d[j] = s[j];
    }
  }
}

class Concat final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  void plan(std::span<const Dims> in) override {
    chans_.clear();
    for (const Dims& d : in) chans_.push_back(d.size() == 4 ? d[1] : 0);
    in_place_.assign(in.size(), 0);
  }
  // nhwc (this backend's 4-D layout): an input written in place is already in its channels.
  bool can_take_inputs_in_place() const override { return true; }
  void take_input_in_place(std::size_t k) override { in_place_.at(k) = 1; }
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    if (out.format() != Format::nhwc) {
      for (char f : in_place_)
        if (f) throw Error("concat '" + name_ + "': an input was planned in place but the output is not nhwc");
      std::vector<Tensor*> parts;
      for (const Tensor* t : in) parts.push_back(const_cast<Tensor*>(t));
      return generic(in, parts, out, true);
    }
    const int64_t P = out.n() * out.h() * out.w(), Ct = out.c();
    int64_t c0 = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {  // layers::concat_forward
      const int64_t ck = chans_[k];
      if (!in_place_[k]) copy_channels(out.data<float>() + c0, Ct, in[k]->data<float>(), ck, ck, P);
      c0 += ck;
    }
  }
  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (dout.format() != Format::nhwc) return generic(in, din, const_cast<Tensor&>(dout), false);
    const int64_t P = dout.n() * dout.h() * dout.w(), Ct = dout.c();
    int64_t c0 = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {  // layers::concat_backward
      const int64_t ck = chans_[k];  // an in-place input's tensor is the concat itself
      if (din[k]) copy_channels(din[k]->data<float>(), ck, dout.data<float>() + c0, Ct, ck, P);
      c0 += ck;
    }
  }

 private:
  // Any 4-D format through Tensor::offset (not the hot path: this backend is nhwc).
  static void generic(std::span<const Tensor* const> in, std::span<Tensor* const> parts, Tensor& whole,
                      bool to_whole) {
    int64_t c0 = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {
      if (Tensor* part = parts[k])
        for (int64_t n = 0; n < part->n(); ++n)
          for (int64_t c = 0; c < part->c(); ++c)
            for (int64_t h = 0; h < part->h(); ++h)
              for (int64_t w = 0; w < part->w(); ++w) {
                if (to_whole) whole.at(n, c0 + c, h, w) = part->at(n, c, h, w);
                else part->at(n, c, h, w) = whole.at(n, c0 + c, h, w);
              }
      c0 += in[k]->c();
    }
  }

  std::vector<int64_t> chans_;  // each input's channels (from plan: an in-place input's tensor is the concat)
  std::vector<char> in_place_;
};

}  // namespace

std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Concat>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
