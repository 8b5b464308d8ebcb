// U-Net (Ronneberger et al. 2015) as used for crack segmentation: batchnorm, LeakyReLU and
// dropout inside every block.
//
//   block(c) = [conv3x3 'same' c, BN, LeakyReLU(slope), dropout] x 2
//   encoder: block(base * 2^l), maxpool 2       for l = 0 .. depth-1
//   bottleneck: block(base * 2^depth)
//   decoder: convT 2x2 stride 2 -> base * 2^l, concat [up, skip], block(base * 2^l)
//   head: conv1x1 -> 1 logit                    (N, 3, H, W) -> (N, 1, H, W)
//
// base=16 depth=4: 1,944,049 parameters; base=32 depth=4: 7,765,985.
// Init: Ronneberger et al. draw conv weights from N(0, sqrt(2/fan_in)), i.e. he_normal; the
// transposed convs and the 1x1 head use glorot_uniform (the Keras default their ports use).
#include "src/models/families.hpp"

namespace crackseg::models {

namespace {

struct Act {
  bool leaky = true;
  float slope = 0.01f;
  float dropout = 0.0f;
};

// Two [conv3x3, BN, activation, dropout] units; returns the block's output node.
NodeId block(Graph& g, const std::string& p, NodeId x, int64_t in_c, int64_t c, const Act& act) {
  for (int j = 1; j <= 2; ++j) {
    const std::string q = p + ".";
    const std::string n = std::to_string(j);
    x = g.add(q + "conv" + n,
              Conv2dSpec{.in_c = j == 1 ? in_c : c, .out_c = c, .kernel = 3, .stride = 1, .padding = 1,
                         .init = Init::he_normal},
              {x});
    x = g.add(q + "bn" + n, BatchNorm2dSpec{.channels = c}, {x});
    if (act.leaky)
      x = g.add(q + "act" + n, LeakyReluSpec{.slope = act.slope}, {x});
    else
      x = g.add(q + "act" + n, ReluSpec{}, {x});
    if (act.dropout > 0) x = g.add(q + "drop" + n, DropoutSpec{.p = act.dropout}, {x});
  }
  return x;
}

void build(Model& m) {
  ConfigReader cfg(m);
  const int64_t base = cfg.integer("base", 1, 1024);
  const int64_t depth = cfg.integer("depth", 1, 8);
  const Act act{.leaky = cfg.choice("activation", {"leaky_relu", "relu"}) == "leaky_relu",
                .slope = static_cast<float>(cfg.number("slope", 0.0, 1.0)),
                .dropout = static_cast<float>(cfg.number("dropout", 0.0, 0.99))};

  Graph& g = m.graph;
  NodeId x = g.input();  // (N, 3, H, W)
  std::vector<NodeId> skips;
  int64_t in_c = 3;
  for (int64_t l = 0; l < depth; ++l) {
    const int64_t c = base << l;
    const std::string p = "enc" + std::to_string(l + 1);
    x = block(g, p, x, in_c, c, act);  // (N, c, H/2^l, W/2^l)
    skips.push_back(x);
    x = g.add("pool" + std::to_string(l + 1), MaxPool2dSpec{.kernel = 2, .stride = 2}, {x});
    in_c = c;
  }
  x = block(g, "bottleneck", x, in_c, base << depth, act);  // (N, base*2^depth, H/2^depth, W/2^depth)
  in_c = base << depth;
  for (int64_t l = depth - 1; l >= 0; --l) {
    const int64_t c = base << l;
    const std::string p = "dec" + std::to_string(l + 1);
    x = g.add(p + ".up",
              ConvTranspose2dSpec{.in_c = in_c, .out_c = c, .kernel = 2, .stride = 2, .init = Init::glorot_uniform},
              {x});
    x = g.add(p + ".concat", ConcatSpec{}, {x, skips[static_cast<std::size_t>(l)]});  // (N, 2c, ...)
    x = block(g, p, x, 2 * c, c, act);
    in_c = c;
  }
  x = g.add("head", Conv2dSpec{.in_c = in_c, .out_c = 1, .kernel = 1, .init = Init::glorot_uniform}, {x});
  g.set_output(x);  // (N, 1, H, W)

  m.output = Model::Output::logit;
  m.out_channels = 1;
  m.size_rule = {SizeRule::Kind::multiple, int64_t{1} << depth};
}

}  // namespace

const Family& unet_family() {
  static const Family f{
      .name = "unet",
      .description = "U-Net with batchnorm, LeakyReLU and dropout; transposed-conv upsampling; 1 logit",
      .defaults = {{"base", 16},
                   {"depth", 4},
                   {"dropout", 0.1},
                   {"activation", "leaky_relu"},
                   {"slope", 0.01}},
      .build = build,
  };
  return f;
}

}  // namespace crackseg::models
