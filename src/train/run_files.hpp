// The files of a run folder (train.out), written by rank 0 only:
//   config.json      the resolved config (with its hash)
//   metrics.csv      one row per epoch: epoch, step, lr, train_loss, val_* metrics, seconds
//   result.json      provenance (DESIGN.md item 7), final and best metrics, timings
//   curves.png       learning curves (scripts/plot.py; skipped with a note without matplotlib)
//   checkpoint.h5    latest checkpoint (resume point); best.h5: best validation metric
// Every file is written to a temporary name and renamed, so a crash leaves the old version.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace crackseg::train {

// Writes `text` to path atomically (temp file in the same folder, fsync, rename).
void write_file_atomic(const std::filesystem::path& path, const std::string& text);

// metrics.csv with a header fixed by the first row's keys; later rows may add no new keys
// (their missing keys are empty cells). Rewritten whole each time (small) so a resumed run
// continues the same file.
class MetricsCsv {
 public:
  explicit MetricsCsv(std::filesystem::path path);
  // Loads rows already in the file (resume): rows with epoch >= first_epoch are dropped.
  void load_existing(int64_t first_epoch);
  void append(const std::map<std::string, double>& row);
  [[nodiscard]] const std::vector<std::map<std::string, double>>& rows() const { return rows_; }

 private:
  void write() const;
  std::filesystem::path path_;
  std::vector<std::string> columns_;
  std::vector<std::map<std::string, double>> rows_;
};

// Runs the plot script on metrics.csv -> curves.png (the legend names `train_loss`, the
// configured training loss, beside the BCE validation loss); returns a note when it could not.
[[nodiscard]] std::string plot_learning_curves(const std::filesystem::path& run_dir, const std::string& train_loss = "");

// Rank 0 progress line: "epoch 2/10 step 37/120 loss 0.2314 lr 1.0e-03 41.2 samples/s ETA 3m12s".
[[nodiscard]] std::string format_duration(double seconds);

}  // namespace crackseg::train
