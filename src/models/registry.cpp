// Model registry: family lookup, config validation, input-size rules.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "src/core/error.hpp"
#include "src/core/text.hpp"
#include "src/models/families.hpp"

namespace crackseg {

namespace {

const std::vector<const models::Family*>& families() {
  static const std::vector<const models::Family*> all = {
      &models::patch_cnn_family(), &models::unet_family(), &models::hourglass_unet_family(),
      &models::spiral_net_family(), &models::flex_unet_family()};
  return all;
}

const models::Family& family(const std::string& name) {
  for (const auto* f : families())
    if (f->name == name) return *f;
  const auto names = model_names();
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
  throw InputError("model.name: unknown model '" + name + "'; did you mean '" + nearest_name(name, names) +
                   "'? (models: " + all + ")");
}

std::string value_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

std::string nearest_name(const std::string& word, const std::vector<std::string>& names) {
  std::string best;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  for (const auto& n : names) {
    const std::size_t d = edit_distance(word, n);
    if (d < best_d) best_d = d, best = n;
  }
  return best;
}

// ---- size rules ------------------------------------------------------------------------------

bool SizeRule::valid(int64_t n) const {
  switch (kind) {
    case Kind::exact: return n == value;
    case Kind::multiple: return n >= value && n % value == 0;
    case Kind::pow2_minus1: return n >= 2 * value - 1 && (n + 1) % value == 0;
  }
  return false;
}

int64_t SizeRule::at_least(int64_t n) const {
  switch (kind) {
    case Kind::exact: return value;
    case Kind::multiple: return std::max<int64_t>(1, (n + value - 1) / value) * value;
    case Kind::pow2_minus1: return std::max<int64_t>(2, (n + 1 + value - 1) / value) * value - 1;
  }
  return value;
}

int64_t SizeRule::at_most(int64_t n) const {
  switch (kind) {
    case Kind::exact: return n >= value ? value : 0;
    case Kind::multiple: return n / value * value;
    case Kind::pow2_minus1: {
      const int64_t k = (n + 1) / value;
      return k >= 2 ? k * value - 1 : 0;
    }
  }
  return 0;
}

int64_t SizeRule::nearest(int64_t n) const {
  const int64_t up = at_least(n), down = at_most(n);
  if (down == 0) return up;
  return (n - down < up - n) ? down : up;
}

std::string SizeRule::describe() const {
  std::ostringstream s;
  switch (kind) {
    case Kind::exact: s << "exactly " << value; break;
    case Kind::multiple:
      s << "multiples of " << value << " (" << value << ", " << 2 * value << ", " << 3 * value << ", ...)";
      break;
    case Kind::pow2_minus1:
      s << value << "k-1 (" << 2 * value - 1 << ", " << 3 * value - 1 << ", " << 4 * value - 1 << ", ...)";
      break;
  }
  return s.str();
}

// ---- model -------------------------------------------------------------------------------------

const char* to_string(Model::Output o) {
  switch (o) {
    case Model::Output::logit: return "logit";
    case Model::Output::softmax2: return "softmax2";
    case Model::Output::patch: return "patch";
  }
  return "?";
}

void Model::check_input_size(int64_t h, int64_t w) const {
  for (const int64_t n : {h, w}) {
    if (size_rule.valid(n)) continue;
    std::ostringstream s;
    s << name << " (" << summary() << ") cannot take a " << h << "x" << w << " input: each side must be "
      << size_rule.describe() << "; nearest valid size to " << n << " is " << size_rule.nearest(n);
    throw InputError(s.str());
  }
}

Dims Model::output_dims(int64_t n, int64_t h, int64_t w) const {
  check_input_size(h, w);
  return graph.output_dims({n, in_channels, h, w});
}

std::string Model::summary() const {
  std::string s;
  for (const auto& [key, value] : config.items()) {
    if (key == "name") continue;
    if (value.is_array()) {
      std::string list;
      for (const auto& v : value) list += (list.empty() ? "" : "-") + value_text(v);
      s += (s.empty() ? "" : " ") + key + "=" + list;
    } else {
      s += (s.empty() ? "" : " ") + key + "=" + value_text(value);
    }
  }
  return s;
}

int64_t Model::default_input_size() const {
  switch (size_rule.kind) {
    case SizeRule::Kind::exact: return size_rule.value;
    case SizeRule::Kind::pow2_minus1: return size_rule.at_least(255);
    case SizeRule::Kind::multiple: return size_rule.at_least(256);
  }
  return size_rule.value;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto* f : families()) names.push_back(f->name);
  return names;
}

std::vector<nlohmann::json> reference_configs() {
  using J = nlohmann::json;
  return {
      J{{"name", "patch_cnn"}, {"h", 13}, {"s", 2}},
      J{{"name", "patch_cnn"}, {"h", 15}, {"s", 3}},
      J{{"name", "unet"}, {"base", 16}, {"depth", 4}, {"dropout", 0.1}},
      J{{"name", "unet"}, {"base", 32}, {"depth", 4}},
      J{{"name", "hourglass_unet"}},
      J{{"name", "spiral_net"}, {"depths", {1, 2, 3, 4, 5, 6, 7}}},
      J{{"name", "spiral_net"}, {"width", 0.25}},
      J{{"name", "spiral_net"}, {"depths", {1, 2, 3, 4, 3, 2, 1}}},
      J{{"name", "flex_unet"}, {"layers", 8}},
      J{{"name", "flex_unet"}, {"layers", 5}},
  };
}

nlohmann::json model_defaults(const std::string& name) { return family(name).defaults; }

std::string model_description(const std::string& name) { return family(name).description; }

std::unique_ptr<Model> build_model(const nlohmann::json& model_section) {
  if (!model_section.is_object()) throw InputError("[model]: expected a table, got " + model_section.dump());
  if (!model_section.contains("name") || !model_section["name"].is_string())
    throw InputError("model.name: missing or not a string (one of patch_cnn, unet, hourglass_unet, "
                     "spiral_net, flex_unet)");
  const auto& fam = family(model_section["name"].get<std::string>());
  auto m = std::make_unique<Model>();
  m->name = fam.name;
  m->config = fam.defaults;
  std::vector<std::string> keys;
  for (const auto& [key, value] : fam.defaults.items()) keys.push_back(key);
  for (const auto& [key, value] : model_section.items()) {
    if (key == "name") continue;
    if (!fam.defaults.contains(key)) {
      std::string all;
      for (const auto& k : keys) all += (all.empty() ? "" : ", ") + k;
      throw InputError("model." + key + ": unknown key for " + fam.name + "; did you mean 'model." +
                       nearest_name(key, keys) + "'? (" + fam.name + " takes: " + all + ")");
    }
    m->config[key] = value;
  }
  fam.build(*m);
  m->config["name"] = fam.name;
  return m;
}

// ---- config reader -----------------------------------------------------------------------------

namespace models {

void ConfigReader::fail(const std::string& key, const std::string& expected) const {
  throw InputError("model." + key + " (" + m_.name + "): expected " + expected + ", got " +
                   m_.config[key].dump());
}

int64_t ConfigReader::integer(const std::string& key, int64_t min, int64_t max) {
  const auto& v = m_.config[key];
  const std::string expected = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  int64_t x = 0;
  if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
             std::abs(v.get<double>()) < 1e15) {
    x = static_cast<int64_t>(v.get<double>());
  } else {
    fail(key, expected);
  }
  if (x < min || x > max) fail(key, expected);
  m_.config[key] = x;
  return x;
}

double ConfigReader::number(const std::string& key, double min, double max) {
  const auto& v = m_.config[key];
  std::ostringstream expected;
  expected << "a number in [" << min << ", " << max << "]";
  if (!v.is_number()) fail(key, expected.str());
  const double x = v.get<double>();
  if (!(x >= min && x <= max)) fail(key, expected.str());
  m_.config[key] = x;
  return x;
}

std::string ConfigReader::choice(const std::string& key, std::initializer_list<const char*> options) {
  const auto& v = m_.config[key];
  std::vector<std::string> names(options.begin(), options.end());
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : " | ") + n;
  if (!v.is_string()) fail(key, "one of " + all);
  const auto s = v.get<std::string>();
  if (std::find(names.begin(), names.end(), s) == names.end())
    fail(key, "one of " + all + " (did you mean '" + nearest_name(s, names) + "'?)");
  return s;
}

std::vector<int64_t> ConfigReader::int_list(const std::string& key, int64_t min, int64_t max) {
  const auto& v = m_.config[key];
  const std::string expected = "a non-empty list of integers in [" + std::to_string(min) + ", " +
                               std::to_string(max) + "] (e.g. [1, 2, 3] or \"1-2-3\")";
  std::vector<int64_t> out;
  if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_number_integer()) fail(key, expected);
      out.push_back(e.get<int64_t>());
    }
  } else if (v.is_string()) {
    std::string item;
    const std::string s = v.get<std::string>() + "-";
    for (const char c : s) {
      if (c == '-' || c == ',') {
        if (item.empty() || item.size() > 9 || item.find_first_not_of("0123456789") != std::string::npos)
          fail(key, expected);
        out.push_back(std::stoll(item));
        item.clear();
      } else if (c != ' ') {
        item += c;
      }
    }
  } else {
    fail(key, expected);
  }
  if (out.empty()) fail(key, expected);
  for (const int64_t x : out)
    if (x < min || x > max) fail(key, expected);
  m_.config[key] = out;
  return out;
}

int64_t scaled(int64_t c, double width) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(c) * width)));
}

}  // namespace models
}  // namespace crackseg
