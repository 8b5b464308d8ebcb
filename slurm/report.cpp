#include "slurm/report.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <limits>
#include <random>
#include <set>
#include <sstream>

#include "slurm/plan.hpp"
#include "slurm/process.hpp"
#include "src/core/error.hpp"

namespace crackseg::sweep {
namespace fs = std::filesystem;

Stat mean_std(const std::vector<double>& v) {
  Stat s;
  s.n = static_cast<int>(v.size());
  if (v.empty()) return s;
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / s.n;
  if (s.n > 1) {
    double ss = 0;  // two-pass: no cancellation for metrics near 1 with tiny spread
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / (s.n - 1));
    s.ci95 = student_t_quantile(0.975, s.n - 1) * s.std / std::sqrt(static_cast<double>(s.n));
  } else {
    s.ci95 = std::numeric_limits<double>::quiet_NaN();
  }
  return s;
}

namespace {
// Continued fraction of the regularized incomplete beta function (Lentz's method).
double beta_cf(double a, double b, double x) {
  const double tiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 500; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (std::fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-15) break;
  }
  return h;
}

// I_x(a, b).
double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_cf(a, b, x) / a;
  return 1 - front * beta_cf(b, a, 1 - x) / b;
}
}  // namespace

double student_t_cdf(double t, double df) {
  // tail = P(T < -|t|) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2); for small |t| through
  // the complement I_y(1/2, df/2), y = t^2 / (df + t^2), so that x near 1 keeps its digits.
  const double x = df / (df + t * t), y = t * t / (df + t * t);
  const double tail = x < 0.5 ? 0.5 * incomplete_beta(df / 2, 0.5, x) : 0.5 * (1 - incomplete_beta(0.5, df / 2, y));
  return t >= 0 ? 1 - tail : tail;
}

double student_t_quantile(double p, double df) {
  if (!(p > 0 && p < 1) || !(df > 0)) return std::numeric_limits<double>::quiet_NaN();
  double lo = -1e7, hi = 1e7;
  for (int i = 0; i < 300 && hi - lo > 1e-13 * std::max(1.0, std::fabs(lo)); ++i) {
    const double mid = 0.5 * (lo + hi);
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

double wilcoxon_signed_rank_p(const std::vector<double>& diffs) {
  std::vector<double> d;
  for (double x : diffs)
    if (x != 0) d.push_back(x);
  const size_t n = d.size();
  if (n == 0) return 1;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return std::fabs(d[a]) < std::fabs(d[b]); });
  double w_plus = 0, tie_term = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && std::fabs(d[order[j + 1]]) == std::fabs(d[order[i]])) ++j;
    const double rank = 0.5 * static_cast<double>(i + j) + 1;  // average of ranks i+1 .. j+1
    const double t = static_cast<double>(j - i + 1);
    tie_term += t * t * t - t;
    for (size_t k = i; k <= j; ++k)
      if (d[order[k]] > 0) w_plus += rank;
    i = j + 1;
  }
  const double nn = static_cast<double>(n);
  const double mean = nn * (nn + 1) / 4;
  const double var = nn * (nn + 1) * (2 * nn + 1) / 24 - tie_term / 48;
  if (var <= 0) return 1;
  const double z = (w_plus - mean) / std::sqrt(var);
  return std::erfc(std::fabs(z) / std::sqrt(2.0));
}

void paired_statistics(const std::vector<double>& diffs, PairedTest& out, int resamples, uint64_t seed) {
  out.images = static_cast<int64_t>(diffs.size());
  if (diffs.empty()) {
    out.note = "no common test images";
    return;
  }
  double sum = 0;
  for (double x : diffs) sum += x;
  const double n = static_cast<double>(diffs.size());
  out.mean_diff = sum / n;
  std::mt19937_64 gen(seed);  // fixed algorithm and seed: the same interval on every machine
  std::vector<double> means(static_cast<size_t>(resamples));
  for (auto& m : means) {
    double acc = 0;
    for (size_t k = 0; k < diffs.size(); ++k) acc += diffs[gen() % diffs.size()];
    m = acc / n;
  }
  std::sort(means.begin(), means.end());
  auto pct = [&](double q) {  // linear interpolation between order statistics
    const double pos = q * static_cast<double>(means.size() - 1);
    const size_t i = static_cast<size_t>(pos);
    const double f = pos - static_cast<double>(i);
    return i + 1 < means.size() ? means[i] * (1 - f) + means[i + 1] * f : means[i];
  };
  out.ci_lo = pct(0.025);
  out.ci_hi = pct(0.975);
  out.wilcoxon_p = wilcoxon_signed_rank_p(diffs);
}

void flatten_metrics(const nlohmann::json& j, const std::string& prefix, std::map<std::string, double>& out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) flatten_metrics(v, prefix.empty() ? k : prefix + "." + k, out);
  } else if (j.is_number() && !prefix.empty()) {
    out[prefix] = j.get<double>();
  }
}

namespace {

std::string value_of(const std::vector<std::string>& overrides, const std::string& key) {
  for (const auto& o : overrides)
    if (o.size() > key.size() && o.compare(0, key.size(), key) == 0 && o[key.size()] == '=') return o.substr(key.size() + 1);
  return {};
}

// A swept value as a table shows it: TOML string quotes removed ("dice" -> dice).
std::string display_value(const std::string& v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') return v.substr(1, v.size() - 2);
  return v;
}

// A configuration by its swept values only: "loss.name=dice, optim.lr=0.1".
std::string label_of(const std::vector<std::string>& swept, const ConfigRow& c) {
  std::string label;
  for (const auto& a : swept) label += (label.empty() ? "" : ", ") + a + "=" + display_value(value_of(c.overrides, a));
  if (label.empty()) label = c.configuration.empty() ? "(base)" : c.configuration;
  return label;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string md_cell(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '|') o += "\\|";
    else if (c == '\n' || c == '\r') o += ' ';
    else o += c;
  }
  return o;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string resolve_metric(const std::vector<std::string>& names, const std::string& want) {
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  if (has(want)) return want;
  if (has("final." + want)) return "final." + want;
  if (has("best." + want)) return "best." + want;
  for (const auto& n : names)
    if (n.size() > want.size() + 1 && n.compare(n.size() - want.size() - 1, std::string::npos, "." + want) == 0) return n;
  return {};
}

// The first interpreter that can import matplotlib: a pyenv or venv python3 first on PATH
// often lacks it while the system's has it.
std::string python_with_matplotlib() {
  std::vector<std::string> candidates;
  if (const char* e = std::getenv("CRACKSEG_PYTHON"); e && *e) candidates.emplace_back(e);
  candidates.emplace_back("python3");
  candidates.emplace_back("/usr/bin/python3");
  for (const auto& py : candidates)
    if (run_process({py, "-c", "import matplotlib"}).exit_code == 0) return py;
  return {};
}

}  // namespace

namespace {

// Numbers of result.json outside "metrics" that the table uses.
void add_extras(const nlohmann::json& j, std::map<std::string, double>& out) {
  auto num_at = [&](const nlohmann::json& o, const char* k, const char* name) {
    if (o.is_object() && o.contains(k) && o.at(k).is_number()) out[name] = o.at(k).get<double>();
  };
  num_at(j, "parameters", "params");
  num_at(j, "epochs_done", "epochs");
  if (j.contains("timings")) num_at(j.at("timings"), "total_s", "train_time_s");
  if (j.contains("best")) num_at(j.at("best"), "epoch", "best_epoch");
}

// One CSV line split into fields (RFC 4180 quotes).
std::vector<std::string> csv_split(const std::string& line) {
  std::vector<std::string> f(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') f.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else f.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      f.emplace_back();
    } else if (c != '\r') {
      f.back() += c;
    }
  }
  return f;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// name -> F1 of a per-image CSV (`crackseg eval --per-image`, the trainer's
// test_per_image.csv): columns found by header, "name" and "F1" (any case).
std::map<std::string, double> read_per_image_f1(const fs::path& path) {
  std::ifstream in(path);
  std::map<std::string, double> out;
  std::string line;
  if (!in || !std::getline(in, line)) return out;
  const auto head = csv_split(line);
  int name_col = -1, f1_col = -1;
  for (size_t i = 0; i < head.size(); ++i) {
    const auto h = lower(head[i]);
    if (h == "name") name_col = static_cast<int>(i);
    if (h == "f1") f1_col = static_cast<int>(i);
  }
  if (name_col < 0 || f1_col < 0) throw InputError(path.string() + ": header lacks a 'name' or 'F1' column: " + line);
  size_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    const auto f = csv_split(line);
    if (f.size() <= static_cast<size_t>(std::max(name_col, f1_col)))
      throw InputError(path.string() + ":" + std::to_string(lineno) + ": too few fields");
    try {
      out[f[static_cast<size_t>(name_col)]] = std::stod(f[static_cast<size_t>(f1_col)]);
    } catch (const std::exception&) {
      throw InputError(path.string() + ":" + std::to_string(lineno) + ": F1 '" + f[static_cast<size_t>(f1_col)] +
                       "' is not a number");
    }
  }
  return out;
}

// The trainer's per-image test scores: of the best checkpoint, else of the final weights.
constexpr const char* kBestPerImageFile = "best_test_per_image.csv";
constexpr const char* kPerImageFile = "test_per_image.csv";

PairedTest compare(const fs::path& dir, const SweepReport& r, const ConfigRow& a, const ConfigRow& b) {
  PairedTest t;
  t.a = label_of(r.swept, a);
  t.b = label_of(r.swept, b);
  auto per_seed = [&](const ConfigRow& c) {
    std::map<uint64_t, std::map<std::string, double>> m;
    for (const auto& task : r.tasks)
      if (task.task.configuration() == c.configuration)
        for (const char* name : {kBestPerImageFile, kPerImageFile})
          if (const fs::path f = dir / task.task.dir / name; fs::exists(f)) {
            m[task.task.seed] = read_per_image_f1(f);
            break;
          }
    return m;
  };
  const auto fa = per_seed(a), fb = per_seed(b);
  std::map<std::string, std::pair<double, int>> by_image;  // name -> (sum of differences, seeds)
  for (const auto& [seed, imgs] : fa) {
    const auto ob = fb.find(seed);
    if (ob == fb.end()) continue;
    ++t.seeds;
    for (const auto& [name, f1] : imgs)
      if (auto it = ob->second.find(name); it != ob->second.end()) {
        by_image[name].first += f1 - it->second;
        ++by_image[name].second;
      }
  }
  if (t.seeds == 0) {
    t.note = std::string("no seed with ") + kBestPerImageFile + " or " + kPerImageFile + " for both";
    return t;
  }
  std::vector<double> diffs;
  for (const auto& [name, v] : by_image) diffs.push_back(v.first / v.second);
  paired_statistics(diffs, t);
  return t;
}

}  // namespace

SweepReport build_report(const fs::path& dir, const std::string& metric, bool ascending) {
  ReportOptions o;
  o.metric = metric;
  o.ascending = ascending;
  return build_report(dir, o);
}

std::vector<std::string> default_columns(const SweepReport& r) {
  std::vector<std::string> out;
  auto add = [&](const std::string& want) {
    const auto n = resolve_metric(r.metric_names, want);
    if (!n.empty() && std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  };
  for (const char* k : {"params", "train_time_s", "epochs", "best_epoch"}) add(k);
  if (!r.sort_metric.empty()) add(r.sort_metric);
  // Test metrics of the best checkpoint when the runs recorded them, else of the last weights.
  for (const char* m : {"f1", "precision", "recall", "iou", "map"}) {
    const std::string best = resolve_metric(r.metric_names, std::string("best_test_") + m);
    add(!best.empty() ? best : std::string("test_") + m);
  }
  return out;
}

SweepReport build_report(const fs::path& dir, const ReportOptions& opt) {
  const auto spec = load_planned(dir);
  SweepReport r;
  r.swept = spec.swept_keys();
  r.ascending = opt.ascending;
  std::set<std::string> names;
  const auto tasks = read_manifest(manifest_path(dir));
  r.planned = static_cast<int64_t>(tasks.size());
  for (const auto& t : tasks) {
    const fs::path res = dir / t.dir / "result.json";
    std::ifstream in(res);
    if (!in) continue;
    TaskRow row{t, {}};
    try {
      const auto j = nlohmann::json::parse(in);
      if (j.contains("metrics")) flatten_metrics(j.at("metrics"), "", row.metrics);
      add_extras(j, row.metrics);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(res.string() + ": " + e.what());
    }
    for (const auto& [k, v] : row.metrics) names.insert(k);
    r.tasks.push_back(std::move(row));
  }
  r.metric_names.assign(names.begin(), names.end());

  // Ranking is by the best epoch's value: a default val_* metric means best_val_* when the
  // runs recorded it. An explicit --metric is taken as named.
  const std::string& metric = opt.metric;
  std::string want = !metric.empty() ? metric : !spec.metric.empty() ? spec.metric : "val_f1";
  if (metric.empty() && want.rfind("val_", 0) == 0) r.sort_metric = resolve_metric(r.metric_names, "best_" + want);
  if (r.sort_metric.empty()) r.sort_metric = resolve_metric(r.metric_names, want);
  if (r.sort_metric.empty() && !metric.empty() && !r.metric_names.empty()) {
    std::string avail;
    for (const auto& n : r.metric_names) avail += " " + n;
    throw InputError("--metric " + metric + ": no such metric in the results; have:" + avail);
  }
  if (r.sort_metric.empty() && !r.metric_names.empty()) r.sort_metric = r.metric_names.front();

  std::map<std::string, size_t> index;  // configuration -> row, in first-seen (id) order
  for (const auto& t : r.tasks) {
    const auto key = t.task.configuration();
    auto [it, fresh] = index.emplace(key, r.configs.size());
    if (fresh) r.configs.push_back({key, t.task.overrides, {}, {}, {}});
    auto& c = r.configs[it->second];
    c.task_ids.push_back(t.task.id);
    c.seeds.push_back(t.task.seed);
  }
  for (auto& c : r.configs)
    for (const auto& m : r.metric_names) {
      std::vector<double> v;
      for (const auto& t : r.tasks)
        if (t.task.configuration() == c.configuration)
          if (auto it = t.metrics.find(m); it != t.metrics.end()) v.push_back(it->second);
      if (!v.empty()) c.metrics[m] = mean_std(v);
    }
  if (!r.sort_metric.empty())
    std::stable_sort(r.configs.begin(), r.configs.end(), [&](const ConfigRow& a, const ConfigRow& b) {
      const auto ia = a.metrics.find(r.sort_metric), ib = b.metrics.find(r.sort_metric);
      if (ia == a.metrics.end()) return false;  // configurations without the metric go last
      if (ib == b.metrics.end()) return true;
      return opt.ascending ? ia->second.mean < ib->second.mean : ia->second.mean > ib->second.mean;
    });

  if (opt.columns.empty()) {
    r.columns = default_columns(r);
  } else {
    for (const auto& c : opt.columns) {
      const auto n = resolve_metric(r.metric_names, c);
      if (n.empty() && !r.metric_names.empty()) {
        std::string avail;
        for (const auto& m : r.metric_names) avail += " " + m;
        throw InputError("--columns: no column '" + c + "' in the results; have:" + avail);
      }
      if (!n.empty()) r.columns.push_back(n);
    }
  }
  for (size_t i = 1; i < r.configs.size() && static_cast<int>(i) < opt.compare_top; ++i)
    r.paired.push_back(compare(dir, r, r.configs[0], r.configs[i]));
  return r;
}

TableFormat parse_table_format(const std::string& text) {
  if (text == "md") return TableFormat::md;
  if (text == "csv") return TableFormat::csv;
  if (text == "tex") return TableFormat::tex;
  throw InputError("--format '" + text + "': expected md, csv or tex");
}

namespace {

int decimals_of(const std::string& column) {
  if (column == "params") return 0;
  if (column == "train_time_s" || column == "epochs" || column == "best_epoch") return 1;
  return 4;
}

// "mean ± std [lo, hi]" (n >= 2) or "mean" (n = 1), with `pm` as the ± sign.
std::string stat_cell(const Stat& s, int dec, const std::string& pm) {
  char buf[160];
  if (s.n >= 2 && s.std > 1e-12 * std::max(1.0, std::fabs(s.mean)))  // not rounding noise of equal values
    std::snprintf(buf, sizeof buf, "%.*f%s%.*f [%.*f, %.*f]", dec, s.mean, pm.c_str(), dec, s.std, dec,
                  s.mean - s.ci95, dec, s.mean + s.ci95);
  else
    std::snprintf(buf, sizeof buf, "%.*f", dec, s.mean);
  return buf;
}

std::string tex_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '_' || c == '&' || c == '%' || c == '#' || c == '$' || c == '{' || c == '}') o += '\\';
    o += c;
  }
  return o;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

std::string format_table(const SweepReport& r, TableFormat f, const std::string& title) {
  std::ostringstream o;
  const bool by_axes = !r.swept.empty();
  auto config_cells = [&](const ConfigRow& c) {
    std::vector<std::string> v;
    if (by_axes)
      for (const auto& a : r.swept) v.push_back(display_value(value_of(c.overrides, a)));
    else
      v.push_back(c.configuration.empty() ? "(base)" : c.configuration);
    return v;
  };
  std::vector<std::string> head = {"rank"};
  if (by_axes) head.insert(head.end(), r.swept.begin(), r.swept.end());
  else head.push_back("configuration");
  head.push_back("n");
  if (f == TableFormat::csv) {
    for (size_t i = 0; i < head.size(); ++i) o << (i ? "," : "") << csv_field(head[i]);
    for (const auto& c : r.columns)
      for (const char* suf : {"_mean", "_std", "_ci95_lo", "_ci95_hi"}) o << "," << csv_field(c + suf);
    o << "\n";
    int rank = 0;
    for (const auto& c : r.configs) {
      o << ++rank;
      for (const auto& v : config_cells(c)) o << "," << csv_field(v);
      o << "," << c.seeds.size();
      for (const auto& col : r.columns) {
        const auto it = c.metrics.find(col);
        if (it == c.metrics.end()) {
          o << ",,,,";
          continue;
        }
        const Stat& s = it->second;
        o << "," << num(s.mean) << "," << (s.n >= 2 ? num(s.std) : "") << ","
          << (s.n >= 2 ? num(s.mean - s.ci95) : "") << "," << (s.n >= 2 ? num(s.mean + s.ci95) : "");
      }
      o << "\n";
    }
    return o.str();
  }
  if (f == TableFormat::tex) {
    o << "% " << title << ": mean $\\pm$ sample std over seeds [95% t interval]; ranked by " << tex_escape(r.sort_metric)
      << "\n\\begin{tabular}{" << std::string(head.size() + r.columns.size(), 'r') << "}\n\\hline\n";
    for (size_t i = 0; i < head.size(); ++i) o << (i ? " & " : "") << tex_escape(head[i]);
    for (const auto& c : r.columns) o << " & " << tex_escape(c);
    o << " \\\\\n\\hline\n";
    int rank = 0;
    for (const auto& c : r.configs) {
      o << ++rank;
      for (const auto& v : config_cells(c)) o << " & " << tex_escape(v);
      o << " & " << c.seeds.size();
      for (const auto& col : r.columns) {
        const auto it = c.metrics.find(col);
        o << " & " << (it == c.metrics.end() ? "--" : "$" + stat_cell(it->second, decimals_of(col), " \\pm ") + "$");
      }
      o << " \\\\\n";
    }
    o << "\\hline\n\\end{tabular}\n";
    return o.str();
  }
  o << "# Sweep results: " << title << "\n\n"
    << r.tasks.size() << " of " << r.planned << " tasks have results; " << r.configs.size()
    << " configurations. Cells are mean ± sample standard deviation over seeds [95% confidence interval, "
       "Student t with n-1 degrees of freedom] (n = seeds with a result; one seed: the value alone)";
  if (!r.sort_metric.empty()) o << "; ranked by " << r.sort_metric << (r.ascending ? " ascending" : " descending");
  o << ".\n\n|";
  for (const auto& h : head) o << " " << md_cell(h) << " |";
  for (const auto& c : r.columns) o << " " << md_cell(c) << " |";
  o << "\n|";
  for (size_t i = 0; i < head.size() + r.columns.size(); ++i) o << "---|";
  o << "\n";
  int rank = 0;
  for (const auto& c : r.configs) {
    o << "| " << ++rank << " |";
    for (const auto& v : config_cells(c)) o << " " << md_cell(v) << " |";
    o << " " << c.seeds.size() << " |";
    for (const auto& col : r.columns) {
      const auto it = c.metrics.find(col);
      o << " " << (it == c.metrics.end() ? std::string("-") : stat_cell(it->second, decimals_of(col), " ± ")) << " |";
    }
    o << "\n";
  }
  if (!r.paired.empty()) {
    o << "\n## Paired comparison on the test images\n\n"
      << "Per-image F1 of the best configuration minus each next one, from each task's " << kBestPerImageFile
      << " (the best checkpoint; else " << kPerImageFile << "), averaged over the seeds both ran; 95% paired bootstrap interval of the mean difference (10000 "
         "resamples of the images, fixed seed) and the two-sided Wilcoxon signed-rank p.\n\n"
      << "| A | B | images | seeds | mean F1(A) - F1(B) | 95% bootstrap CI | Wilcoxon p |\n|---|---|---|---|---|---|---|\n";
    for (const auto& p : r.paired) {
      o << "| " << md_cell(p.a) << " | " << md_cell(p.b) << " | ";
      if (!p.note.empty()) {
        o << p.images << " | " << p.seeds << " | " << md_cell(p.note) << " | - | - |\n";
        continue;
      }
      o << p.images << " | " << p.seeds << " | " << fmt("%.4f", p.mean_diff) << " | [" << fmt("%.4f", p.ci_lo) << ", "
        << fmt("%.4f", p.ci_hi) << "] | " << fmt("%.3g", p.wilcoxon_p) << " |\n";
    }
  }
  return o.str();
}

std::optional<fs::path> find_plot_script(const fs::path& exe) {
  if (const char* e = std::getenv("CRACKSEG_PLOT_SCRIPT"); e && *e) return fs::path(e);
  const fs::path bin = exe.parent_path();
  for (const fs::path& p : {bin / "../share/crackseg/plot.py", bin / "../../scripts/plot.py",
                            bin / "../scripts/plot.py", bin / "scripts/plot.py"})
    if (fs::exists(p)) return fs::weakly_canonical(p);
  return std::nullopt;
}

ReportFiles write_report(const fs::path& dir, const SweepReport& r, const fs::path& plot_script, std::ostream& log) {
  ReportFiles f;
  f.csv = dir / "results.csv";
  f.md = dir / "results.md";
  {
    std::ofstream csv(f.csv, std::ios::trunc);
    csv << "id,seed";
    for (const auto& a : r.swept) csv << "," << csv_field(a);
    csv << ",overrides";
    for (const auto& m : r.metric_names) csv << "," << csv_field(m);
    csv << "\n";
    for (const auto& t : r.tasks) {
      csv << t.task.id << "," << t.task.seed;
      for (const auto& a : r.swept) csv << "," << csv_field(value_of(t.task.overrides, a));
      csv << "," << csv_field(t.task.configuration());
      for (const auto& m : r.metric_names) {
        csv << ",";
        if (auto it = t.metrics.find(m); it != t.metrics.end()) csv << num(it->second);
      }
      csv << "\n";
    }
    if (!csv.flush()) throw Error("cannot write " + f.csv.string());
  }
  f.summary_csv = dir / "results_summary.csv";
  f.tex = dir / "results.tex";
  const std::string title = dir.filename().string();
  for (const auto& [path, fmt_] : {std::pair{f.md, TableFormat::md}, std::pair{f.summary_csv, TableFormat::csv},
                                   std::pair{f.tex, TableFormat::tex}}) {
    std::ofstream out(path, std::ios::trunc);
    out << format_table(r, fmt_, title);
    if (!out.flush()) throw Error("cannot write " + path.string());
  }

  // Plots are optional: matplotlib is never needed for anything but pictures.
  std::string python;
  if (r.tasks.empty() || r.sort_metric.empty()) {
    f.plot_note = "no results with metrics yet";
  } else if (plot_script.empty() || !fs::exists(plot_script)) {
    f.plot_note = "scripts/plot.py not found (set CRACKSEG_PLOT_SCRIPT)";
  } else if (python = python_with_matplotlib(); python.empty()) {
    f.plot_note = "no python3 with matplotlib ($CRACKSEG_PYTHON, python3, /usr/bin/python3; apt-get install python3-matplotlib)";
  } else {
    const fs::path plots = dir / "plots";
    fs::create_directories(plots);
    nlohmann::json in;
    in["csv"] = f.csv.string();
    in["metric"] = r.sort_metric;
    in["axes"] = r.swept;
    in["out"] = plots.string();
    in["curves"] = nlohmann::json::array();
    for (size_t i = 0; i < std::min<size_t>(3, r.configs.size()); ++i) {
      nlohmann::json files = nlohmann::json::array();
      for (const auto& t : r.tasks)
        if (t.task.configuration() == r.configs[i].configuration && fs::exists(dir / t.task.dir / "metrics.csv"))
          files.push_back((dir / t.task.dir / "metrics.csv").string());
      // Legend: the swept values only ("loss.name=dice, optim.lr=0.1"), nothing held fixed.
      in["curves"].push_back({{"label", label_of(r.swept, r.configs[i])}, {"files", files}});
    }
    std::ofstream(plots / "plot_input.json", std::ios::trunc) << in.dump(1) << "\n";
    auto p = run_process({python, plot_script.string(), "sweep", (plots / "plot_input.json").string()});
    if (p.exit_code != 0) {
      f.plot_note = "plot.py sweep failed (" + std::to_string(p.exit_code) + "): " + p.err;
    } else {
      f.plots = plots;
      log << p.out;
    }
  }
  return f;
}

}  // namespace crackseg::sweep
