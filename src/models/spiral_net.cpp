// Spiral-Net (Kobayashi): a chain of hourglass modules without inner skips. Module k of depth
// d_k runs encoders 1..d_k then decoders d_k..1 (the hourglass U-Net's layers, every one
// conv/convT + BN + ReLU), so it emits one non-negative map (N, 1, H, W). Module 1 reads the
// image; module k reads the concatenation of the maps of modules 1..k-1 (skip = "concat") or
// their sum (skip = "sum"). A 1x1 conv over the concatenation of all maps gives the logit.
//
//   depths = [1..7]: 41,638,685 parameters; width=0.25: 2,612,957; [1,2,3,4,3,2,1]: 4,893,917.
//
// Reading of DESIGN.md taken here (it gives exactly the counts above):
// - decoder j maps enc j's width to enc j-1's width (decoder 1 to 1 channel), input widths
//   are never scaled by `width` (image: 3, module k: k-1 maps, or 1 map when summed);
// - skip = "sum" only changes what modules 2..n read; the head still sees all n maps.
// Input sizes: 2^D k - 1 with D = max depth, k >= 2 (255, 383, ... for D = 7).
// Init: he_normal for the ReLU convs; glorot_uniform for transposed convs and the 1x1 head.
#include "src/models/families.hpp"

#include <algorithm>

namespace crackseg::models {

namespace {

void build(Model& m) {
  ConfigReader cfg(m);
  const std::vector<int64_t> depths = cfg.int_list("depths", 1, 7);
  const double width = cfg.number("width", 1e-3, 16.0);
  const bool sum = cfg.choice("skip", {"concat", "sum"}) == "sum";
  int64_t w[8] = {1};  // w[j] = channels out of encoder j; w[0] = decoder 1's output (one map)
  for (int j = 1; j <= 7; ++j) w[j] = scaled(kKobayashiWidths[j - 1], width);

  Graph& g = m.graph;
  const NodeId image = g.input();  // (N, 3, H, W)
  std::vector<NodeId> maps;        // each (N, 1, H, W)
  for (std::size_t k = 0; k < depths.size(); ++k) {
    const std::string p = "m" + std::to_string(k + 1);
    NodeId x = image;
    int64_t in_c = 3;
    if (k == 1) {
      x = maps[0];
      in_c = 1;
    } else if (k > 1) {
      x = sum ? g.add(p + ".sum", AddSpec{}, maps) : g.add(p + ".concat", ConcatSpec{}, maps);
      in_c = sum ? 1 : static_cast<int64_t>(k);
    }
    const int64_t d = depths[k];
    for (int64_t j = 1; j <= d; ++j) {
      x = down_block(g, p + ".enc" + std::to_string(j), x, in_c, w[j]);
      in_c = w[j];
    }
    for (int64_t j = d; j >= 1; --j) {
      x = up_block(g, p + ".dec" + std::to_string(j), x, w[j], w[j - 1], /*bare=*/false);
    }
    maps.push_back(x);
  }
  NodeId x = maps.size() == 1 ? maps[0] : g.add("head.concat", ConcatSpec{}, maps);
  x = g.add("head",
            Conv2dSpec{.in_c = static_cast<int64_t>(maps.size()), .out_c = 1, .kernel = 1,
                       .init = Init::glorot_uniform},
            {x});
  g.set_output(x);  // (N, 1, H, W)

  m.output = Model::Output::logit;
  m.out_channels = 1;
  m.size_rule = {SizeRule::Kind::pow2_minus1, int64_t{1} << *std::max_element(depths.begin(), depths.end())};
}

}  // namespace

const Family& spiral_net_family() {
  static const Family f{
      .name = "spiral_net",
      .description = "Kobayashi's Spiral-Net: chained skip-free hourglass modules of given depths; 1 logit",
      .defaults = {{"depths", {1, 2, 3, 4, 5, 6, 7}}, {"width", 1.0}, {"skip", "concat"}},
      .build = build,
  };
  return f;
}

}  // namespace crackseg::models
