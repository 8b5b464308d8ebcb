#include "slurm/sweep_spec.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <toml.hpp>

#include "src/core/error.hpp"
#include "src/core/rng.hpp"

namespace crackseg::sweep {
namespace fs = std::filesystem;
using TValue = toml::basic_value<toml::discard_comments, std::map, std::vector>;

std::vector<std::string> SweepSpec::swept_keys() const {
  std::vector<std::string> k;
  for (const auto& a : grid) k.push_back(a.key);
  for (const auto& a : random) k.push_back(a.key);
  return k;
}

std::string format_double(double v) {
  char buf[400];
  // Plain decimals read best in tables (0.0001, not 1e-04); fall back to the shortest form
  // for very large or small magnitudes. Both round-trip exactly.
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  std::string s(buf, p);
  if (ec != std::errc{} || s.size() > 12) {
    auto [q, ec2] = std::to_chars(buf, buf + sizeof buf, v);
    s.assign(buf, q);
  }
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // "n": inf/nan stay as they are
  return s;
}

namespace {

[[noreturn]] void bad(const fs::path& file, const std::string& key, const std::string& what) {
  throw InputError(file.string() + ": " + key + ": " + what);
}

bool has_control(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// Text that goes into an #SBATCH line: one word of a safe alphabet (sbatch splits these lines
// itself, no shell involved, but a newline would start a new script line).
void check_word(const fs::path& file, const std::string& key, const std::string& v) {
  if (v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:,+-/=@%") !=
      std::string::npos)
    bad(file, key, "'" + v + "' may only hold letters, digits and _ . : , + - / = @ %");
}

void check_config_key(const fs::path& file, const std::string& section, const std::string& key) {
  if (key.empty() || key.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
                         std::string::npos ||
      key.front() == '.' || key.back() == '.')
    bad(file, section + "." + key, "a config key is dotted names of letters, digits, _ and -");
}

// A string stays a string through `crackseg train`'s override parser (which reads a TOML
// value, else a bare word): plain words go bare (loss.name=bce), anything else as a JSON
// string, which TOML reads back as the same string ("1e-3", "true", "", paths, quotes).
// Never shell syntax: overrides only travel in the manifest.
std::string override_string(const std::string& v) {
  const bool word = !v.empty() && (std::isalpha(static_cast<unsigned char>(v[0])) || v[0] == '_') &&
                    v.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
                        std::string::npos &&
                    v != "true" && v != "false" && v != "inf" && v != "nan";
  return word ? v : nlohmann::json(v).dump();
}

std::string format_value(const fs::path& file, const std::string& key, const TValue& v) {
  switch (v.type()) {
    case toml::value_t::integer: return std::to_string(v.as_integer());
    case toml::value_t::floating: return format_double(v.as_floating());
    case toml::value_t::boolean: return v.as_boolean() ? "true" : "false";
    case toml::value_t::string: return override_string(v.as_string().str);
    default: bad(file, key, "values must be integers, floats, booleans or strings");
  }
}

// Flattens nested tables into dotted keys; a table holding `dist` is a leaf (a distribution).
void flatten(const TValue& t, const std::string& prefix, std::vector<std::pair<std::string, TValue>>& out) {
  for (const auto& [k, v] : t.as_table()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (v.is_table() && !v.contains("dist")) flatten(v, key, out);
    else out.emplace_back(key, v);
  }
}

void merge_into(TValue& dst, const TValue& src) {
  for (const auto& [k, v] : src.as_table()) {
    auto& d = dst.as_table();
    if (v.is_table() && d.count(k) && d.at(k).is_table()) merge_into(d.at(k), v);
    else d[k] = v;
  }
}

template <class T>
T get_or(const fs::path& file, const TValue& t, const std::string& section, const std::string& key, T dflt) {
  if (!t.contains(key)) return dflt;
  try {
    return toml::get<T>(t.at(key));
  } catch (const std::exception& e) {
    bad(file, section.empty() ? key : section + "." + key, std::string("wrong type: ") + e.what());
  }
}

double draw(const RandomAxis& a, SampleRng& rng) {
  const double u = rng.uniform_double();
  switch (a.dist) {
    case RandomAxis::Dist::uniform: return a.low + (a.high - a.low) * u;
    case RandomAxis::Dist::loguniform:
      return std::exp(std::log(a.low) + (std::log(a.high) - std::log(a.low)) * u);
    case RandomAxis::Dist::randint: return std::floor(a.low + (a.high - a.low + 1) * u);
    case RandomAxis::Dist::choice: break;
  }
  return 0;
}

}  // namespace

SweepSpec load_sweep(const fs::path& file_in, bool reduced, const fs::path& out_override) {
  const fs::path file = fs::absolute(file_in).lexically_normal();
  TValue root;
  try {
    root = toml::parse<toml::discard_comments, std::map, std::vector>(file.string());
  } catch (const std::exception& e) {
    throw InputError("cannot read sweep file " + file.string() + ": " + e.what());
  }
  if (reduced) {
    if (!root.contains("reduced")) bad(file, "reduced", "--reduced given but the file has no [reduced] table");
    const TValue red = root.at("reduced");
    merge_into(root, red);
  }
  static const std::set<std::string> known = {"name", "base", "out", "seeds", "metric", "fixed", "grid",
                                              "random", "resources", "reduced", "trainer", "workdir"};
  for (const auto& [k, v] : root.as_table())
    if (!known.count(k)) bad(file, k, "unknown key (known: name base out seeds metric trainer workdir [fixed] [grid] [random] [resources] [reduced])");

  SweepSpec s;
  s.sweep_file = file;
  const fs::path here = file.parent_path();
  s.name = get_or<std::string>(file, root, "", "name", file.stem().string());
  check_word(file, "name", s.name);
  if (!root.contains("base")) bad(file, "base", "missing: the base run config (relative to the sweep file)");
  s.base_config = (here / get_or<std::string>(file, root, "", "base", "")).lexically_normal();
  if (!fs::exists(s.base_config)) bad(file, "base", "no such file " + s.base_config.string());
  s.out_dir = !out_override.empty() ? fs::absolute(out_override).lexically_normal()
                                    : (here / get_or<std::string>(file, root, "", "out", "runs/" + s.name)).lexically_normal();
  s.workdir = (here / get_or<std::string>(file, root, "", "workdir", ".")).lexically_normal();
  if (!fs::is_directory(s.workdir)) bad(file, "workdir", "no such folder " + s.workdir.string());
  for (auto v : get_or<std::vector<int64_t>>(file, root, "", "seeds", {})) {
    if (v < 0) bad(file, "seeds", "seeds are non-negative integers");
    s.seeds.push_back(static_cast<uint64_t>(v));
  }
  if (s.seeds.empty()) bad(file, "seeds", "give at least one seed, e.g. seeds = [126]");
  if (std::set<uint64_t>(s.seeds.begin(), s.seeds.end()).size() != s.seeds.size()) bad(file, "seeds", "repeated seed");
  s.metric = get_or<std::string>(file, root, "", "metric", "");
  s.trainer = get_or<std::vector<std::string>>(file, root, "", "trainer", {});

  std::set<std::string> used;
  auto claim = [&](const std::string& section, const std::string& key) {
    check_config_key(file, section, key);
    if (key == "train.seed") bad(file, section + "." + key, "seeds come from `seeds`, not from an axis");
    if (key == "train.out") bad(file, section + "." + key, "each task writes into its own folder under `out`");
    if (!used.insert(key).second) bad(file, section + "." + key, "key given twice (fixed/grid/random)");
  };
  std::vector<std::pair<std::string, TValue>> flat;
  if (root.contains("fixed")) {
    flatten(root.at("fixed"), "", flat);
    for (const auto& [k, v] : flat) {
      claim("fixed", k);
      s.fixed.push_back(k + "=" + format_value(file, "fixed." + k, v));
    }
  }
  if (root.contains("grid")) {
    flat.clear();
    flatten(root.at("grid"), "", flat);
    for (const auto& [k, v] : flat) {
      claim("grid", k);
      if (!v.is_array() || v.as_array().empty()) bad(file, "grid." + k, "an axis is a non-empty list of values");
      GridAxis a{k, {}};
      for (const auto& e : v.as_array()) a.values.push_back(format_value(file, "grid." + k, e));
      s.grid.push_back(std::move(a));
    }
  }
  if (root.contains("random")) {
    const auto& r = root.at("random");
    s.samples = static_cast<int>(get_or<int64_t>(file, r, "random", "samples", 0));
    s.random_seed = static_cast<uint64_t>(get_or<int64_t>(file, r, "random", "seed", 0));
    if (s.samples < 1) bad(file, "random.samples", "need samples >= 1 when [random] has axes");
    flat.clear();
    flatten(r, "", flat);
    for (const auto& [k, v] : flat) {
      if (k == "samples" || k == "seed") continue;
      claim("random", k);
      const std::string where = "random." + k;
      if (!v.is_table()) bad(file, where, "a random axis is { dist = \"uniform\"|\"loguniform\"|\"randint\"|\"choice\", ... }");
      RandomAxis a;
      a.key = k;
      const auto dist = get_or<std::string>(file, v, where, "dist", "");
      if (dist == "choice") {
        a.dist = RandomAxis::Dist::choice;
        if (!v.contains("values") || !v.at("values").is_array() || v.at("values").as_array().empty())
          bad(file, where + ".values", "choice needs a non-empty list `values`");
        for (const auto& e : v.at("values").as_array()) a.choices.push_back(format_value(file, where, e));
      } else {
        if (dist == "uniform") a.dist = RandomAxis::Dist::uniform;
        else if (dist == "loguniform") a.dist = RandomAxis::Dist::loguniform;
        else if (dist == "randint") a.dist = RandomAxis::Dist::randint;
        else bad(file, where + ".dist", "'" + dist + "' is not one of choice, uniform, loguniform, randint");
        if (!v.contains("low") || !v.contains("high")) bad(file, where, dist + " needs low and high");
        auto num = [&](const char* n) {
          const auto& x = v.at(n);
          if (x.is_integer()) return static_cast<double>(x.as_integer());
          if (x.is_floating()) return x.as_floating();
          bad(file, where + "." + n, "must be a number");
        };
        a.low = num("low");
        a.high = num("high");
        if (!(a.low < a.high) && !(a.dist == RandomAxis::Dist::randint && a.low == a.high))
          bad(file, where, "need low < high");
        if (a.dist == RandomAxis::Dist::loguniform && a.low <= 0) bad(file, where + ".low", "loguniform needs low > 0");
      }
      s.random.push_back(std::move(a));
    }
    if (s.random.empty()) s.samples = 0;
  }

  if (root.contains("resources")) {
    const auto& r = root.at("resources");
    static const std::set<std::string> rk = {"ranks", "cpus_per_rank", "gpus", "nodes", "ntasks_per_node", "time", "partition", "account",
                                             "extra_sbatch", "modules", "max_concurrent", "grace"};
    for (const auto& [k, v] : r.as_table())
      if (!rk.count(k)) bad(file, "resources." + k, "unknown key (known: ranks cpus_per_rank gpus nodes ntasks_per_node time partition account extra_sbatch modules max_concurrent grace)");
    auto& R = s.resources;
    R.ranks = static_cast<int>(get_or<int64_t>(file, r, "resources", "ranks", 1));
    R.cpus_per_rank = static_cast<int>(get_or<int64_t>(file, r, "resources", "cpus_per_rank", 1));
    R.gpus = static_cast<int>(get_or<int64_t>(file, r, "resources", "gpus", 0));
    R.nodes = static_cast<int>(get_or<int64_t>(file, r, "resources", "nodes", 0));
    R.ntasks_per_node = static_cast<int>(get_or<int64_t>(file, r, "resources", "ntasks_per_node", 0));
    if (R.nodes < 0 || R.ntasks_per_node < 0) bad(file, "resources", "nodes and ntasks_per_node >= 0 (0 = not given)");
    if (R.nodes > 0 && R.ntasks_per_node > 0) {
      const int64_t total = int64_t{R.nodes} * R.ntasks_per_node;
      if (r.contains("ranks") && total != R.ranks)
        bad(file, "resources.ranks", std::to_string(R.ranks) + " != nodes x ntasks_per_node = " + std::to_string(R.nodes) +
                                         " x " + std::to_string(R.ntasks_per_node) + " (leave ranks out)");
      R.ranks = static_cast<int>(total);
    } else if (R.ntasks_per_node > 0 && R.ranks % R.ntasks_per_node != 0) {
      bad(file, "resources.ranks", std::to_string(R.ranks) + " is not a multiple of ntasks_per_node = " +
                                       std::to_string(R.ntasks_per_node));
    } else if (R.nodes > 0 && R.ranks < R.nodes) {
      bad(file, "resources.ranks", std::to_string(R.ranks) + " ranks cannot span nodes = " + std::to_string(R.nodes));
    }
    R.time = get_or<std::string>(file, r, "resources", "time", "");
    R.partition = get_or<std::string>(file, r, "resources", "partition", "");
    R.account = get_or<std::string>(file, r, "resources", "account", "");
    R.extra_sbatch = get_or<std::vector<std::string>>(file, r, "resources", "extra_sbatch", {});
    R.modules = get_or<std::vector<std::string>>(file, r, "resources", "modules", {});
    R.max_concurrent = static_cast<int>(get_or<int64_t>(file, r, "resources", "max_concurrent", 0));
    R.grace_s = static_cast<int>(get_or<int64_t>(file, r, "resources", "grace", 120));
    if (R.ranks < 1 || R.cpus_per_rank < 1 || R.gpus < 0 || R.max_concurrent < 0 || R.grace_s < 0)
      bad(file, "resources", "ranks and cpus_per_rank >= 1; gpus, max_concurrent, grace >= 0");
    check_word(file, "resources.time", R.time);
    check_word(file, "resources.partition", R.partition);
    check_word(file, "resources.account", R.account);
    for (const auto& e : R.extra_sbatch) {
      if (e.rfind("-", 0) != 0 || has_control(e)) bad(file, "resources.extra_sbatch", "'" + e + "': each entry is one sbatch option starting with '-', on one line");
      // sbatch splits #SBATCH lines at whitespace: "--opt=value" or "--opt value", nothing more.
      std::istringstream words(e);
      std::vector<std::string> w{std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
      if (w.size() > 2 || (w.size() == 2 && (w[0].find('=') != std::string::npos || w[1].rfind("-", 0) == 0)))
        bad(file, "resources.extra_sbatch", "'" + e + "': sbatch would split this at its spaces; give one option "
                                            "as \"--opt=value\" (values cannot contain spaces in #SBATCH lines)");
    }
    for (const auto& m : R.modules)
      if (m.empty() || has_control(m)) bad(file, "resources.modules", "module names are non-empty single lines");
  }
  return s;
}

std::vector<PlannedTask> expand(const SweepSpec& spec) {
  // Grid points in odometer order, last axis fastest.
  std::vector<std::vector<std::string>> points{{}};
  for (const auto& axis : spec.grid) {
    std::vector<std::vector<std::string>> next;
    for (const auto& p : points)
      for (const auto& v : axis.values) {
        auto q = p;
        q.push_back(axis.key + "=" + v);
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  // Random draws are a pure function of (random seed, sample, axis): re-planning reproduces them.
  std::vector<std::vector<std::string>> draws;
  for (int smp = 0; smp < std::max(spec.samples, 1); ++smp) {
    std::vector<std::string> d;
    for (size_t a = 0; a < spec.random.size(); ++a) {
      const auto& ax = spec.random[a];
      SampleRng rng(spec.random_seed, static_cast<uint64_t>(smp), a, Purpose::split);
      std::string v;
      if (ax.dist == RandomAxis::Dist::choice) {
        v = ax.choices[rng.below(static_cast<uint32_t>(ax.choices.size()))];
      } else if (ax.dist == RandomAxis::Dist::randint) {
        v = std::to_string(static_cast<long long>(draw(ax, rng)));
      } else {
        char buf[64];  // 6 significant digits: tables stay readable, values stay distinct
        std::snprintf(buf, sizeof buf, "%.6g", draw(ax, rng));
        v = format_double(std::strtod(buf, nullptr));
      }
      d.push_back(ax.key + "=" + v);
    }
    draws.push_back(std::move(d));
  }
  std::vector<PlannedTask> tasks;
  for (const auto& p : points)
    for (const auto& d : draws)
      for (uint64_t seed : spec.seeds) {
        PlannedTask t;
        t.overrides = spec.fixed;
        t.overrides.insert(t.overrides.end(), p.begin(), p.end());
        t.overrides.insert(t.overrides.end(), d.begin(), d.end());
        t.seed = seed;
        tasks.push_back(std::move(t));
      }
  return tasks;
}

nlohmann::json spec_to_json(const SweepSpec& s) {
  nlohmann::ordered_json r;
  const auto& R = s.resources;
  r = {{"ranks", R.ranks}, {"cpus_per_rank", R.cpus_per_rank}, {"gpus", R.gpus}, {"nodes", R.nodes},
       {"ntasks_per_node", R.ntasks_per_node}, {"time", R.time},
       {"partition", R.partition}, {"account", R.account}, {"extra_sbatch", R.extra_sbatch},
       {"modules", R.modules}, {"max_concurrent", R.max_concurrent}, {"grace", R.grace_s}};
  nlohmann::json j;
  j["sweep_file"] = s.sweep_file.string();
  j["name"] = s.name;
  j["base"] = s.base_config.string();
  j["out"] = s.out_dir.string();
  j["workdir"] = s.workdir.string();
  j["seeds"] = s.seeds;
  j["metric"] = s.metric;
  j["swept"] = s.swept_keys();
  j["trainer"] = s.trainer;
  j["resources"] = nlohmann::json::parse(r.dump());
  return j;
}

SweepSpec spec_from_json(const nlohmann::json& j) {
  SweepSpec s;
  try {
    s.sweep_file = j.at("sweep_file").get<std::string>();
    s.name = j.at("name").get<std::string>();
    s.base_config = j.at("base").get<std::string>();
    s.out_dir = j.at("out").get<std::string>();
    s.workdir = j.at("workdir").get<std::string>();
    s.seeds = j.at("seeds").get<std::vector<uint64_t>>();
    s.metric = j.at("metric").get<std::string>();
    s.trainer = j.at("trainer").get<std::vector<std::string>>();
    for (const auto& k : j.at("swept")) s.grid.push_back({k.get<std::string>(), {}});
    const auto& r = j.at("resources");
    auto& R = s.resources;
    R.ranks = r.at("ranks");
    R.cpus_per_rank = r.at("cpus_per_rank");
    R.gpus = r.at("gpus");
    R.nodes = r.value("nodes", 0);  // absent in sweeps planned before multi-node resources
    R.ntasks_per_node = r.value("ntasks_per_node", 0);
    R.time = r.at("time");
    R.partition = r.at("partition");
    R.account = r.at("account");
    R.extra_sbatch = r.at("extra_sbatch").get<std::vector<std::string>>();
    R.modules = r.at("modules").get<std::vector<std::string>>();
    R.max_concurrent = r.at("max_concurrent");
    R.grace_s = r.at("grace");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(std::string("bad sweep.json: ") + e.what());
  }
  return s;
}

}  // namespace crackseg::sweep
