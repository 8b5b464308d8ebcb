// Patch CNN of Fan et al. 2018 ("Automatic pavement crack detection based on structured
// prediction with the convolutional neural network"): a (2h+1)^2 RGB patch in, the crack
// probability of every pixel of the (2s+1)^2 window around its centre out (structured
// prediction, one logit per window pixel).
//
//   (N, 3, 2h+1, 2h+1) -> conv3x3 16, conv3x3 16, maxpool 2 -> conv3x3 32, conv3x3 32, maxpool 2
//   -> flatten -> FC 64, dropout -> FC 64, dropout -> FC (2s+1)^2        (ReLU after convs, FCs)
//
// h=13 s=2: 96,233 parameters; h=15 s=3: 124,417.
//
// padding = "same" (default, Fan et al.): 'same' convolutions, so every layer sees zeros
// beyond the patch border. padding = "context": the same layers and parameter count, but
// 'valid' convolutions over a larger input of side 4*floor(h/2)+12 (36 for h=13; the patch's
// centre at h+6) cut from the image, so every value the network computes is the value at
// that image position: the network is a true function of the image, and running it once
// over a whole image (src/train/patch_dense.hpp) gives exactly the per-patch outputs. With
// "same", neighbouring patches disagree on every value whose receptive field reaches the
// zero border (27 of the 36 positions FC1 reads), so shared-convolution inference is not
// possible; it is predicted one patch per pixel.
// Init: the paper names none; its Keras-style setup gives he_normal for the ReLU convs and
// Keras's default glorot_uniform for the dense layers.
#include "src/models/families.hpp"

namespace crackseg::models {

namespace {

void build(Model& m) {
  ConfigReader cfg(m);
  const int64_t h = cfg.integer("h", 2, 1024);
  const int64_t s = cfg.integer("s", 0, h);
  const double dropout = cfg.number("dropout", 0.0, 0.99);
  const bool context = cfg.choice("padding", {"same", "context"}) == "context";
  const int64_t pooled = h / 2;  // (2h+1) -> two floor-mode 2x2 pools; context: 4P+12 -4, /2, -4, /2
  const int64_t side = context ? 4 * pooled + 12 : 2 * h + 1;
  const int64_t window = (2 * s + 1) * (2 * s + 1);

  Graph& g = m.graph;
  NodeId x = g.input();  // (N, 3, 2h+1, 2h+1)
  int64_t in_c = 3;
  const int64_t widths[2] = {16, 32};
  for (int stage = 0; stage < 2; ++stage) {
    const std::string p = "conv" + std::to_string(stage + 1);
    for (int j = 1; j <= 2; ++j) {
      const std::string q = p + "_" + std::to_string(j);
      x = g.add(q, Conv2dSpec{.in_c = in_c, .out_c = widths[stage], .kernel = 3, .stride = 1, .padding = context ? 0 : 1,
                              .init = Init::he_normal},
                {x});
      x = g.add(q + ".relu", ReluSpec{}, {x});
      in_c = widths[stage];
    }
    x = g.add("pool" + std::to_string(stage + 1), MaxPool2dSpec{.kernel = 2, .stride = 2}, {x});
  }
  x = g.add("flatten", FlattenSpec{}, {x});  // (N, 32 * pooled^2)
  int64_t in_f = 32 * pooled * pooled;
  for (int j = 1; j <= 2; ++j) {
    const std::string q = "fc" + std::to_string(j);
    x = g.add(q, LinearSpec{.in_f = in_f, .out_f = 64, .init = Init::glorot_uniform}, {x});
    x = g.add(q + ".relu", ReluSpec{}, {x});
    if (dropout > 0) x = g.add(q + ".dropout", DropoutSpec{.p = static_cast<float>(dropout)}, {x});
    in_f = 64;
  }
  x = g.add("fc3", LinearSpec{.in_f = 64, .out_f = window, .init = Init::glorot_uniform}, {x});  // (N, (2s+1)^2)
  g.set_output(x);

  m.output = Model::Output::patch;
  m.out_channels = window;
  m.size_rule = {SizeRule::Kind::exact, side};
}

}  // namespace

const Family& patch_cnn_family() {
  static const Family f{
      .name = "patch_cnn",
      .description = "Fan et al. 2018 patch CNN: (2h+1)^2 patch -> (2s+1)^2 window of crack logits",
      .defaults = {{"h", 13}, {"s", 2}, {"dropout", 0.5}, {"padding", "same"}},
      .build = build,
  };
  return f;
}

}  // namespace crackseg::models
