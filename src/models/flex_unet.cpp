// FlexUNet, the crack configuration: a Keras-style U-Net without batchnorm whose kernels
// shrink with depth and whose dropout grows with depth; 2-class softmax output.
//
//   level i = 0 .. layers-1: conv kxk 'same' + ReLU, dropout(step * i), conv kxk + ReLU
//            with k = max(3, kernel - 2i) (9, 7, 5, 3, 3, ...) and base * 2^i channels;
//            maxpool 2 between levels; the last level is the bridge
//   decoder level i = layers-2 .. 0: convT 2x2 stride 2 -> base * 2^i, concat [up, skip],
//            the same two convs (that level's k and dropout)
//   head: conv1x1 -> `classes` logits                 (N, 3, H, W) -> (N, classes, H, W)
//
// layers=8: 124,996,866 parameters; layers=5: 2,497,538. The dropout of level i is step * i
// with i counted from 0 like the channel exponent (level 0 has none; a rate of 0 adds no
// layer); the counts do not depend on that reading.
// Init: he_normal for the ReLU convs (as the Keras U-Net it derives from); glorot_uniform
// (Keras's default) for the transposed convs and the head.
#include "src/models/families.hpp"

#include <algorithm>

namespace crackseg::models {

namespace {

NodeId level(Graph& g, const std::string& p, NodeId x, int64_t in_c, int64_t c, int64_t k, float p_drop) {
  for (int j = 1; j <= 2; ++j) {
    const std::string n = std::to_string(j);
    x = g.add(p + ".conv" + n,
              Conv2dSpec{.in_c = j == 1 ? in_c : c, .out_c = c, .kernel = k, .stride = 1, .padding = (k - 1) / 2,
                         .init = Init::he_normal},
              {x});
    x = g.add(p + ".relu" + n, ReluSpec{}, {x});
    if (j == 1 && p_drop > 0) x = g.add(p + ".drop", DropoutSpec{.p = p_drop}, {x});
  }
  return x;
}

void build(Model& m) {
  ConfigReader cfg(m);
  const int64_t layers = cfg.integer("layers", 1, 10);
  const int64_t base = cfg.integer("base", 1, 1024);
  const int64_t kernel = cfg.integer("kernel", 1, 15);
  if (kernel % 2 == 0)
    throw InputError("model.kernel (flex_unet): expected an odd kernel size for 'same' padding, got " +
                     std::to_string(kernel));
  const double step = cfg.number("dropout", 0.0, 0.99 / static_cast<double>(std::max<int64_t>(1, layers - 1)));
  const int64_t classes = cfg.integer("classes", 1, 2);

  auto k_of = [&](int64_t i) { return std::max<int64_t>(std::min<int64_t>(3, kernel), kernel - 2 * i); };
  auto c_of = [&](int64_t i) { return base << i; };
  auto p_of = [&](int64_t i) { return static_cast<float>(step * static_cast<double>(i)); };

  Graph& g = m.graph;
  NodeId x = g.input();  // (N, 3, H, W)
  std::vector<NodeId> skips;
  int64_t in_c = 3;
  for (int64_t i = 0; i < layers; ++i) {
    if (i > 0) x = g.add("pool" + std::to_string(i), MaxPool2dSpec{.kernel = 2, .stride = 2}, {x});
    x = level(g, "enc" + std::to_string(i + 1), x, in_c, c_of(i), k_of(i), p_of(i));  // (N, c_i, H/2^i, W/2^i)
    skips.push_back(x);
    in_c = c_of(i);
  }
  for (int64_t i = layers - 2; i >= 0; --i) {
    const std::string p = "dec" + std::to_string(i + 1);
    x = g.add(p + ".up",
              ConvTranspose2dSpec{.in_c = in_c, .out_c = c_of(i), .kernel = 2, .stride = 2,
                                  .init = Init::glorot_uniform},
              {x});
    x = g.add(p + ".concat", ConcatSpec{}, {x, skips[static_cast<std::size_t>(i)]});  // (N, 2 c_i, ...)
    x = level(g, p, x, 2 * c_of(i), c_of(i), k_of(i), p_of(i));
    in_c = c_of(i);
  }
  x = g.add("head", Conv2dSpec{.in_c = in_c, .out_c = classes, .kernel = 1, .init = Init::glorot_uniform}, {x});
  g.set_output(x);  // (N, classes, H, W)

  m.output = classes == 2 ? Model::Output::softmax2 : Model::Output::logit;
  m.out_channels = classes;
  m.size_rule = {SizeRule::Kind::multiple, int64_t{1} << (layers - 1)};
}

}  // namespace

const Family& flex_unet_family() {
  static const Family f{
      .name = "flex_unet",
      .description = "FlexUNet crack config: no BN, kernels 9,7,5,3.., dropout growing with depth; 2-class softmax",
      .defaults = {{"layers", 8}, {"base", 16}, {"kernel", 9}, {"dropout", 0.05}, {"classes", 2}},
      .build = build,
  };
  return f;
}

}  // namespace crackseg::models
