// Ingestion of real image/mask folders into the crackseg HDF5 schema (io/dataset/dataset.hpp).
//
// Layouts:
//   pairs       DIR/images/* + DIR/masks/* matched by stem; the mask may also be called
//               <stem>_mask.* (in masks/ or beside the image). Source = the folder name of DIR.
//   crackseg9k  as pairs, the source taken from the file-name prefix `<source>_<id>`.
//   split-folders  DIR/train, DIR/test and optionally DIR/val (or validation/), each laid out
//               as pairs; the dataset's own split is kept (SplitSpec is not used, except
//               IngestOptions::val_from_train when there is no val/ folder). Source = the
//               folder name of DIR. A file name found in two splits is stored as
//               "<split>/<name>" so names stay unique.
//   cfd         CrackForest: DIR/image/*.jpg + DIR/seg/<stem>.seg (Berkeley segmentation text
//               format); crack = segment 1, or the segment ids given (`--cfd-segments 1,3`).
// Every pair is validated; each problem is an InputError naming the file, or with skip_bad a
// line in IngestResult::skipped. The output is written to a temporary name and renamed.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "io/dataset/writer.hpp"

namespace crackseg::io {

enum class Layout { pairs, crackseg9k, cfd, split_folders };
[[nodiscard]] Layout parse_layout(const std::string& text);  // InputError listing the choices

struct IngestOptions {
  std::filesystem::path dir, out;
  Layout layout = Layout::pairs;
  int height = 0, width = 0;        // 0 = keep the images' own size (then all must agree)
  SplitSpec split;
  bool skip_bad = false;
  std::vector<int> cfd_segments{1};  // segment ids that count as crack
  int threads = 0;                   // OpenMP threads for decoding; 0 = OpenMP default
  // split-folders without a val/ folder: this fraction of train (stratified by source,
  // seeded by split.seed) becomes val. 0 = the val split stays empty.
  double val_from_train = 0;
  // Called on the writing thread after each batch with (done, total); may throw to abort.
  std::function<void(uint32_t, uint32_t)> progress;
};

struct IngestResult {
  uint32_t written = 0;
  int height = 0, width = 0;
  std::vector<std::pair<std::string, std::string>> skipped;  // file, reason
  std::map<std::string, uint32_t> per_source;
  double crack_fraction = 0;
  double seconds = 0;
  uint64_t file_bytes = 0;
};

IngestResult ingest(const IngestOptions& opt);

// One discovered sample before decoding (exposed for tests).
struct IngestItem {
  std::string name;                      // image file name, unique
  std::filesystem::path image, label;    // label: mask image or .seg file; empty if missing
  std::string source;
  std::string problem;                   // set when discovery already found it bad
  int split = -1;                        // split-folders: 0 train, 1 val, 2 test; else -1
};
[[nodiscard]] std::vector<IngestItem> discover(const std::filesystem::path& dir, Layout layout);

// Parses a Berkeley .seg file into a 0/1 mask: 1 where the run's segment id is in `crack`.
// Validates the header (width, height), every run's bounds, and that the runs cover every
// pixel exactly once (a truncated file does not). InputError names file and line.
[[nodiscard]] cv::Mat read_seg_mask(const std::filesystem::path& path, const std::vector<int>& crack);

}  // namespace crackseg::io
