// Inverted dropout on the CPU backend: OpenMP loops (Debian's Kokkos is Serial-only, so
// threads come from OpenMP here), regions "layers::dropout_forward" / "layers::dropout_apply".
// The mask follows src/layers/dropout_mask.hpp bit for bit, laid out and drawn as
// dropout_tiles.hpp describes. Forward writes the mask and the output in one tiled pass;
// backward reuses the mask. After a batchnorm (+ activation) the Graph fuses dropout into
// that batchnorm instead (batchnorm2d.cpp), and this layer does not run.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/dropout_tiles.hpp"
#include "src/layers/dropout_mask.hpp"

namespace crackseg::onednn {
namespace {

class Dropout final : public DnnlLayer {
 public:
  Dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c)
      : DnnlLayer(s, n, std::move(c)), salt_(name_salt(n)) {}

  // In place (memory, Graph plan): forward is elementwise (y = m ? x * scale : 0, read
  // before written), backward reads only the mask, and a kept element keeps its sign
  // (scale > 0) while a dropped one gets gradient exactly 0.
  bool runs_in_place() const override { return true; }
  bool backward_reads_output() const override { return false; }
  bool keeps_sign_where_grad_flows() const override { return true; }

  void plan(std::span<const Dims> in) override {
    const Dims& d = in[0];
    const int64_t C = d.size() == 4 ? d[1] : 1;  // nhwc (the backend's 4-D layout): a tile is kTile pixels x C channels
    tiles_ = DropoutTiles(d[0], C, numel(d) / d[0] / C);
    mask_ = alloc_buffer({tiles_.words() * 8}, DType::u8, Format::plain);
    ids_.assign(static_cast<std::size_t>(d[0]), 0);
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    const float p = as<DropoutSpec>().p;
    active_ = ctx.training && p > 0.0f;
    if (!active_) return copy(*in[0], out);
    forward_masked(ctx, *in[0], out);
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    if (!active_) return copy(dout, *din[0]);
    apply(dout, *din[0]);  // same mask and scale: the op is linear
  }

 private:
  // Forward: mask generation and application fused per tile, so every write is local.
  // nhwc: a tile is kTile pixels x all C channels; other layouts: logical = memory (C = 1).
  [[nodiscard]] float scale() const { return dropout_scale(as<DropoutSpec>().p); }
  void forward_masked(const StepContext& ctx, const Tensor& x, Tensor& y) {
    if (tiles_.C > 1 && x.format() != Format::nhwc)
      throw Error("dropout '" + name_ + "': expects nhwc activations (the oneDNN backend's layout), got " +
                  to_string(x.dims()) + " in another format");
    for (int64_t n = 0; n < tiles_.N; ++n) ids_[static_cast<std::size_t>(n)] = dropout_sample_id(ctx, n);  // may throw
    const TileDraw d = tile_draw(ctx, salt_, as<DropoutSpec>().p);
    const float sc = scale();
    const DropoutTiles& s = tiles_;
    uint64_t* words = static_cast<uint64_t*>(mask_.raw());
    const float* xs = x.data<float>();
    float* ys = y.data<float>();
    // layers::dropout_forward
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t t = 0; t < s.tiles; ++t) {
        const uint64_t* rows = dropout_fill_tile(s, d, ids_[static_cast<std::size_t>(n)], n, t, words);
        const int64_t b0 = (n * s.HW + DropoutTiles::first_pixel(t)) * s.C;
        dropout_apply_rows(rows, xs + b0, ys + b0, s.pixels(t), s.C, sc);
      }
  }
  void apply(const Tensor& src, Tensor& dst) const {
    const float sc = scale();
    const float* x = src.data<float>();
    float* y = dst.data<float>();
    const auto* words = static_cast<const uint64_t*>(mask_.raw());
    const DropoutTiles& s = tiles_;
    // layers::dropout_apply
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t t = 0; t < s.tiles; ++t) {
        const int64_t b0 = (n * s.HW + DropoutTiles::first_pixel(t)) * s.C;
        dropout_apply_rows(DropoutTiles::rows(words, s, n, t), x + b0, y + b0, s.pixels(t), s.C, sc);
      }
  }
  static void copy(const Tensor& src, Tensor& dst) {
    if (src.raw() == dst.raw()) return;
    const int64_t bytes = static_cast<int64_t>(src.nbytes()), chunk = 1 << 16;
    const auto* s = static_cast<const std::byte*>(src.raw());
    auto* d = static_cast<std::byte*>(dst.raw());
#pragma omp parallel for schedule(static)
    for (int64_t off = 0; off < bytes; off += chunk)
      std::memcpy(d + off, s + off, static_cast<std::size_t>(std::min(chunk, bytes - off)));
  }

  uint32_t salt_;
  bool active_ = false;
  DropoutTiles tiles_;
  Tensor mask_;  // tiles_.words() 64-bit words: per tile, one row of kTile bits per channel
  std::vector<uint64_t> ids_;
};

}  // namespace

std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Dropout>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
