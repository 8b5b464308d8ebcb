#include "src/config/toml_json.hpp"

#include <fstream>
#include <sstream>

#include <toml.hpp>

#include "src/core/error.hpp"

namespace crackseg::config {
namespace {

using json = nlohmann::json;

template <typename T>
std::string streamed(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

json to_json(const toml::value& v) {
  switch (v.type()) {
    case toml::value_t::boolean: return v.as_boolean();
    case toml::value_t::integer: return static_cast<int64_t>(v.as_integer());
    case toml::value_t::floating: return static_cast<double>(v.as_floating());
    case toml::value_t::string: return v.as_string().str;
    case toml::value_t::offset_datetime: return streamed(v.as_offset_datetime());
    case toml::value_t::local_datetime: return streamed(v.as_local_datetime());
    case toml::value_t::local_date: return streamed(v.as_local_date());
    case toml::value_t::local_time: return streamed(v.as_local_time());
    case toml::value_t::array: {
      json out = json::array();
      for (const auto& e : v.as_array()) out.push_back(to_json(e));
      return out;
    }
    case toml::value_t::table: {
      json out = json::object();
      for (const auto& [k, e] : v.as_table()) out[k] = to_json(e);
      return out;
    }
    case toml::value_t::empty: break;
  }
  return nullptr;
}

toml::value parse_toml_value(std::string_view text, const std::string& source_name) {
  std::istringstream is{std::string(text)};
  return toml::parse(is, source_name);
}

}  // namespace

nlohmann::json parse_toml(std::string_view text, const std::string& source_name) {
  try {
    return to_json(parse_toml_value(text, source_name));
  } catch (const toml::exception& e) {
    throw InputError("config file " + source_name + " is not valid TOML: " + e.what());
  } catch (const std::runtime_error& e) {  // toml11 reports some errors as runtime_error
    throw InputError("config file " + source_name + " is not valid TOML: " + e.what());
  }
}

nlohmann::json load_toml_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open config file " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError("cannot read config file " + path.string());
  return parse_toml(ss.str(), path.string());
}

nlohmann::json parse_override_value(std::string_view text) {
  // A newline or '=' could smuggle in a second key; such text is only ever a literal string.
  if (text.find('\n') == std::string_view::npos) {
    try {
      const toml::value doc = parse_toml_value("v = " + std::string(text), "override");
      const auto& table = doc.as_table();
      if (table.size() == 1 && table.count("v") == 1) return to_json(table.at("v"));
    } catch (const std::exception&) {
      // not a TOML value: fall through to the bare-word string
    }
  }
  return std::string(text);
}

}  // namespace crackseg::config
