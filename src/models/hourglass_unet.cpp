// Kobayashi's hourglass U-Net: seven stride-2 encoders and seven stride-2 decoders with
// concatenated skips, no padding anywhere, so a 255x255 input runs 255 -> 127 -> 63 -> 31 ->
// 15 -> 7 -> 3 -> 1 and back 1 -> 3 -> ... -> 255 (sizes 128k-1).
//
//   enc j (j = 1..7): conv3x3 stride 2, BN, ReLU        widths 64,128,256,512,512,512,512
//   dec 7: convT3x3 stride 2 of enc 7, BN, ReLU         -> 512
//   dec j (j = 6..2): convT of concat [dec j+1, enc j], BN, ReLU -> width of enc j-1
//   dec 1: bare convT of concat [dec 2, enc 1]          -> 1 logit    (N, 1, H, W)
//
// 23,535,553 parameters at width 1. `width` scales every channel count except the logit:
// max(1, floor(c * width)).
// Init: he_normal for the ReLU convs; glorot_uniform for the transposed convs (Keras default).
#include "src/models/families.hpp"

namespace crackseg::models {

NodeId down_block(Graph& g, const std::string& p, NodeId x, int64_t in_c, int64_t out_c) {
  x = g.add(p + ".conv",
            Conv2dSpec{.in_c = in_c, .out_c = out_c, .kernel = 3, .stride = 2, .padding = 0, .init = Init::he_normal},
            {x});
  x = g.add(p + ".bn", BatchNorm2dSpec{.channels = out_c}, {x});
  return g.add(p + ".relu", ReluSpec{}, {x});
}

NodeId up_block(Graph& g, const std::string& p, NodeId x, int64_t in_c, int64_t out_c, bool bare) {
  x = g.add(p + ".convt",
            ConvTranspose2dSpec{.in_c = in_c, .out_c = out_c, .kernel = 3, .stride = 2, .padding = 0,
                                .init = Init::glorot_uniform},
            {x});
  if (bare) return x;
  x = g.add(p + ".bn", BatchNorm2dSpec{.channels = out_c}, {x});
  return g.add(p + ".relu", ReluSpec{}, {x});
}

namespace {

void build(Model& m) {
  ConfigReader cfg(m);
  const double width = cfg.number("width", 1e-3, 16.0);
  int64_t w[8] = {3};  // w[j] = channels out of encoder j; w[0] = the image
  for (int j = 1; j <= 7; ++j) w[j] = scaled(kKobayashiWidths[j - 1], width);

  Graph& g = m.graph;
  NodeId x = g.input();  // (N, 3, H, W)
  NodeId enc[8] = {x};
  for (int j = 1; j <= 7; ++j) enc[j] = down_block(g, "enc" + std::to_string(j), enc[j - 1], w[j - 1], w[j]);
  x = enc[7];
  int64_t in_c = w[7];
  for (int j = 7; j >= 1; --j) {
    const std::string p = "dec" + std::to_string(j);
    if (j < 7) {
      x = g.add(p + ".concat", ConcatSpec{}, {x, enc[j]});
      in_c += w[j];
    }
    const int64_t out_c = j == 1 ? 1 : w[j - 1];
    x = up_block(g, p, x, in_c, out_c, /*bare=*/j == 1);
    in_c = out_c;
  }
  g.set_output(x);  // (N, 1, H, W)

  m.output = Model::Output::logit;
  m.out_channels = 1;
  m.size_rule = {SizeRule::Kind::pow2_minus1, 128};
}

}  // namespace

const Family& hourglass_unet_family() {
  static const Family f{
      .name = "hourglass_unet",
      .description = "Kobayashi's U-Net: 7 stride-2 unpadded encoders/decoders, concat skips; 1 logit",
      .defaults = {{"width", 1.0}},
      .build = build,
  };
  return f;
}

}  // namespace crackseg::models
