// ctest-link: crackseg_nn
// Model families: exact parameter counts for every row of DESIGN.md's "Models" table, output
// shapes by shape inference, input-size rules and their messages, config validation.
#include <gtest/gtest.h>

#include <string>

#include "src/core/error.hpp"
#include "src/models/model.hpp"

using namespace crackseg;
using nlohmann::json;

namespace {

// The message of the InputError `f` throws (fails the test when it throws nothing else).
template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return {};
}

int64_t params(const json& section) { return build_model(section)->graph.num_params(); }

}  // namespace

TEST(ModelParams, DesignTableRows) {
  EXPECT_EQ(params({{"name", "patch_cnn"}, {"h", 13}, {"s", 2}}), 96'233);
  EXPECT_EQ(params({{"name", "patch_cnn"}, {"h", 15}, {"s", 3}}), 124'417);
  EXPECT_EQ(params({{"name", "unet"}, {"base", 16}, {"depth", 4}, {"dropout", 0.1}}), 1'944'049);
  EXPECT_EQ(params({{"name", "unet"}, {"base", 32}, {"depth", 4}}), 7'765'985);
  EXPECT_EQ(params({{"name", "hourglass_unet"}}), 23'535'553);
  EXPECT_EQ(params({{"name", "spiral_net"}, {"depths", {1, 2, 3, 4, 5, 6, 7}}}), 41'638'685);
  EXPECT_EQ(params({{"name", "spiral_net"}, {"width", 0.25}}), 2'612'957);
  EXPECT_EQ(params({{"name", "spiral_net"}, {"depths", {1, 2, 3, 4, 3, 2, 1}}}), 4'893'917);
  EXPECT_EQ(params({{"name", "flex_unet"}, {"layers", 8}}), 124'996'866);
  EXPECT_EQ(params({{"name", "flex_unet"}, {"layers", 5}}), 2'497'538);
}

TEST(ModelParams, ReferenceConfigsAreTheTableRows) {
  const int64_t expected[] = {96'233,     124'417,    1'944'049, 7'765'985,   23'535'553,
                              41'638'685, 2'612'957,  4'893'917, 124'996'866, 2'497'538};
  const auto configs = reference_configs();
  ASSERT_EQ(configs.size(), std::size(expected));
  for (std::size_t i = 0; i < configs.size(); ++i) EXPECT_EQ(params(configs[i]), expected[i]) << configs[i];
}

TEST(ModelParams, ParametersThatDoNotChangeTheCountAndOnesThatDo) {
  // Dropout and activation add no parameters; depth strings equal depth lists.
  EXPECT_EQ(params({{"name", "unet"}, {"dropout", 0.0}, {"activation", "relu"}}), 1'944'049);
  EXPECT_EQ(params({{"name", "spiral_net"}, {"depths", "1-2-3-4-3-2-1"}}), 4'893'917);
  EXPECT_EQ(params({{"name", "patch_cnn"}, {"dropout", 0.0}}), 96'233);
  // skip = sum: modules 2..7 read one summed map instead of k-1 maps; the first encoder conv
  // of module k (k >= 3) loses (k-2) * 64 * 9 weights.
  int64_t saved = 0;
  for (int k = 3; k <= 7; ++k) saved += (k - 2) * 64 * 9;
  EXPECT_EQ(params({{"name", "spiral_net"}, {"skip", "sum"}}), 41'638'685 - saved);
  // flex_unet with 1 class: the head loses one 16-channel 1x1 filter and its bias.
  EXPECT_EQ(params({{"name", "flex_unet"}, {"layers", 5}, {"classes", 1}}), 2'497'538 - 17);
  // hourglass width=0.5 counted by hand from the definition.
  const int64_t w[8] = {3, 32, 64, 128, 256, 256, 256, 256};
  int64_t hand = 0;
  for (int j = 1; j <= 7; ++j) hand += w[j - 1] * w[j] * 9 + w[j] + 2 * w[j];  // encoders
  int64_t in_c = w[7];
  for (int j = 7; j >= 1; --j) {
    if (j < 7) in_c += w[j];
    const int64_t out_c = j == 1 ? 1 : w[j - 1];
    hand += in_c * out_c * 9 + out_c + (j == 1 ? 0 : 2 * out_c);
    in_c = out_c;
  }
  EXPECT_EQ(params({{"name", "hourglass_unet"}, {"width", 0.5}}), hand);
}

TEST(ModelShapes, OutputDims) {
  EXPECT_EQ(build_model({{"name", "patch_cnn"}})->output_dims(128, 27, 27), (Dims{128, 25}));
  EXPECT_EQ(build_model({{"name", "patch_cnn"}, {"h", 15}, {"s", 3}})->output_dims(2, 31, 31), (Dims{2, 49}));
  EXPECT_EQ(build_model({{"name", "unet"}})->output_dims(4, 400, 400), (Dims{4, 1, 400, 400}));
  EXPECT_EQ(build_model({{"name", "unet"}, {"depth", 3}})->output_dims(1, 8, 24), (Dims{1, 1, 8, 24}));
  EXPECT_EQ(build_model({{"name", "hourglass_unet"}})->output_dims(2, 255, 255), (Dims{2, 1, 255, 255}));
  EXPECT_EQ(build_model({{"name", "hourglass_unet"}})->output_dims(1, 383, 511), (Dims{1, 1, 383, 511}));
  EXPECT_EQ(build_model({{"name", "spiral_net"}})->output_dims(2, 255, 255), (Dims{2, 1, 255, 255}));
  EXPECT_EQ(build_model({{"name", "spiral_net"}, {"skip", "sum"}})->output_dims(1, 383, 383),
            (Dims{1, 1, 383, 383}));
  EXPECT_EQ(build_model({{"name", "spiral_net"}, {"depths", {1, 2}}})->output_dims(1, 7, 11), (Dims{1, 1, 7, 11}));
  EXPECT_EQ(build_model({{"name", "flex_unet"}, {"layers", 5}})->output_dims(2, 400, 400), (Dims{2, 2, 400, 400}));
  EXPECT_EQ(build_model({{"name", "flex_unet"}})->output_dims(1, 256, 128), (Dims{1, 2, 256, 128}));
}

TEST(ModelShapes, OutputKinds) {
  EXPECT_EQ(build_model({{"name", "patch_cnn"}})->output, Model::Output::patch);
  EXPECT_EQ(build_model({{"name", "patch_cnn"}})->out_channels, 25);
  EXPECT_EQ(build_model({{"name", "unet"}})->output, Model::Output::logit);
  EXPECT_EQ(build_model({{"name", "spiral_net"}})->output, Model::Output::logit);
  EXPECT_EQ(build_model({{"name", "flex_unet"}})->output, Model::Output::softmax2);
  EXPECT_EQ(build_model({{"name", "flex_unet"}, {"classes", 1}})->output, Model::Output::logit);
}

TEST(ModelSizes, RulesPerFamily) {
  const auto spiral = build_model({{"name", "spiral_net"}});
  for (int64_t n : {255, 383, 511, 1023}) EXPECT_TRUE(spiral->size_rule.valid(n)) << n;
  for (int64_t n : {127, 254, 256, 384, 400, 0, -1}) EXPECT_FALSE(spiral->size_rule.valid(n)) << n;
  EXPECT_EQ(build_model({{"name", "hourglass_unet"}})->size_rule.describe(), spiral->size_rule.describe());
  const auto shallow = build_model({{"name", "spiral_net"}, {"depths", {2, 1}}});
  EXPECT_TRUE(shallow->size_rule.valid(7));
  EXPECT_TRUE(shallow->size_rule.valid(11));
  EXPECT_FALSE(shallow->size_rule.valid(3));
  EXPECT_FALSE(shallow->size_rule.valid(9));
  const auto unet = build_model({{"name", "unet"}});
  for (int64_t n : {16, 400, 512}) EXPECT_TRUE(unet->size_rule.valid(n)) << n;
  for (int64_t n : {8, 255, 404}) EXPECT_FALSE(unet->size_rule.valid(n)) << n;
  const auto flex = build_model({{"name", "flex_unet"}, {"layers", 5}});
  EXPECT_TRUE(flex->size_rule.valid(400));  // 2^(5-1) = 16 divides 400
  EXPECT_FALSE(flex->size_rule.valid(392));
  EXPECT_FALSE(build_model({{"name", "flex_unet"}})->size_rule.valid(400));  // 128 does not
  const auto patch = build_model({{"name", "patch_cnn"}});
  EXPECT_TRUE(patch->size_rule.valid(27));
  EXPECT_FALSE(patch->size_rule.valid(29));
}

TEST(ModelSizes, NearestValidSizes) {
  const SizeRule spiral{SizeRule::Kind::pow2_minus1, 128};
  EXPECT_EQ(spiral.at_least(256), 383);
  EXPECT_EQ(spiral.at_least(100), 255);
  EXPECT_EQ(spiral.at_most(400), 383);
  EXPECT_EQ(spiral.at_most(254), 0);
  EXPECT_EQ(spiral.nearest(256), 255);
  EXPECT_EQ(spiral.nearest(330), 383);
  EXPECT_EQ(spiral.nearest(3), 255);
  const SizeRule unet{SizeRule::Kind::multiple, 16};
  EXPECT_EQ(unet.at_least(401), 416);
  EXPECT_EQ(unet.at_most(401), 400);
  EXPECT_EQ(unet.nearest(401), 400);
  EXPECT_EQ(unet.nearest(408), 416);  // ties go up (padding rather than cropping)
  EXPECT_EQ(unet.at_least(5), 16);
  const SizeRule patch{SizeRule::Kind::exact, 27};
  EXPECT_EQ(patch.nearest(400), 27);
}

TEST(ModelSizes, RejectionNamesModelAndValidSizes) {
  const auto spiral = build_model({{"name", "spiral_net"}});
  const auto msg = input_error([&] { spiral->check_input_size(256, 255); });
  EXPECT_NE(msg.find("spiral_net"), std::string::npos) << msg;
  EXPECT_NE(msg.find("128k-1 (255, 383, 511"), std::string::npos) << msg;
  EXPECT_NE(msg.find("256x255"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nearest valid size to 256 is 255"), std::string::npos) << msg;
  const auto hg = input_error([] { (void)build_model({{"name", "hourglass_unet"}})->output_dims(1, 255, 400); });
  EXPECT_NE(hg.find("hourglass_unet"), std::string::npos) << hg;
  EXPECT_NE(hg.find("nearest valid size to 400 is 383"), std::string::npos) << hg;
  const auto unet = input_error([] { build_model({{"name", "unet"}})->check_input_size(400, 401); });
  EXPECT_NE(unet.find("unet"), std::string::npos) << unet;
  EXPECT_NE(unet.find("multiples of 16"), std::string::npos) << unet;
  const auto patch = input_error([] { build_model({{"name", "patch_cnn"}})->check_input_size(31, 31); });
  EXPECT_NE(patch.find("exactly 27"), std::string::npos) << patch;
  const auto flex = input_error([] { build_model({{"name", "flex_unet"}})->check_input_size(400, 400); });
  EXPECT_NE(flex.find("multiples of 128"), std::string::npos) << flex;
}

TEST(ModelConfig, UnknownNamesAndKeysNameTheNearest) {
  auto msg = input_error([] { (void)build_model({{"name", "spiralnet"}}); });
  EXPECT_NE(msg.find("'spiral_net'"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "unet"}, {"bsae", 16}}); });
  EXPECT_NE(msg.find("model.bsae"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'model.base'"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "spiral_net"}, {"depth", {1, 2}}}); });
  EXPECT_NE(msg.find("did you mean 'model.depths'"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "unet"}, {"activation", "relux"}}); });
  EXPECT_NE(msg.find("model.activation"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'relu'"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"base", 16}}); });
  EXPECT_NE(msg.find("model.name"), std::string::npos) << msg;
}

TEST(ModelConfig, BadValuesNameKeyAndValue) {
  auto msg = input_error([] { (void)build_model({{"name", "unet"}, {"base", -3}}); });
  EXPECT_NE(msg.find("model.base"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-3"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "unet"}, {"depth", 2.5}}); });
  EXPECT_NE(msg.find("model.depth"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "spiral_net"}, {"depths", "1-x-3"}}); });
  EXPECT_NE(msg.find("model.depths"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "spiral_net"}, {"depths", {1, 8}}}); });
  EXPECT_NE(msg.find("model.depths"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "flex_unet"}, {"kernel", 4}}); });
  EXPECT_NE(msg.find("model.kernel"), std::string::npos) << msg;
  msg = input_error([] { (void)build_model({{"name", "patch_cnn"}, {"dropout", "half"}}); });
  EXPECT_NE(msg.find("model.dropout"), std::string::npos) << msg;
}

TEST(ModelConfig, ResolvedConfigHasEveryKeyNormalised) {
  const auto m = build_model({{"name", "spiral_net"}, {"depths", "1-2-3"}, {"width", 1}});
  EXPECT_EQ(m->config["name"], "spiral_net");
  EXPECT_EQ(m->config["depths"], json({1, 2, 3}));
  EXPECT_EQ(m->config["skip"], "concat");
  EXPECT_TRUE(m->config["width"].is_number_float());
  EXPECT_EQ(m->summary(), "depths=1-2-3 skip=concat width=1.0");
  // The resolved config rebuilds the same model.
  EXPECT_EQ(build_model(m->config)->graph.num_params(), m->graph.num_params());
  for (const auto& name : model_names()) {
    const auto d = model_defaults(name);
    const auto r = build_model({{"name", name}})->config;
    for (const auto& [key, value] : d.items()) EXPECT_TRUE(r.contains(key)) << name << "." << key;
    EXPECT_FALSE(model_description(name).empty());
  }
}
