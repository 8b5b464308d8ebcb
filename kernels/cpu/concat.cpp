// Concat along channels on the CPU backend. With nhwc activations a concat is, per pixel,
// the inputs' channel vectors back to back, so forward and backward are OpenMP copy loops
// ("layers::concat_forward" / "layers::concat_backward"). oneDNN's concat primitive was
// used first; for nhwc with few channels per input (Spiral-Net concatenates 1-channel maps)
// it picked its slow "simple:any" path and cost up to 4% of a training step, so it went.
// With train.precision = "bf16", a concat whose only readers are bf16 convolutions (the
// U-Net decoders' first convs) stores its output as bf16 (Layer::set_output_bf16): the copy
// rounds each value with the rule and instruction those convolutions' own conversion uses
// (to_bf16.hpp), so they read the bits they would have made, and neither an fp32 concat nor
// its separate bf16 copy is kept. An up-conv that writes into the concat in place (Graph
// plan) rounds its own channels the same way.
#include <algorithm>
#include <cstring>
#include <span>

#include "kernels/cpu/concat_maps.hpp"
#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/to_bf16.hpp"

namespace crackseg::onednn {
namespace {

// One pass over the pixels in tiles: per tile, every part's channels are copied between
// their own dense tensor and their slice of the concatenated one, so the concatenated
// tensor's cache lines are touched once (not once per input: Spiral-Net's head concatenates
// seven 1-channel maps, and a pass per input cost 7x the memory traffic).
// tile(p0, p1) per tile of pixels, threads over tiles; for_tiles calls copy(k, part_k, p0, p1)
// per tile and non-null part.
constexpr int64_t kTile = 256;  // pixels per tile
template <class Tile>
inline void each_tile(int64_t Ct, int64_t pixels, Tile&& tile) {
  const int64_t tiles = (pixels + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (pixels * Ct > 32768)
  for (int64_t t = 0; t < tiles; ++t) tile(t * kTile, std::min(pixels, t * kTile + kTile));
}
template <class Copy>
inline void for_tiles(int64_t Ct, std::span<float* const> parts, int64_t pixels, Copy&& copy) {
  each_tile(Ct, pixels, [&](int64_t p0, int64_t p1) {
    for (std::size_t k = 0; k < parts.size(); ++k)
      if (parts[k]) copy(k, parts[k], p0, p1);
  });
}

// Whether every part is a 1-channel map, present, and there are at most kMapsMax of them
// (Spiral-Net's concats): concat_maps.hpp moves them 16 pixels at a time.
inline bool all_maps(int64_t Ct, std::span<float* const> parts, std::span<const int64_t> chans) {
  if (Ct != static_cast<int64_t>(parts.size()) || Ct > kMapsMax || !concat_maps_available()) return false;
  for (std::size_t k = 0; k < parts.size(); ++k)
    if (!parts[k] || chans[k] != 1) return false;
  return true;
}

// to_whole: whole[p*Ct + c0_k + j] = part_k[p*ck + j]; else the reverse. A null part skips.
inline void copy_tiles(float* whole, int64_t Ct, std::span<float* const> parts, std::span<const int64_t> chans,
                       std::span<const int64_t> first, int64_t pixels, bool to_whole) {
  if (all_maps(Ct, parts, chans)) {
    each_tile(Ct, pixels, [&](int64_t p0, int64_t p1) {
      if (to_whole)
        maps_to_whole(whole, parts.data(), Ct, p0, p1);
      else
        whole_to_maps(whole, parts.data(), Ct, p0, p1);
    });
    return;
  }
  for_tiles(Ct, parts, pixels, [&](std::size_t k, float* part, int64_t p0, int64_t p1) {
    const int64_t ck = chans[k];
    float* w = whole + first[k];
    if (ck == 1) {
      if (to_whole) for (int64_t p = p0; p < p1; ++p) w[p * Ct] = part[p];
      else for (int64_t p = p0; p < p1; ++p) part[p] = w[p * Ct];
    } else if (ck >= 16) {
      for (int64_t p = p0; p < p1; ++p) {
        if (to_whole) std::memcpy(w + p * Ct, part + p * ck, static_cast<std::size_t>(ck) * sizeof(float));
        else std::memcpy(part + p * ck, w + p * Ct, static_cast<std::size_t>(ck) * sizeof(float));
      }
    } else {
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t j = 0; j < ck; ++j) {
          if (to_whole) w[p * Ct + j] = part[p * ck + j];
          else part[p * ck + j] = w[p * Ct + j];
        }
    }
  });
}

// The bf16 form of copy_tiles' forward: whole16[p*Ct + c0_k + j] = bf16(part_k[p*ck + j]).
inline void copy_tiles_bf16(uint16_t* whole, int64_t Ct, std::span<float* const> parts,
                            std::span<const int64_t> chans, std::span<const int64_t> first, int64_t pixels) {
  if (all_maps(Ct, parts, chans)) {  // (the caller checked avx512bf16_available())
    each_tile(Ct, pixels, [&](int64_t p0, int64_t p1) { maps_to_whole_bf16(whole, parts.data(), Ct, p0, p1); });
    return;
  }
  for_tiles(Ct, parts, pixels, [&](std::size_t k, const float* part, int64_t p0, int64_t p1) {
    const int64_t ck = chans[k];
    uint16_t* w = whole + first[k];
    if (ck == Ct) {  // a single input: one run
      f32_to_bf16_serial(part + p0 * ck, w + p0 * Ct, (p1 - p0) * ck);
    } else if (ck < 16) {
      // Few channels (Spiral-Net's 1-channel maps): the tile's part is one contiguous run, so
      // it is rounded in one call into a local buffer and then spread over the pixels (a call
      // per pixel cost 3x the fp32 concat: 11.8 against 3.9 ms per Spiral-Net step).
      uint16_t buf[kTile * 16];
      f32_to_bf16_serial(part + p0 * ck, buf, (p1 - p0) * ck);
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t j = 0; j < ck; ++j) w[p * Ct + j] = buf[(p - p0) * ck + j];
    } else {
      for (int64_t p = p0; p < p1; ++p) f32_to_bf16_serial(part + p * ck, w + p * Ct, ck);
    }
  });
}

class Concat final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  ~Concat() override { ctx_->bf16_outputs.erase(this); }
  // bf16 output: only where our own rounding loop runs (it is what the reading convolutions'
  // ToBf16 uses then) and for the nhwc tensors this backend plans.
  bool can_write_bf16_output() const override { return ctx_->bf16 && avx512bf16_available() && four_d_; }
  void set_output_bf16() override {
    out_bf16_ = true;
    ctx_->bf16_outputs.insert(this);
  }
  void plan(std::span<const Dims> in) override {
    out_bf16_ = false;
    ctx_->bf16_outputs.erase(this);
    four_d_ = !in.empty() && std::all_of(in.begin(), in.end(), [](const Dims& d) { return d.size() == 4; });
    chans_.clear();
    first_.clear();
    int64_t c0 = 0;
    for (const Dims& d : in) {
      chans_.push_back(d.size() == 4 ? d[1] : 0);
      first_.push_back(c0);
      c0 += chans_.back();
    }
    in_place_.assign(in.size(), 0);
    parts_.assign(in.size(), nullptr);
  }
  // nhwc (this backend's 4-D layout): an input written in place is already in its channels.
  bool can_take_inputs_in_place() const override { return true; }
  void take_input_in_place(std::size_t k) override { in_place_.at(k) = 1; }
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    if (out_bf16_) {
      if (out.dtype() != DType::bf16 || out.format() != Format::nhwc)
        throw Error("concat '" + name_ + "': output " + to_string(out.dims()) + " is not the planned bf16 nhwc tensor");
      for (std::size_t k = 0; k < in.size(); ++k)  // an in-place input wrote its rounded channels itself
        parts_[k] = in_place_[k] ? nullptr : const_cast<float*>(in[k]->data<float>());
      copy_tiles_bf16(static_cast<uint16_t*>(out.raw()), out.c(), parts_, chans_, first_, out.n() * out.h() * out.w());
      return;
    }
    if (out.format() != Format::nhwc) {
      for (char f : in_place_)
        if (f) throw Error("concat '" + name_ + "': an input was planned in place but the output is not nhwc");
      std::vector<Tensor*> parts;
      for (const Tensor* t : in) parts.push_back(const_cast<Tensor*>(t));
      return generic(in, parts, out, true);
    }
    for (std::size_t k = 0; k < in.size(); ++k)  // layers::concat_forward
      parts_[k] = in_place_[k] ? nullptr : const_cast<float*>(in[k]->data<float>());
    copy_tiles(out.data<float>(), out.c(), parts_, chans_, first_, out.n() * out.h() * out.w(), true);
  }
  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (dout.format() != Format::nhwc) return generic(in, din, const_cast<Tensor&>(dout), false);
    for (std::size_t k = 0; k < in.size(); ++k)  // layers::concat_backward
      parts_[k] = din[k] ? din[k]->data<float>() : nullptr;  // an in-place input's din is its own slot
    copy_tiles(const_cast<float*>(dout.data<float>()), dout.c(), parts_, chans_, first_,
               dout.n() * dout.h() * dout.w(), false);
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
  std::vector<int64_t> first_;  // each input's first channel in the concat
  std::vector<char> in_place_;
  std::vector<float*> parts_;   // per call: the dense tensors to copy (null: skip)
  bool four_d_ = false;         // planned with 4-D inputs (nhwc here)
  bool out_bf16_ = false;       // output buffer is bf16 (set_output_bf16)
};

}  // namespace

std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Concat>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
