#include "src/train/patch_dense.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "src/core/error.hpp"
#include "src/graph/layer.hpp"

namespace crackseg::train {

namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Symmetric fold ("cba|abc"), as io::PatchSampler pads training patches.
int symmetric(int i, int n) {
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

int round_up4(int64_t v) { return static_cast<int>((v + 3) / 4 * 4); }

// 2x2 max pooling at all four offsets: (n, C, Hi, Wi) -> (4n, C, Ho, Wo) nhwc, phase
// (py, px) of input item b at output item 4b + 2py + px:
//   out(4b + 2py + px, c, K, L) = max over dy, dx in {0, 1} of in(b, c, py + 2K + dy, px + 2L + dx).
Tensor pool_phases(const Tensor& in_any, int64_t Ho, int64_t Wo) {
  const Tensor in = in_any.format() == Format::nhwc ? in_any : in_any.to_format(Format::nhwc);
  const int64_t n = in.n(), C = in.c(), Hi = in.h(), Wi = in.w();
  if (2 * Ho + 1 > Hi || 2 * Wo + 1 > Wi) throw Error("pool_phases: input too small");
  Tensor out = Tensor::empty({4 * n, C, Ho, Wo}, DType::f32, Format::nhwc);
  const float* src = in.data<float>();
  float* dst = out.data<float>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t q = 0; q < 4 * n; ++q)
    for (int64_t K = 0; K < Ho; ++K) {
      const int64_t b = q / 4, py = (q / 2) % 2, px = q % 2;
      for (int64_t L = 0; L < Wo; ++L) {
        const int64_t y = py + 2 * K, x = px + 2 * L;
        const float* a = src + ((b * Hi + y) * Wi + x) * C;
        const float* r = a + Wi * C;
        float* o = dst + ((q * Ho + K) * Wo + L) * C;
        for (int64_t c = 0; c < C; ++c) o[c] = std::max(std::max(a[c], a[C + c]), std::max(r[c], r[C + c]));
      }
    }
  return out;
}

// Widths of src/models/patch_cnn.cpp (stage 1 and 2 convolutions, FC layers).
constexpr int64_t kC1 = 16, kC2 = 32, kFc = 64;

Conv2dSpec valid_conv(int64_t in_c, int64_t out_c, int64_t k) {
  return Conv2dSpec{.in_c = in_c, .out_c = out_c, .kernel = k, .stride = 1, .padding = 0};
}

// Copies the model's parameters into `g` by name (FC weights (O, C*H*W) become conv weights
// (O, C, H, W): the same floats, Flatten orders (c, h, w)).
void copy_weights(Graph& model, Graph& g) {
  std::map<std::string, Param*> by_name;
  for (Param* p : model.params()) by_name[p->name] = p;
  Backend& be = *g.backend();
  for (Param* p : g.params()) {
    const auto it = by_name.find(p->name);
    if (it == by_name.end()) throw Error("dense patch inference: the model has no parameter '" + p->name + "'");
    const Tensor& src = it->second->value;
    if (src.numel() != p->value.numel() || src.device() != Device::cpu)
      throw Error("dense patch inference: parameter '" + p->name + "' does not fit (" + std::to_string(src.numel()) +
                  " vs " + std::to_string(p->value.numel()) + " values, or not on the CPU)");
    const Tensor host = Tensor::wrap(const_cast<void*>(src.raw()), p->value.dims(), DType::f32, Format::plain);
    be.upload(host, p->value);
  }
  g.mark_params_changed();
}

}  // namespace

PatchVotes::PatchVotes(int H, int W, int s)
    : H_(H), W_(W), s_(s), sum_(static_cast<std::size_t>(H) * W, 0.0), count_(sum_.size(), 0) {}

void PatchVotes::add(int y, int x, const float* logits, int64_t stride) {
  const int side = 2 * s_ + 1;
  for (int k = 0; k < side * side; ++k) {
    const int yy = y + k / side - s_, xx = x + k % side - s_;
    if (yy < 0 || yy >= H_ || xx < 0 || xx >= W_) continue;
    const std::size_t q = static_cast<std::size_t>(yy) * W_ + xx;
    sum_[q] += sigmoid(logits[k * stride]);
    ++count_[q];
  }
}

std::vector<float> PatchVotes::probabilities() const {
  std::vector<float> out(sum_.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = count_[i] ? static_cast<float>(sum_[i] / count_[i]) : 0.0f;
  return out;
}

PatchGeometry PatchGeometry::of(const Model& model) {
  PatchGeometry g;
  g.h = static_cast<int>(model.config.value("h", int64_t{13}));
  g.s = static_cast<int>(model.config.value("s", int64_t{2}));
  g.p2 = g.h / 2;
  g.context = model.config.value("padding", std::string("same")) == "context";
  g.side = g.context ? 4 * g.p2 + 12 : 2 * g.h + 1;
  g.before = g.context ? g.h + 6 : g.h;
  return g;
}

double PatchGeometry::dense_macs_per_pixel() const {
  return 9.0 * static_cast<double>(3 * kC1 + kC1 * kC1 + kC1 * kC2 + kC2 * kC2) +
         static_cast<double>(kC2 * p2 * p2 * kFc + kFc * kFc + kFc * window());
}

DensePatchPredictor::DensePatchPredictor(Model& model, int64_t band_pixels)
    : geo_(PatchGeometry::of(model)), band_pixels_(std::max<int64_t>(band_pixels, 16)) {
  if (model.output != Model::Output::patch) throw Error("DensePatchPredictor: " + model.name + " is not a patch model");
  Backend* be = model.graph.backend();
  if (!be) throw Error("DensePatchPredictor: the model is not instantiated");
  if (!geo_.context)
    throw InputError("eval.patch_mode=dense needs a patch CNN trained with model.padding=\"context\"; this one ('" +
                     model.summary() + "') zero-pads every patch, so it is predicted patch by patch (eval.patch_mode=patch)");
  if (be->device() != Device::cpu)
    throw InputError("eval.patch_mode=dense runs on CPU backends; use eval.patch_mode=patch on " + be->name());
  // Mirrors src/models/patch_cnn.cpp's node names so weights copy by name.
  NodeId x = convs1_.input();
  x = convs1_.add("conv1_1", valid_conv(3, kC1, 3), {x});
  x = convs1_.add("conv1_1.relu", ReluSpec{}, {x});
  x = convs1_.add("conv1_2", valid_conv(kC1, kC1, 3), {x});
  convs1_.set_output(convs1_.add("conv1_2.relu", ReluSpec{}, {x}));
  x = convs2_.input();
  x = convs2_.add("conv2_1", valid_conv(kC1, kC2, 3), {x});
  x = convs2_.add("conv2_1.relu", ReluSpec{}, {x});
  x = convs2_.add("conv2_2", valid_conv(kC2, kC2, 3), {x});
  convs2_.set_output(convs2_.add("conv2_2.relu", ReluSpec{}, {x}));
  x = head_.input();
  x = head_.add("fc1", valid_conv(kC2, kFc, geo_.p2), {x});
  x = head_.add("fc1.relu", ReluSpec{}, {x});
  x = head_.add("fc2", valid_conv(kFc, kFc, 1), {x});
  x = head_.add("fc2.relu", ReluSpec{}, {x});
  head_.set_output(head_.add("fc3", valid_conv(kFc, geo_.window(), 1), {x}));
  for (Graph* g : {&convs1_, &convs2_, &head_}) {
    g->instantiate(*be, 0);
    copy_weights(model.graph, *g);
  }
}

DensePatchPredictor::~DensePatchPredictor() = default;

std::vector<float> DensePatchPredictor::predict(const float* image, int H, int W) {
  const int P2 = geo_.p2, Wp = round_up4(W);
  // Every band has the same height R (a multiple of 4) so the graphs plan once; rows past
  // the image are computed on folded context and dropped.
  const int R = std::min(round_up4(H), std::max(4, round_up4(band_pixels_ / Wp)));
  const int R4 = R / 4, W4 = Wp / 4;
  const int in_h = R + 4 * P2 + 11, in_w = Wp + 4 * P2 + 11;
  PatchVotes votes(H, W, geo_.s);
  Tensor x = Tensor::empty({1, 3, in_h, in_w}, DType::f32, Format::nhwc);
  std::vector<uint64_t> ids(16, 0);
  StepContext ctx;
  ctx.training = false;
  const int K = geo_.window();
  for (int y0 = 0; y0 < H; y0 += R) {
    float* d = x.data<float>();
    for (int a = 0; a < in_h; ++a) {
      const int sy = symmetric(y0 - geo_.before + a, H);
      for (int b = 0; b < in_w; ++b) {
        const int sx = symmetric(b - geo_.before, W);
        std::memcpy(d + (static_cast<std::size_t>(a) * in_w + b) * 3, image + (static_cast<std::size_t>(sy) * W + sx) * 3,
                    3 * sizeof(float));
      }
    }
    ctx.sample_ids = std::span<const uint64_t>(ids.data(), 1);
    const Tensor& c2 = convs1_.forward(ctx, x);  // (1, 16, R + 4P2 + 7, Wp + 4P2 + 7)
    const Tensor q = pool_phases(c2, R / 2 + 2 * P2 + 3, Wp / 2 + 2 * P2 + 3);
    ctx.sample_ids = std::span<const uint64_t>(ids.data(), 4);
    const Tensor& c4 = convs2_.forward(ctx, q);  // (4, 32, R/2 + 2P2 - 1, ...)
    const Tensor e = pool_phases(c4, R4 + P2 - 1, W4 + P2 - 1);
    ctx.sample_ids = std::span<const uint64_t>(ids.data(), 16);
    const Tensor& f_any = head_.forward(ctx, e);  // (16, K, R4, W4)
    const Tensor f = f_any.format() == Format::nhwc ? f_any : f_any.to_format(Format::nhwc);
    const float* logits = f.data<float>();
    for (int i = 0; i < R && y0 + i < H; ++i)
      for (int j = 0; j < W; ++j) {
        const int b = ((i % 2) * 2 + j % 2) * 4 + ((i / 2) % 2) * 2 + (j / 2) % 2;
        votes.add(y0 + i, j, logits + ((static_cast<std::size_t>(b) * R4 + i / 4) * W4 + j / 4) * K);
      }
  }
  return votes.probabilities();
}

}  // namespace crackseg::train
