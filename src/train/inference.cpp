#include "src/train/inference.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "src/core/error.hpp"
#include "src/train/patch_dense.hpp"

namespace crackseg::train {

namespace {
int reflect(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}
// Symmetric (MATLAB 'symmetric', OpenCV BORDER_REFLECT: "cba|abc"), as io::PatchSampler pads.
int symmetric(int i, int n) {
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}
float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
}  // namespace

namespace {
// (H, W, 3) -> (H2, W2, 3) with the image's pixel (0, 0) at (top, left); outside pixels come
// from `fold` (reflect or symmetric) applied per axis.
std::vector<float> pad_image(const float* image, int H, int W, int top, int left, int H2, int W2, int (*fold)(int, int)) {
  std::vector<float> out(static_cast<std::size_t>(H2) * W2 * 3);
  for (int y = 0; y < H2; ++y) {
    const int sy = fold(y - top, H);
    for (int x = 0; x < W2; ++x) {
      const int sx = fold(x - left, W);
      std::memcpy(&out[(static_cast<std::size_t>(y) * W2 + x) * 3], &image[(static_cast<std::size_t>(sy) * W + sx) * 3],
                  3 * sizeof(float));
    }
  }
  return out;
}
}  // namespace

std::vector<float> reflect_pad(const float* image, int H, int W, int H2, int W2) {
  return pad_image(image, H, W, 0, 0, H2, W2, reflect);
}

InferenceOptions inference_options(const nlohmann::json& cfg) {
  const auto& ev = cfg.at("eval");
  InferenceOptions o;
  o.tile = static_cast<int>(ev.at("tile").get<int64_t>());
  o.patch_mode = ev.at("patch_mode").get<std::string>();
  const int64_t eb = ev.at("batch").get<int64_t>();
  o.batch = static_cast<int>(eb > 0 ? eb : cfg.at("train").at("micro_batch").get<int64_t>());
  return o;
}

Predictor::Predictor(Model& model, InferenceOptions opt) : model_(model), opt_(std::move(opt)) {
  if (opt_.batch < 1) opt_.batch = 1;
  if (opt_.patch_mode != "auto" && opt_.patch_mode != "dense" && opt_.patch_mode != "patch")
    throw InputError("eval.patch_mode='" + opt_.patch_mode + "' is not one of: auto, dense, patch");
  if (opt_.patch_mode == "auto" && model_.output == Model::Output::patch)
    opt_.patch_mode = PatchGeometry::of(model_).context && model_.graph.backend() &&
                               model_.graph.backend()->device() == Device::cpu
                           ? "dense"
                           : "patch";  // the dense path runs on CPU backends
}

Predictor::~Predictor() = default;

std::vector<float> Predictor::predict(const float* image, int H, int W) {
  switch (model_.output) {
    case Model::Output::patch:
      if (opt_.patch_mode == "patch") return predict_patches(image, H, W);
      if (!dense_) dense_ = std::make_unique<DensePatchPredictor>(model_);
      return dense_->predict(image, H, W);
    default: break;
  }
  if (model_.size_rule.kind == SizeRule::Kind::pow2_minus1) return predict_tiled(image, H, W);
  return predict_whole(image, H, W);
}

const Tensor& Predictor::on_host(const Tensor& t) {
  if (t.device() == Device::cpu) return t;
  // A device backend's output: one download through the backend's copy hook.
  if (!host_out_.defined() || host_out_.dims() != t.dims() || host_out_.format() != t.format())
    host_out_ = Tensor::empty(t.dims(), DType::f32, t.format());
  model_.graph.backend()->copy(t, host_out_);
  return host_out_;
}

void Predictor::probabilities(const Tensor& batch, std::vector<float>& out) {
  const int64_t n = batch.n(), h = batch.h(), w = batch.w();
  ids_.assign(static_cast<std::size_t>(n), 0);
  StepContext ctx;
  ctx.training = false;
  ctx.sample_ids = ids_;
  const Tensor& y = on_host(model_.graph.forward(ctx, batch));
  out.resize(static_cast<std::size_t>(n * h * w));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t yy = 0; yy < h; ++yy)
      for (int64_t xx = 0; xx < w; ++xx) {
        float p;
        if (model_.output == Model::Output::softmax2) {
          const float a = y.at(i, 0, yy, xx), b = y.at(i, 1, yy, xx);
          p = 1.0f / (1.0f + std::exp(a - b));
        } else {
          p = sigmoid(y.at(i, 0, yy, xx));
        }
        out[static_cast<std::size_t>((i * h + yy) * w + xx)] = p;
      }
}

std::vector<float> Predictor::predict_whole(const float* image, int H, int W) {
  const int H2 = static_cast<int>(model_.size_rule.at_least(H)), W2 = static_cast<int>(model_.size_rule.at_least(W));
  std::vector<float> padded;
  const float* src = image;
  if (H2 != H || W2 != W) {
    padded = reflect_pad(image, H, W, H2, W2);
    src = padded.data();
  }
  Tensor x = Tensor::empty({1, 3, H2, W2}, DType::f32, Format::nhwc);
  std::memcpy(x.raw(), src, x.nbytes());
  std::vector<float> p;
  probabilities(x, p);
  std::vector<float> out(static_cast<std::size_t>(H) * W);
  for (int y = 0; y < H; ++y) std::memcpy(&out[static_cast<std::size_t>(y) * W], &p[static_cast<std::size_t>(y) * W2], W * sizeof(float));
  return out;
}

std::vector<float> Predictor::predict_tiled(const float* image, int H, int W) {
  const int T = opt_.tile;
  if (!model_.size_rule.valid(T))
    throw InputError("eval.tile=" + std::to_string(T) + " is not a valid input size of " + model_.name + ": " +
                     model_.size_rule.describe());
  const int H2 = std::max(H, T), W2 = std::max(W, T);
  std::vector<float> padded;
  const float* src = image;
  if (H2 != H || W2 != W) {
    padded = reflect_pad(image, H, W, H2, W2);
    src = padded.data();
  }
  // Tile origins: stride T/2, the last tile flush with the border.
  auto origins = [&](int n) {
    std::vector<int> o;
    const int stride = std::max(1, T / 2);
    for (int v = 0;; v += stride) {
      if (v + T >= n) {
        o.push_back(n - T);
        break;
      }
      o.push_back(v);
    }
    return o;
  };
  const auto oy = origins(H2), ox = origins(W2);
  std::vector<std::pair<int, int>> tiles;
  for (int y : oy)
    for (int x : ox) tiles.emplace_back(y, x);
  std::vector<double> sum(static_cast<std::size_t>(H2) * W2, 0.0);
  std::vector<uint16_t> cnt(sum.size(), 0);
  std::vector<float> p;
  for (std::size_t t0 = 0; t0 < tiles.size(); t0 += static_cast<std::size_t>(opt_.batch)) {
    const int n = static_cast<int>(std::min<std::size_t>(opt_.batch, tiles.size() - t0));
    Tensor x = Tensor::empty({n, 3, T, T}, DType::f32, Format::nhwc);
    float* d = x.data<float>();
    for (int i = 0; i < n; ++i) {
      const auto [ty, tx] = tiles[t0 + static_cast<std::size_t>(i)];
      for (int y = 0; y < T; ++y)
        std::memcpy(d + ((static_cast<std::size_t>(i) * T + y) * T) * 3, src + (static_cast<std::size_t>(ty + y) * W2 + tx) * 3,
                    static_cast<std::size_t>(T) * 3 * sizeof(float));
    }
    probabilities(x, p);
    for (int i = 0; i < n; ++i) {
      const auto [ty, tx] = tiles[t0 + static_cast<std::size_t>(i)];
      for (int y = 0; y < T; ++y)
        for (int xx = 0; xx < T; ++xx) {
          const std::size_t o = static_cast<std::size_t>(ty + y) * W2 + tx + xx;
          sum[o] += p[(static_cast<std::size_t>(i) * T + y) * T + xx];
          ++cnt[o];
        }
    }
  }
  std::vector<float> out(static_cast<std::size_t>(H) * W);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const std::size_t o = static_cast<std::size_t>(y) * W2 + x;
      out[static_cast<std::size_t>(y) * W + x] = static_cast<float>(sum[o] / cnt[o]);
    }
  return out;
}

std::vector<float> Predictor::predict_patches(const float* image, int H, int W) {
  // One patch per pixel through the whole network, exactly as in training (~4.4 M
  // multiply-adds per pixel for h=13, 5.2 M with context); the patch is cut from the symmetric-padded image as
  // io::PatchSampler cuts it.
  const PatchGeometry geo = PatchGeometry::of(model_);
  const int side = geo.side, K = geo.window();
  const std::vector<float> centred =
      pad_image(image, H, W, geo.before, geo.before, H + side - 1, W + side - 1, symmetric);
  const int PW = W + side - 1;
  PatchVotes votes(H, W, geo.s);
  const int B = std::max(opt_.batch, 256);
  const int64_t total = static_cast<int64_t>(H) * W;
  ids_.assign(static_cast<std::size_t>(B), 0);
  Tensor x;
  for (int64_t p0 = 0; p0 < total; p0 += B) {
    const int n = static_cast<int>(std::min<int64_t>(B, total - p0));
    if (!x.defined() || x.n() != n) x = Tensor::empty({n, 3, side, side}, DType::f32, Format::nhwc);
    float* d = x.data<float>();
    for (int i = 0; i < n; ++i) {
      const int py = static_cast<int>((p0 + i) / W), px = static_cast<int>((p0 + i) % W);
      for (int y = 0; y < side; ++y)
        std::memcpy(d + ((static_cast<std::size_t>(i) * side + y) * side) * 3,
                    &centred[(static_cast<std::size_t>(py + y) * PW + px) * 3], static_cast<std::size_t>(side) * 3 * sizeof(float));
    }
    StepContext ctx;
    ctx.training = false;
    ctx.sample_ids = std::span<const uint64_t>(ids_.data(), static_cast<std::size_t>(n));
    const Tensor& y = on_host(model_.graph.forward(ctx, x));
    const float* o = y.data<float>();
    for (int i = 0; i < n; ++i)
      votes.add(static_cast<int>((p0 + i) / W), static_cast<int>((p0 + i) % W), o + static_cast<std::size_t>(i) * K);
  }
  return votes.probabilities();
}

}  // namespace crackseg::train
