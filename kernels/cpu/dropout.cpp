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
    N_ = d[0];
    L_ = numel(d) / N_;
    C_ = d.size() == 4 ? d[1] : 1;  // nhwc (the backend's 4-D layout): a tile is kTile pixels x C channels
    HW_ = L_ / C_;
    tiles_ = (HW_ + kTile - 1) / kTile;
    mask_ = alloc_buffer({N_ * tiles_ * C_ * 8}, DType::u8, Format::plain);
    ids_.assign(static_cast<std::size_t>(N_), 0);
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
  static constexpr int64_t kTile = DropoutTiles::kTile;
  [[nodiscard]] float scale() const { return dropout_scale(as<DropoutSpec>().p); }
  void forward_masked(const StepContext& ctx, const Tensor& x, Tensor& y) {
    if (C_ > 1 && x.format() != Format::nhwc)
      throw Error("dropout '" + name_ + "': expects nhwc activations (the oneDNN backend's layout), got " +
                  to_string(x.dims()) + " in another format");
    const int64_t N = N_, L = L_, C = C_, HW = HW_, tiles = tiles_;
    for (int64_t n = 0; n < N; ++n) ids_[static_cast<std::size_t>(n)] = dropout_sample_id(ctx, n);  // may throw
    const TileDraw d = tile_draw(ctx, salt_, as<DropoutSpec>().p);
    const float sc = scale();
    uint64_t* words = static_cast<uint64_t*>(mask_.raw());
    const float* xs = x.data<float>();
    float* ys = y.data<float>();
    // layers::dropout_forward
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t p0 = t * kTile, npix = std::min(HW, p0 + kTile) - p0;
        uint64_t* rows = words + (n * tiles + t) * C;
        for (int64_t c = 0; c < C; ++c) rows[c] = dropout_row_bits(d, ids_[static_cast<std::size_t>(n)], c, p0, npix, HW);
        const int64_t b0 = n * L + p0 * C;
        dropout_apply_rows(rows, xs + b0, ys + b0, npix, C, sc);
      }
  }
  void apply(const Tensor& src, Tensor& dst) const {
    const float sc = scale();
    const float* x = src.data<float>();
    float* y = dst.data<float>();
    const auto* words = static_cast<const uint64_t*>(mask_.raw());
    const int64_t N = N_, L = L_, C = C_, HW = HW_, tiles = tiles_;
    // layers::dropout_apply
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t p0 = t * kTile, npix = std::min(HW, p0 + kTile) - p0;
        const int64_t b0 = n * L + p0 * C;
        dropout_apply_rows(words + (n * tiles + t) * C, x + b0, y + b0, npix, C, sc);
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
  int64_t N_ = 0, L_ = 0, C_ = 1, HW_ = 0, tiles_ = 0;
  Tensor mask_;  // N * tiles * C 64-bit words: per tile, one row of kTile bits per channel
  std::vector<uint64_t> ids_;
};

}  // namespace

std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Dropout>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
