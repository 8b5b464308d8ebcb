// ctest-link: crackseg_train
// The shared config-section helpers (src/optim/json_keys.hpp): nearest-key suggestions and
// typed getters whose errors name the section, key and value.
#include <gtest/gtest.h>

#include <functional>

#include "src/core/error.hpp"
#include "src/optim/json_keys.hpp"

using namespace crackseg;
using nlohmann::json;

namespace {
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}
}  // namespace

TEST(JsonKeys, EditDistanceCountsSwapsAsOneEdit) {
  EXPECT_EQ(edit_distance("gamma", "gamma"), 0u);
  EXPECT_EQ(edit_distance("gama", "gamma"), 1u);
  EXPECT_EQ(edit_distance("dcie", "dice"), 1u);
  EXPECT_EQ(edit_distance("", "lr"), 2u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  const std::vector<std::string_view> valid = {"patience", "monitor", "min_delta"};
  EXPECT_EQ(nearest_name("mindelta", valid), "min_delta");
  EXPECT_EQ(nearest_name("monitr", valid), "monitor");
}

TEST(JsonKeys, UnknownKeysAndBadValuesNameSectionKeyAndValue) {
  const json sec = {{"name", "x"}, {"lrr", 0.1}};
  const std::string m = message_of([&] { check_keys(sec, "optim", {"name", "lr"}); });
  EXPECT_NE(m.find("[optim]"), std::string::npos) << m;
  EXPECT_NE(m.find("'lrr'"), std::string::npos) << m;
  EXPECT_NE(m.find("'lr'"), std::string::npos) << m;
  EXPECT_NO_THROW(check_keys(json(nullptr), "optim", {"name"}));
  EXPECT_THROW(check_keys(json(3), "optim", {"name"}), InputError);

  const json v = {{"i", 3}, {"f", 3.0}, {"h", 3.5}, {"s", "abc"}, {"b", true}, {"a", {1, 2.5}}};
  EXPECT_EQ(json_int(v, "t", "i", 0), 3);
  EXPECT_EQ(json_int(v, "t", "f", 0), 3);
  EXPECT_EQ(json_int(v, "t", "missing", 7), 7);
  const std::string h = message_of([&] { (void)json_int(v, "train", "h", 0); });
  EXPECT_NE(h.find("[train] h = 3.5"), std::string::npos) << h;
  EXPECT_EQ(json_number(v, "t", "i", 0), 3.0);
  EXPECT_THROW((void)json_number(v, "t", "s", 0), InputError);
  EXPECT_THROW((void)json_bool(v, "t", "i", false), InputError);
  EXPECT_TRUE(json_bool(v, "t", "b", false));
  EXPECT_EQ(json_string(v, "t", "s", ""), "abc");
  EXPECT_THROW((void)json_string(v, "t", "i", ""), InputError);
  EXPECT_EQ(json_numbers(v, "t", "a", {}), (std::vector<double>{1, 2.5}));
  EXPECT_THROW((void)json_numbers(v, "t", "s", {}), InputError);
  const std::string u = message_of([] {
    static const std::vector<std::string_view> names = {"adam", "adamw", "sgd"};
    throw_unknown_name("optim", "optimizer name", "sdg", names);
  });
  EXPECT_NE(u.find("'sgd'"), std::string::npos) << u;
  EXPECT_NE(u.find("adam, adamw, sgd"), std::string::npos) << u;
}
