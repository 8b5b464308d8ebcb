#include "slurm/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

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
  }
  return s;
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

SweepReport build_report(const fs::path& dir, const std::string& metric, bool ascending) {
  const auto spec = load_planned(dir);
  SweepReport r;
  r.swept = spec.swept_keys();
  r.ascending = ascending;
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
    } catch (const nlohmann::json::exception& e) {
      throw InputError(res.string() + ": " + e.what());
    }
    for (const auto& [k, v] : row.metrics) names.insert(k);
    r.tasks.push_back(std::move(row));
  }
  r.metric_names.assign(names.begin(), names.end());

  std::string want = !metric.empty() ? metric : !spec.metric.empty() ? spec.metric : "val_f1";
  r.sort_metric = resolve_metric(r.metric_names, want);
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
      return ascending ? ia->second.mean < ib->second.mean : ia->second.mean > ib->second.mean;
    });
  return r;
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
  ReportFiles f{dir / "results.csv", dir / "results.md", {}, {}};
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
  {
    std::ofstream md(f.md, std::ios::trunc);
    md << "# Sweep results: " << dir.filename().string() << "\n\n"
       << r.tasks.size() << " of " << r.planned << " tasks have results; " << r.configs.size()
       << " configurations. Cells are mean ± sample standard deviation over seeds (n = seeds with a result)";
    if (!r.sort_metric.empty()) md << "; sorted by " << r.sort_metric << (r.ascending ? " ascending" : " descending");
    md << ".\n\n| rank |";
    const bool by_axes = !r.swept.empty();
    if (by_axes)
      for (const auto& a : r.swept) md << " " << md_cell(a) << " |";
    else
      md << " configuration |";
    md << " n |";
    for (const auto& m : r.metric_names) md << " " << md_cell(m) << " |";
    md << "\n|---|";
    for (size_t i = 0; i < (by_axes ? r.swept.size() : 1) + 1 + r.metric_names.size(); ++i) md << "---|";
    md << "\n";
    int rank = 0;
    for (const auto& c : r.configs) {
      md << "| " << ++rank << " |";
      if (by_axes)
        for (const auto& a : r.swept) md << " " << md_cell(value_of(c.overrides, a)) << " |";
      else
        md << " " << md_cell(c.configuration.empty() ? "(base)" : c.configuration) << " |";
      md << " " << c.seeds.size() << " |";
      for (const auto& m : r.metric_names) {
        char buf[96] = "-";
        if (auto it = c.metrics.find(m); it != c.metrics.end())
          std::snprintf(buf, sizeof buf, "%.4f ± %.4f", it->second.mean, it->second.std);
        md << " " << buf << " |";
      }
      md << "\n";
    }
    if (!md.flush()) throw Error("cannot write " + f.md.string());
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
      in["curves"].push_back({{"label", r.configs[i].configuration.empty() ? "(base)" : r.configs[i].configuration},
                              {"files", files}});
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
