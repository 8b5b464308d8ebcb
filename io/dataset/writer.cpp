#include "io/dataset/writer.hpp"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "crackseg/build_info.hpp"
#include "io/dataset/dataset.hpp"
#include "io/h5/open.hpp"
#include "io/h5/util.hpp"
#include "src/core/rng.hpp"

namespace crackseg::io {

std::string creator_version() {
  return std::string("crackseg ") + build_info::version + " (" + std::string(build_info::git_commit).substr(0, 12) +
         (build_info::git_dirty ? " dirty" : "") + ")";
}

SplitSpec parse_split_fractions(const std::string& text, uint64_t seed) {
  SplitSpec spec;
  spec.seed = seed;
  std::stringstream ss(text);
  std::string part;
  size_t i = 0;
  while (std::getline(ss, part, ',')) {
    if (i >= 3) throw InputError("--split '" + text + "': expected three fractions train,val,test");
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != part.size() || !(v >= 0.0) || v > 1.0)
      throw InputError("--split '" + text + "': '" + part + "' is not a fraction in [0, 1]");
    spec.fractions[i++] = v;
  }
  if (i != 3) throw InputError("--split '" + text + "': expected three fractions train,val,test");
  const double sum = spec.fractions[0] + spec.fractions[1] + spec.fractions[2];
  if (std::abs(sum - 1.0) > 1e-6)
    throw InputError("--split '" + text + "': fractions sum to " + std::to_string(sum) + ", not 1");
  return spec;
}

namespace {
// FNV-1a: a source's split depends on its own name, not on which other sources exist.
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace

std::array<std::vector<uint32_t>, 3> stratified_split(const std::vector<std::string>& sources,
                                                      const SplitSpec& spec) {
  std::map<std::string, std::vector<uint32_t>> by_source;
  for (uint32_t i = 0; i < sources.size(); ++i) by_source[sources[i]].push_back(i);
  std::array<std::vector<uint32_t>, 3> out;
  for (const auto& [source, members] : by_source) {
    const auto n = static_cast<uint32_t>(members.size());
    const auto perm = epoch_permutation(spec.seed, fnv1a(source), n);
    const auto n_train = static_cast<uint32_t>(std::llround(n * spec.fractions[0]));
    const auto n_train_val = std::min<uint32_t>(
        n, static_cast<uint32_t>(std::llround(n * (spec.fractions[0] + spec.fractions[1]))));
    for (uint32_t k = 0; k < n; ++k) {
      const int which = k < n_train ? 0 : k < n_train_val ? 1 : 2;
      out[which].push_back(members[perm[k]]);
    }
  }
  for (auto& v : out) std::sort(v.begin(), v.end());
  return out;
}

DatasetWriter::DatasetWriter(std::filesystem::path out, int height, int width, int deflate_level)
    : out_(std::move(out)), height_(height), width_(width), level_(deflate_level) {
  if (height <= 0 || width <= 0)
    throw InputError("dataset image size " + std::to_string(height) + "x" + std::to_string(width) + " is empty");
  if (out_.has_parent_path() && !std::filesystem::is_directory(out_.parent_path()))
    throw InputError("output folder " + out_.parent_path().string() + " does not exist");
  tmp_ = out_;
  tmp_ += ".tmp." + std::to_string(getpid());
  try {
    file_ = h5::create_truncate(tmp_, "dataset");
  } catch (const Error& e) {
    throw InputError(e.what());  // an output path the user chose
  }
  try {
    const hsize_t H = static_cast<hsize_t>(height), W = static_cast<hsize_t>(width);
    auto make = [&](const char* path, int rank) {
      const hsize_t dims[4] = {0, H, W, 3}, maxdims[4] = {H5S_UNLIMITED, H, W, 3}, chunk[4] = {1, H, W, 3};
      h5::Dataspace space{CRACKSEG_H5_CHECK(H5Screate_simple(rank, dims, maxdims))};
      h5::PropList dcpl{CRACKSEG_H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
      CRACKSEG_H5_CHECK(H5Pset_chunk(dcpl.get(), rank, chunk));
      CRACKSEG_H5_CHECK(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(level_)));
      // Every chunk is written whole by write_chunk; never spend time writing fill values.
      CRACKSEG_H5_CHECK(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
      return h5::Dataset{CRACKSEG_H5_CHECK(H5Dcreate2(file_.get(), path, H5T_STD_U8LE, space.get(),
                                                      H5P_DEFAULT, dcpl.get(), H5P_DEFAULT))};
    };
    images_ = make("/images", 4);
    masks_ = make("/masks", 3);
  } catch (...) {
    discard();
    throw;
  }
}

DatasetWriter::~DatasetWriter() {
  if (!finished_) discard();
}

void DatasetWriter::discard() noexcept {
  // Empty the temporary file first: closing flushes what HDF5 still caches, and on a full disk
  // a close that fails leaves HDF5 with a half-closed file that crashes the process at exit.
  if (file_.get() >= 0) (void)::truncate(tmp_.c_str(), 0);
  images_.reset();
  masks_.reset();
  file_.reset();
  std::error_code ec;
  std::filesystem::remove(tmp_, ec);
}

void DatasetWriter::set_attribute(std::string key, std::string value) {
  extra_attrs_.emplace_back(std::move(key), std::move(value));
}

EncodedSample DatasetWriter::encode(const uint8_t* image, const uint8_t* mask, std::string name,
                                    std::string source) const {
  const size_t hw = size_t(height_) * size_t(width_);
  EncodedSample s;
  for (size_t i = 0; i < hw; ++i) {
    if (mask[i] > 1)
      throw InputError("mask of '" + name + "' has value " + std::to_string(mask[i]) + " at pixel (" +
                       std::to_string(i / size_t(width_)) + ", " + std::to_string(i % size_t(width_)) +
                       "); the dataset stores 0/1 only");
    s.crack_pixels += mask[i];
  }
  auto deflate = [&](const uint8_t* src, size_t n, std::vector<uint8_t>& dst) {
    uLongf len = compressBound(static_cast<uLong>(n));
    dst.resize(len);
    const int rc = compress2(dst.data(), &len, src, static_cast<uLong>(n), level_);
    if (rc != Z_OK) throw Error("zlib compress2 failed for '" + name + "': " + zError(rc));
    dst.resize(len);
  };
  deflate(image, hw * 3, s.image_z);
  deflate(mask, hw, s.mask_z);
  s.name = std::move(name);
  s.source = std::move(source);
  return s;
}

void DatasetWriter::write_chunk(const h5::Dataset& d, const std::vector<uint8_t>& z) {
  const hsize_t n = names_.size();
  // /masks is 3-D: HDF5 reads only its first three entries.
  const hsize_t dims[4] = {n + 1, hsize_t(height_), hsize_t(width_), 3};
  const hsize_t offset[4] = {n, 0, 0, 0};
  CRACKSEG_H5_CHECK(H5Dset_extent(d.get(), dims));
  CRACKSEG_H5_CHECK(H5Dwrite_chunk(d.get(), H5P_DEFAULT, 0, offset, z.size(), z.data()));
}

void DatasetWriter::append(EncodedSample s) {
  if (finished_) throw Error("DatasetWriter::append after finish() for " + out_.string());
  if (s.name.empty()) throw InputError("sample " + std::to_string(names_.size()) + " has an empty name");
  if (!seen_.insert(s.name).second)
    throw InputError("duplicate sample name '" + s.name + "' (names must be unique in " + out_.string() + ")");
  // Direct chunk writes: the zlib stream from encode() is exactly what HDF5's deflate filter
  // stores, so compression can run in parallel outside the (serialised) HDF5 library.
  write_chunk(images_, s.image_z);
  write_chunk(masks_, s.mask_z);
  names_.push_back(std::move(s.name));
  sources_.push_back(std::move(s.source));
  crack_pixels_.push_back(s.crack_pixels);
}

void DatasetWriter::set_fixed_splits(std::array<std::vector<uint32_t>, 3> splits) {
  std::vector<int> seen(names_.size(), 0);
  for (auto& s : splits) {
    std::sort(s.begin(), s.end());
    for (uint32_t i : s) {
      if (i >= names_.size() || seen[i]++)
        throw Error("DatasetWriter::set_fixed_splits: sample " + std::to_string(i) + " out of range or in two splits (" +
                    out_.string() + ")");
    }
  }
  fixed_splits_ = std::move(splits);
}

std::array<std::vector<uint32_t>, 3> DatasetWriter::finish(const SplitSpec& spec_in) {
  SplitSpec spec = spec_in;
  if (finished_) throw Error("DatasetWriter::finish called twice for " + out_.string());
  if (names_.empty()) throw InputError("no samples to write to " + out_.string());
  const hid_t f = file_.get();
  h5::write_strings(f, "/names", names_);
  h5::write_strings(f, "/sources", sources_);
  auto splits = fixed_splits_ ? *fixed_splits_ : stratified_split(sources_, spec);
  if (fixed_splits_)
    for (int s = 0; s < 3; ++s) spec.fractions[s] = double(splits[s].size()) / double(names_.size());
  {
    h5::Group g{CRACKSEG_H5_CHECK(H5Gcreate2(f, "/splits", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
    for (int s = 0; s < 3; ++s) {
      h5::write_u32(g.get(), kSplitNames[s], splits[s]);
      h5::write_attribute(g.get(), std::string("fraction_") + kSplitNames[s], spec.fractions[s]);
    }
    h5::write_attribute(g.get(), "seed", static_cast<int64_t>(spec.seed));
    if (fixed_splits_) h5::write_attribute(g.get(), "origin", std::string_view("folders"));
  }
  const double hw = double(height_) * double(width_);
  for (int s = 0; s < 3; ++s) {
    uint64_t crack = 0;
    for (uint32_t i : splits[s]) crack += crack_pixels_[i];
    const double frac = splits[s].empty() ? 0.0 : double(crack) / (hw * double(splits[s].size()));
    h5::write_attribute(f, std::string("crack_fraction_") + kSplitNames[s], frac);
  }
  h5::write_attribute(f, kKindAttribute, std::string_view("dataset"));
  h5::write_attribute(f, "format_version", kDatasetFormatVersion);
  h5::write_attribute(f, "creator_version", std::string_view(creator_version()));
  for (const auto& [k, v] : extra_attrs_) h5::write_attribute(f, k, std::string_view(v));
  images_.reset();
  masks_.reset();
  {
    auto guard = h5::lock();
    // Flush before closing: a flush that fails (disk full) leaves the file open for discard().
    if (H5Fflush(file_.get(), H5F_SCOPE_GLOBAL) < 0) {
      const std::string stack = h5::error_stack();
      discard();
      throw Error("writing " + tmp_.string() + " (for " + out_.string() + ") failed: " + stack);
    }
    const hid_t id = file_.release();
    if (H5Fclose(id) < 0) {
      const std::string stack = h5::error_stack();
      discard();
      throw Error("closing " + tmp_.string() + " failed: " + stack);
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp_, out_, ec);
  if (ec) {
    discard();
    throw Error("cannot rename " + tmp_.string() + " to " + out_.string() + ": " + ec.message());
  }
  finished_ = true;
  return splits;
}

}  // namespace crackseg::io
