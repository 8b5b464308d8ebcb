// The crackseg HDF5 dataset (schema in io/dataset/dataset.hpp), write side.
//
//   DatasetWriter w(out, H, W);              // creates <out>.tmp.<pid>
//   w.append(w.encode(rgb, mask01, name, source));   // encode() is thread-safe, append() not
//   w.finish({.fractions = {0.8, 0.1, 0.1}, .seed = 126});  // splits, attributes, rename
//
// Until finish() returns, only the temporary file exists; an unfinished writer's destructor
// (an error, or an interrupt turned into an exception) deletes it, so an interrupted run never
// leaves a half-written dataset under the final name.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "io/h5/h5.hpp"

namespace crackseg::io {

// zlib level for /images and /masks. Level 1, measured on 8 images each (ratio, CPU per image):
//   CFD photos 480x320: level 1 0.484 5.8 ms, level 4 0.499 9.7 ms, level 6 0.458 18.4 ms;
//   synth 400x400:      level 1 0.720 9.5 ms, level 4 0.746 15.9 ms, level 6 0.745 17.8 ms.
// Higher levels save at most ~5% of the file for 2-3x the CPU, and 0/1 masks compress ~50x at
// any level, so the fastest level keeps synth/ingest cheap.
inline constexpr int kDeflateLevel = 1;

struct SplitSpec {
  std::array<double, 3> fractions{0.8, 0.1, 0.1};  // train, val, test; sum to 1
  uint64_t seed = 126;
};

// Parses "0.8,0.1,0.1" (three non-negative numbers summing to 1 within 1e-6); InputError
// naming the text otherwise.
[[nodiscard]] SplitSpec parse_split_fractions(const std::string& text, uint64_t seed);

// Stratified split: within each source (independently of the other sources), a permutation
// keyed by (seed, hash of the source name) assigns round(n*f_train) samples to train,
// round(n*(f_train+f_val)) - that to val and the rest to test. Each list is sorted.
[[nodiscard]] std::array<std::vector<uint32_t>, 3> stratified_split(const std::vector<std::string>& sources,
                                                                   const SplitSpec& spec);

// One sample compressed and checked, ready for append(); built without touching HDF5.
struct EncodedSample {
  std::vector<uint8_t> image_z, mask_z;  // zlib streams of [H,W,3] RGB and [H,W] 0/1
  uint64_t crack_pixels = 0;
  std::string name, source;
};

class DatasetWriter {
 public:
  DatasetWriter(std::filesystem::path out, int height, int width, int deflate_level = kDeflateLevel);
  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  // image: [H, W, 3] RGB; mask: [H, W] with values 0/1 only (throws InputError naming the
  // sample otherwise). Safe to call from several threads at once.
  [[nodiscard]] EncodedSample encode(const uint8_t* image, const uint8_t* mask, std::string name,
                                     std::string source) const;
  // Appends as sample count(); names must be unique (InputError naming the duplicate).
  void append(EncodedSample sample);
  void append(const uint8_t* image, const uint8_t* mask, std::string name, std::string source) {
    append(encode(image, mask, std::move(name), std::move(source)));
  }

  // Extra root attribute written at finish (e.g. "origin" = how the file was made).
  void set_attribute(std::string key, std::string value);

  // Splits given by the data itself (official train/val/test folders) instead of the
  // stratified SplitSpec draw: sample indices per split, each index in exactly one. finish()
  // then stores them, with fraction_* attributes set to the actual fractions.
  void set_fixed_splits(std::array<std::vector<uint32_t>, 3> splits);

  // Writes names, sources, splits and attributes, closes and renames the temporary file to
  // the output path (replacing an existing one). Throws InputError if nothing was appended.
  // Returns the splits written.
  std::array<std::vector<uint32_t>, 3> finish(const SplitSpec& spec);

  [[nodiscard]] uint32_t count() const { return static_cast<uint32_t>(names_.size()); }
  [[nodiscard]] const std::string& source(uint32_t i) const { return sources_.at(i); }
  [[nodiscard]] const std::filesystem::path& temp_path() const { return tmp_; }
  [[nodiscard]] const std::filesystem::path& out_path() const { return out_; }

 private:
  void write_chunk(const h5::Dataset& d, const std::vector<uint8_t>& z);
  void discard() noexcept;

  std::filesystem::path out_, tmp_;
  int height_, width_, level_;
  h5::File file_;
  h5::Dataset images_, masks_;
  std::vector<std::string> names_, sources_;
  std::unordered_set<std::string> seen_;
  std::vector<uint64_t> crack_pixels_;
  std::vector<std::pair<std::string, std::string>> extra_attrs_;
  std::optional<std::array<std::vector<uint32_t>, 3>> fixed_splits_;
  bool finished_ = false;
};

// "crackseg <version> (<git commit>[ dirty])", stored as creator_version.
[[nodiscard]] std::string creator_version();

}  // namespace crackseg::io
