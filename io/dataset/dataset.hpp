// The crackseg HDF5 dataset (DESIGN.md "Data"), read side.
//
//   /images   uint8 [N,H,W,3]  RGB (not OpenCV's BGR), chunk [1,H,W,3], deflate
//   /masks    uint8 [N,H,W]    0 = background, 1 = crack,  chunk [1,H,W], deflate
//   /names    string [N]       original file name (unique)
//   /sources  string [N]       source dataset ("synth", "cfd", "masonry", CrackSeg9k prefix)
//   /splits/{train,val,test}   uint32 sample indices, sorted, stratified by source
//   root attributes: kind = "dataset", format_version, creator_version,
//                    crack_fraction_{train,val,test} (crack pixels / all pixels of the split)
//
// Reads go by hyperslab (one chunk = one image), never loading the whole file. Each
// DatasetFile owns its own HDF5 file id: open one per thread that reads (the prefetch thread
// opens its own). All HDF5 calls are serialised by h5::lock() (HDF5 is not thread-safe here);
// decompression runs outside that lock, so a reading thread does not block a checkpoint
// write on the main thread for longer than the raw chunk read.
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/h5/h5.hpp"

namespace crackseg::io {

inline constexpr int64_t kDatasetFormatVersion = 1;
inline constexpr const char* kKindAttribute = "kind";  // "dataset" here; "checkpoint" elsewhere
inline constexpr const char* kSplitNames[] = {"train", "val", "test"};

// The root attribute `kind` of any crackseg HDF5 file ("dataset", "checkpoint"), or "" when the
// file has none (not a crackseg file). Throws InputError if the file cannot be opened as HDF5.
[[nodiscard]] std::string hdf5_file_kind(const std::filesystem::path& path);

class DatasetFile {
 public:
  // Opens read-only and validates the schema (shapes agree, format version known); errors
  // name the file and the part at fault (InputError for a bad or missing file).
  explicit DatasetFile(const std::filesystem::path& path);

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] uint32_t count() const { return count_; }  // N
  [[nodiscard]] int height() const { return height_; }     // H
  [[nodiscard]] int width() const { return width_; }       // W
  [[nodiscard]] size_t image_bytes() const { return size_t(height_) * size_t(width_) * 3; }
  [[nodiscard]] size_t mask_bytes() const { return size_t(height_) * size_t(width_); }
  [[nodiscard]] const std::vector<std::string>& names() const { return names_; }
  [[nodiscard]] const std::vector<std::string>& sources() const { return sources_; }

  [[nodiscard]] bool has_split(std::string_view name) const;
  // Sorted sample indices of split `name` ("train", "val", "test"); throws InputError naming
  // the file and the split when it does not exist.
  [[nodiscard]] std::vector<uint32_t> split(std::string_view name) const;

  [[nodiscard]] int64_t format_version() const { return format_version_; }
  [[nodiscard]] const std::string& creator_version() const { return creator_version_; }
  // Crack-pixel fraction of a split as stored by the writer (NaN if absent).
  [[nodiscard]] double crack_fraction(std::string_view split) const;

  // One sample by hyperslab. dst must hold image_bytes() (H, W, 3 RGB) / mask_bytes() (H, W).
  void read_image(uint32_t index, uint8_t* dst) const;
  void read_mask(uint32_t index, uint8_t* dst) const;
  // Several samples into consecutive slots of dst ([indices.size(), H, W, 3] / [.., H, W]);
  // indices need not be sorted or unique.
  void read_images(std::span<const uint32_t> indices, uint8_t* dst) const;
  void read_masks(std::span<const uint32_t> indices, uint8_t* dst) const;

  // The open file id, for code that reads extra attributes (e.g. `crackseg info`).
  [[nodiscard]] hid_t file_id() const { return file_.get(); }

  // How a sample's chunk may be read without HDF5's filter pipeline: not at all, stored as is
  // (no filters), or deflated unless the chunk's filter mask says deflate was skipped.
  enum class RawChunks : uint8_t { none, plain, deflate };

 private:
  // Reads sample `index` of a [N, ...] uint8 dataset chunked one sample per chunk: the raw
  // chunk is fetched under the HDF5 lock and inflated outside it when the only filter is
  // deflate; otherwise a plain hyperslab H5Dread.
  void read_sample(const h5::Dataset& d, RawChunks raw, uint32_t index, uint8_t* dst, size_t bytes) const;

  std::filesystem::path path_;
  h5::File file_;
  h5::Dataset images_, masks_;
  RawChunks images_raw_ = RawChunks::none, masks_raw_ = RawChunks::none;
  uint32_t count_ = 0;
  int height_ = 0, width_ = 0;
  std::vector<std::string> names_, sources_;
  int64_t format_version_ = 0;
  std::string creator_version_;
};

}  // namespace crackseg::io
