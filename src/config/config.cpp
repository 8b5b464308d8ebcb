#include "src/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>

#include "src/config/toml_json.hpp"
#include "src/core/error.hpp"

namespace crackseg::config {
namespace {

using json = nlohmann::json;

void record_origins(const json& v, const std::string& prefix, const Origin& origin,
                    std::map<std::string, Origin>& out) {
  if (v.is_object() && !v.empty()) {
    for (const auto& [k, e] : v.items()) record_origins(e, prefix.empty() ? k : prefix + "." + k, origin, out);
  } else if (!prefix.empty()) {
    out[prefix] = origin;
  }
}

// The origin of `dotted` or of its closest recorded ancestor (an inline-table override).
const Origin* find_origin(const RawConfig& raw, std::string dotted) {
  while (true) {
    if (auto it = raw.origins.find(dotted); it != raw.origins.end()) return &it->second;
    const auto dot = dotted.rfind('.');
    if (dot == std::string::npos) return nullptr;
    dotted.resize(dot);
  }
}

std::string origin_text(const RawConfig& raw, const std::string& dotted) {
  if (const Origin* o = find_origin(raw, dotted)) return o->where;
  return raw.file.empty() ? std::string("defaults") : raw.file;
}

std::string json_type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "float";
  if (v.is_boolean()) return "boolean";
  if (v.is_string()) return "string";
  if (v.is_array()) return "array";
  if (v.is_object()) return "table";
  return "null";
}

std::string shown(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return json_type_name(v) + " " + s;
}

[[noreturn]] void type_error(const std::string& dotted, const std::string& where, const KeySpec& spec,
                             const json& got) {
  throw InputError("config key " + dotted + " (from " + where + "): expected " + to_string(spec.type) +
                   ", got " + shown(got));
}

void check_min(const std::string& dotted, const std::string& where, const KeySpec& spec, double v) {
  if (!std::isfinite(v))
    throw InputError("config key " + dotted + " (from " + where + "): must be finite, got " + std::to_string(v));
  if (spec.min && v < *spec.min) {
    json shown_min = *spec.min;
    if (spec.type == ValueType::integer || spec.type == ValueType::int_array)
      shown_min = static_cast<int64_t>(*spec.min);
    throw InputError("config key " + dotted + " (from " + where + "): must be >= " + shown_min.dump() + ", got " +
                     json(v).dump());
  }
}

json check_element(const std::string& dotted, const std::string& where, const KeySpec& spec, ValueType t,
                   const json& v) {
  switch (t) {
    case ValueType::integer:
      if (!v.is_number_integer()) break;
      // The TOML reader saturates integers beyond 64 bits (a 23-digit seed read as 2^63 - 1).
      if (v.is_number_unsigned() ? v.get<uint64_t>() >= uint64_t{INT64_MAX}
                                 : v.get<int64_t>() == INT64_MAX || v.get<int64_t>() == INT64_MIN)
        throw InputError("config key " + dotted + " (from " + where + "): integer out of range (at most " +
                         std::to_string(INT64_MAX - 1) + " in magnitude)");
      check_min(dotted, where, spec, static_cast<double>(v.get<int64_t>()));
      return v.get<int64_t>();
    case ValueType::number:
      if (!v.is_number()) break;
      check_min(dotted, where, spec, v.get<double>());
      return v.get<double>();  // 1 and 1.0 resolve (and hash) alike
    case ValueType::boolean:
      if (!v.is_boolean()) break;
      return v;
    case ValueType::string:
      if (!v.is_string()) break;
      if (!spec.choices.empty() &&
          std::find(spec.choices.begin(), spec.choices.end(), v.get<std::string>()) == spec.choices.end()) {
        std::string list;
        for (const auto& c : spec.choices) list += (list.empty() ? "" : " | ") + c;
        throw InputError("config key " + dotted + " (from " + where + "): " + v.dump() + " is not one of " + list);
      }
      return v;
    default:
      return v;
  }
  type_error(dotted, where, spec, v);
}

json check_value(const RawConfig& raw, const std::string& dotted, const KeySpec& spec, const json& v) {
  const std::string where = origin_text(raw, dotted);
  const auto array_of = [&](ValueType element) {
    if (!v.is_array()) type_error(dotted, where, spec, v);
    json out = json::array();
    for (const auto& e : v) {
      if ((element == ValueType::integer && !e.is_number_integer()) ||
          (element == ValueType::number && !e.is_number()) || (element == ValueType::string && !e.is_string()))
        type_error(dotted, where, spec, v);
      out.push_back(check_element(dotted, where, spec, element, e));
    }
    return out;
  };
  switch (spec.type) {
    case ValueType::int_array: return array_of(ValueType::integer);
    case ValueType::number_array: return array_of(ValueType::number);
    case ValueType::string_array: return array_of(ValueType::string);
    case ValueType::any: return v;
    case ValueType::string:
      // `train.out=2024` on the command line means the string "2024", not the integer.
      if (!v.is_string())
        if (const Origin* o = find_origin(raw, dotted); o && o->raw_text)
          return check_element(dotted, where, spec, spec.type, json(*o->raw_text));
      [[fallthrough]];
    default: return check_element(dotted, where, spec, spec.type, v);
  }
}

[[noreturn]] void unknown_key(const RawConfig& raw, const std::string& dotted, const std::vector<std::string>& candidates) {
  std::string msg = "unknown config key '" + dotted + "' (from " + origin_text(raw, dotted) + ")";
  if (const std::string near = nearest_key(dotted, candidates); !near.empty()) msg += "; nearest valid key: " + near;
  throw InputError(msg);
}

void resolve_keys(const RawConfig& raw, const std::string& section, const std::vector<KeySpec>& keys,
                  const json& in, json& out) {
  for (const auto& spec : keys) {
    const std::string dotted = section + "." + spec.key;
    if (in.contains(spec.key)) {
      out[spec.key] = check_value(raw, dotted, spec, in.at(spec.key));
    } else if (spec.default_value.is_null()) {
      throw InputError("config key " + dotted + " is required (" + spec.help + ") but " +
                       (raw.file.empty() ? std::string("not set") : raw.file + " does not set it"));
    } else {
      out[spec.key] = spec.default_value;
    }
  }
}

}  // namespace

RawConfig raw_from_toml_text(std::string_view toml_text, const std::string& source_name) {
  RawConfig raw;
  raw.values = parse_toml(toml_text, source_name);
  raw.file = source_name;
  record_origins(raw.values, "", Origin{source_name, std::nullopt}, raw.origins);
  return raw;
}

RawConfig load_raw(const std::filesystem::path& toml_file) {
  RawConfig raw;
  raw.values = load_toml_file(toml_file);
  raw.file = toml_file.string();
  record_origins(raw.values, "", Origin{raw.file, std::nullopt}, raw.origins);
  return raw;
}

Override parse_override(std::string_view text) {
  const auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  const auto eq = text.find('=');
  if (eq == std::string_view::npos)
    throw InputError("override '" + std::string(text) + "' is not key=value (e.g. optim.lr=1e-4)");
  Override o;
  o.text = std::string(text);
  const std::string_view key = trim(text.substr(0, eq));
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string_view part = key.substr(start, dot == std::string_view::npos ? key.npos : dot - start);
    const bool ok = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    if (!ok)
      throw InputError("override '" + o.text + "': key '" + std::string(key) +
                       "' must be dotted names of letters, digits, _ and - (e.g. model.base)");
    o.path.emplace_back(part);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  o.value = parse_override_value(trim(text.substr(eq + 1)));
  return o;
}

void apply_override(RawConfig& cfg, const Override& o) {
  // A table value sets each of its keys: `train={epochs=1}` is `train.epochs=1` and keeps
  // the other [train] keys (replacing the whole table silently dropped them).
  if (o.value.is_object() && !o.value.empty()) {
    for (const auto& [k, v] : o.value.items()) {
      Override sub{o.path, v, o.text};
      sub.path.push_back(k);
      apply_override(cfg, sub);
    }
    return;
  }
  json* cur = &cfg.values;
  std::string dotted;
  for (std::size_t i = 0; i + 1 < o.path.size(); ++i) {
    dotted += (i ? "." : "") + o.path[i];
    json& next = (*cur)[o.path[i]];
    if (next.is_null()) next = json::object();
    if (!next.is_object())
      throw InputError("override '" + o.text + "': " + dotted + " is " + shown(next) + " (from " +
                       origin_text(cfg, dotted) + "), not a table");
    cur = &next;
  }
  (*cur)[o.path.back()] = o.value;
  dotted += (o.path.size() > 1 ? "." : "") + o.path.back();
  // Drop origins of whatever the override replaced (an inline table replaces a subtree).
  for (auto it = cfg.origins.lower_bound(dotted); it != cfg.origins.end() && it->first.starts_with(dotted);)
    it = (it->first.size() == dotted.size() || it->first[dotted.size()] == '.') ? cfg.origins.erase(it) : std::next(it);
  const auto eq = o.text.find('=');
  std::string raw_text = o.text.substr(eq + 1);
  raw_text.erase(0, raw_text.find_first_not_of(" \t"));
  raw_text.erase(raw_text.find_last_not_of(" \t") + 1);
  cfg.origins[dotted] = Origin{"override '" + o.text + "'", raw_text};
}

void apply_overrides(RawConfig& cfg, std::span<const std::string> overrides) {
  for (const auto& s : overrides) apply_override(cfg, parse_override(s));
}

ResolvedConfig resolve(const RawConfig& raw, const Schema& schema) {
  if (!raw.values.is_object()) throw InputError("config " + raw.file + " is not a table of sections");
  std::vector<std::string> candidates = schema.dotted_keys();
  for (const auto& [name, v] : raw.values.items()) {
    if (schema.find(name)) {
      if (!v.is_object())
        throw InputError("config key '" + name + "' (from " + origin_text(raw, name) + ") must be the section [" +
                         name + "] (a table), got " + shown(v));
      continue;
    }
    unknown_key(raw, v.is_object() && !v.empty() ? name + "." + v.items().begin().key() : name, candidates);
  }
  json out = json::object();
  for (const auto& sec : schema.sections()) {
    const json in = raw.values.contains(sec.name) ? raw.values.at(sec.name) : json::object();
    json sec_out = json::object();
    resolve_keys(raw, sec.name, sec.keys, in, sec_out);
    std::vector<KeySpec> extra;
    if (sec.dynamic) {
      extra = sec.dynamic(sec_out);
      resolve_keys(raw, sec.name, extra, in, sec_out);
    }
    for (const auto& [k, v] : in.items()) {
      if (sec_out.contains(k)) continue;
      if (sec.open && !sec.dynamic) {
        sec_out[k] = v;
        continue;
      }
      for (const auto& spec : extra) candidates.push_back(sec.name + "." + spec.key);
      unknown_key(raw, sec.name + "." + k, candidates);
    }
    out[sec.name] = std::move(sec_out);
  }
  ResolvedConfig r;
  r.canonical = canonical_json(out);
  r.hash = config_hash(out);
  r.values = std::move(out);
  return r;
}

ResolvedConfig load_run_config(const std::filesystem::path& toml_file, std::span<const std::string> overrides,
                               const Schema& schema) {
  RawConfig raw = load_raw(toml_file);
  apply_overrides(raw, overrides);
  return resolve(raw, schema);
}

ResolvedConfig from_resolved_json(const nlohmann::json& values, const std::string& source_name, const Schema& schema) {
  RawConfig raw;
  raw.values = values;
  raw.file = source_name;
  record_origins(raw.values, "", Origin{source_name, std::nullopt}, raw.origins);
  return resolve(raw, schema);
}

int64_t accumulation_steps(int64_t batch, int64_t micro_batch, int64_t ranks) {
  if (batch <= 0 || micro_batch <= 0 || ranks <= 0 || batch % (micro_batch * ranks) != 0)
    throw InputError("train.batch = " + std::to_string(batch) + " must be a positive multiple of ranks (" +
                     std::to_string(ranks) + ") x train.micro_batch (" + std::to_string(micro_batch) +
                     "): global batch = ranks x micro_batch x accumulation steps");
  return batch / (micro_batch * ranks);
}

}  // namespace crackseg::config
