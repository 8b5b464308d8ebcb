#include "src/train/run_files.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "src/core/error.hpp"

namespace crackseg::train {

void write_file_atomic(const std::filesystem::path& path, const std::string& text) {
  const auto tmp = path.string() + ".tmp." + std::to_string(getpid());
  // A failed write (disk full) leaves the previous file and no temporary behind.
  const auto fail = [&](const std::string& what, int err) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw Error(what + " " + tmp + " (for " + path.string() + "): " + std::strerror(err));
  };
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("cannot write", errno);
    f << text;
    f.flush();
    if (!f) fail("write failed on", errno);
    f.close();
    if (!f) fail("closing failed for", errno);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("cannot rename", ec.value());
}

MetricsCsv::MetricsCsv(std::filesystem::path path) : path_(std::move(path)) {}

void MetricsCsv::load_existing(int64_t first_epoch) {
  std::ifstream f(path_);
  if (!f) return;
  std::string line;
  if (!std::getline(f, line)) return;
  columns_.clear();
  std::stringstream hs(line);
  for (std::string c; std::getline(hs, c, ',');) columns_.push_back(c);
  while (std::getline(f, line)) {
    std::stringstream ls(line);
    std::map<std::string, double> row;
    std::size_t i = 0;
    for (std::string cell; std::getline(ls, cell, ',') && i < columns_.size(); ++i)
      if (!cell.empty()) row[columns_[i]] = std::stod(cell);
    if (row.count("epoch") && row["epoch"] < static_cast<double>(first_epoch)) rows_.push_back(row);
  }
}

void MetricsCsv::append(const std::map<std::string, double>& row) {
  if (columns_.empty()) {
    columns_.push_back("epoch");
    for (const auto& [k, v] : row)
      if (k != "epoch") columns_.push_back(k);
  }
  rows_.push_back(row);
  write();
}

void MetricsCsv::write() const {
  std::ostringstream out;
  out.precision(9);
  for (std::size_t i = 0; i < columns_.size(); ++i) out << (i ? "," : "") << columns_[i];
  out << "\n";
  for (const auto& r : rows_) {
    for (std::size_t i = 0; i < columns_.size(); ++i) {
      if (i) out << ",";
      auto it = r.find(columns_[i]);
      if (it != r.end() && std::isfinite(it->second)) out << it->second;
    }
    out << "\n";
  }
  write_file_atomic(path_, out.str());
}

std::string plot_learning_curves(const std::filesystem::path& run_dir, const std::string& train_loss) {
  const std::filesystem::path script = std::filesystem::path(CRACKSEG_SCRIPTS_DIR) / "plot.py";
  if (!std::filesystem::exists(script)) return "plot script " + script.string() + " not found; no curves.png";
  // fork/exec, no shell: paths reach python as arguments, never as shell text.
  const pid_t pid = fork();
  if (pid < 0) return "fork failed; no curves.png";
  if (pid == 0) {
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    const std::string csv = (run_dir / "metrics.csv").string(), png = (run_dir / "curves.png").string();
    // Debian's interpreter first: python3-matplotlib is installed for it, while a python3
    // earlier on PATH (pyenv, conda) may lack matplotlib.
    execl("/usr/bin/python3", "python3", script.c_str(), "curves", csv.c_str(), png.c_str(), train_loss.c_str(),
          static_cast<char*>(nullptr));
    execlp("python3", "python3", script.c_str(), "curves", csv.c_str(), png.c_str(), train_loss.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3) return "matplotlib is not installed; no curves.png";
  return "plot script failed; no curves.png";
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  const long t = std::lround(s);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

}  // namespace crackseg::train
