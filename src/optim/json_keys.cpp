#include "src/optim/json_keys.hpp"

#include <algorithm>

#include "src/core/error.hpp"

namespace crackseg {

std::string nearest_name(std::string_view key, std::span<const std::string_view> valid) {
  std::string best;
  std::size_t best_d = static_cast<std::size_t>(-1);
  for (auto v : valid) {
    const std::size_t d = edit_distance(key, v);
    if (d < best_d) {
      best_d = d;
      best = std::string(v);
    }
  }
  return best;
}

namespace {
std::string join(std::span<const std::string_view> names) {
  std::string out;
  for (auto n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}
// Builds messages by appending: GCC 12 warns falsely (-Wrestrict, PR 105329) on
// `"literal" + std::string` chains, and we keep the build warning-free.
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto p : parts) out.append(p);
  return out;
}
std::string head(std::string_view section) { return cat({"[", section, "] "}); }
}  // namespace

void throw_unknown_name(std::string_view section_name, std::string_view what, std::string_view value,
                        std::span<const std::string_view> valid) {
  throw InputError(cat({head(section_name), "unknown ", what, " '", value, "' (did you mean '",
                        nearest_name(value, valid), "'?; valid: ", join(valid), ")"}));
}

void check_keys(const nlohmann::json& section, std::string_view section_name,
                std::initializer_list<std::string_view> valid) {
  if (section.is_null()) return;
  if (!section.is_object())
    throw InputError(cat({head(section_name), "expected a table of keys, got ", section.dump()}));
  const std::span<const std::string_view> v(valid.begin(), valid.size());
  for (const auto& [key, value] : section.items()) {
    if (std::find(valid.begin(), valid.end(), key) == valid.end())
      throw InputError(cat({head(section_name), "unknown key '", key, "' (did you mean '", nearest_name(key, v), "'?)"}));
  }
}

void throw_bad_value(std::string_view section, std::string_view key, const std::string& value,
                     std::string_view why) {
  throw InputError(cat({head(section), key, " = ", value, ": ", why}));
}

namespace {
const nlohmann::json* find(const nlohmann::json& s, const std::string& key) {
  if (!s.is_object()) return nullptr;
  auto it = s.find(key);
  return it == s.end() ? nullptr : &*it;
}
}  // namespace

double json_number(const nlohmann::json& s, std::string_view section, const std::string& key, double def) {
  const auto* v = find(s, key);
  if (!v) return def;
  if (!v->is_number()) throw_bad_value(section, key, v->dump(), "expected a number");
  return v->get<double>();
}

int64_t json_int(const nlohmann::json& s, std::string_view section, const std::string& key, int64_t def) {
  const auto* v = find(s, key);
  if (!v) return def;
  if (v->is_number_integer()) return v->get<int64_t>();
  // 3.0 is accepted as 3 (TOML writers sometimes emit floats); 3.5 is not.
  if (v->is_number_float() && v->get<double>() == static_cast<double>(static_cast<int64_t>(v->get<double>())))
    return static_cast<int64_t>(v->get<double>());
  throw_bad_value(section, key, v->dump(), "expected an integer");
}

bool json_bool(const nlohmann::json& s, std::string_view section, const std::string& key, bool def) {
  const auto* v = find(s, key);
  if (!v) return def;
  if (!v->is_boolean()) throw_bad_value(section, key, v->dump(), "expected true or false");
  return v->get<bool>();
}

std::string json_string(const nlohmann::json& s, std::string_view section, const std::string& key,
                        const std::string& def) {
  const auto* v = find(s, key);
  if (!v) return def;
  if (!v->is_string()) throw_bad_value(section, key, v->dump(), "expected a string");
  return v->get<std::string>();
}

std::vector<double> json_numbers(const nlohmann::json& s, std::string_view section, const std::string& key,
                                 std::vector<double> def) {
  const auto* v = find(s, key);
  if (!v) return def;
  if (!v->is_array()) throw_bad_value(section, key, v->dump(), "expected an array of numbers");
  std::vector<double> out;
  for (const auto& x : *v) {
    if (!x.is_number()) throw_bad_value(section, key, v->dump(), "expected an array of numbers");
    out.push_back(x.get<double>());
  }
  return out;
}

}  // namespace crackseg
