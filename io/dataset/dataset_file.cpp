#include "io/dataset/dataset.hpp"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "io/h5/open.hpp"
#include "io/dataset/contents.hpp"
#include "io/h5/util.hpp"
#include "io/stage/node_stage.hpp"

namespace crackseg::io {

namespace {

std::string split_path(std::string_view name) { return "/splits/" + std::string(name); }

h5::File open_read_only(const std::filesystem::path& path) { return h5::open_read_only(path, "dataset"); }

std::vector<hsize_t> dims_of(const h5::Dataset& d) {
  h5::Dataspace s{CRACKSEG_H5_CHECK(H5Dget_space(d.get()))};
  const int rank = CRACKSEG_H5_CHECK(H5Sget_simple_extent_ndims(s.get()));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  CRACKSEG_H5_CHECK(H5Sget_simple_extent_dims(s.get(), dims.data(), nullptr));
  return dims;
}

std::string dims_text(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}

// plain / deflate when the dataset is chunked one sample per chunk with no filter or deflate
// as its only filter, so raw chunks can be fetched (and inflated) outside the HDF5 lock.
DatasetFile::RawChunks raw_chunk_readable(const h5::Dataset& d, const std::vector<hsize_t>& dims) {
  using R = DatasetFile::RawChunks;
  h5::PropList dcpl{CRACKSEG_H5_CHECK(H5Dget_create_plist(d.get()))};
  if (CRACKSEG_H5_CHECK(H5Pget_layout(dcpl.get())) != H5D_CHUNKED) return R::none;
  std::vector<hsize_t> chunk(dims.size());
  CRACKSEG_H5_CHECK(H5Pget_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()));
  if (chunk[0] != 1) return R::none;
  for (size_t i = 1; i < dims.size(); ++i)
    if (chunk[i] != dims[i]) return R::none;
  const int nfilters = CRACKSEG_H5_CHECK(H5Pget_nfilters(dcpl.get()));
  if (nfilters == 0) return R::plain;
  if (nfilters != 1) return R::none;
  unsigned flags = 0;
  size_t nelmts = 0;
  unsigned cd[8];
  unsigned config = 0;
  const H5Z_filter_t f = CRACKSEG_H5_CHECK(
      H5Pget_filter2(dcpl.get(), 0, &flags, &nelmts, cd, 0, nullptr, &config));
  return f == H5Z_FILTER_DEFLATE ? R::deflate : R::none;
}

}  // namespace

std::string hdf5_file_kind(const std::filesystem::path& path) {
  h5::File f = open_read_only(path);
  if (!h5::has_attribute(f.get(), kKindAttribute)) return "";
  return h5::read_string_attribute(f.get(), kKindAttribute);
}

DatasetFile::DatasetFile(const std::filesystem::path& path)
    : path_(redirected_dataset(path)), file_(open_read_only(path_)) {
  const hid_t f = file_.get();
  const std::string where = "dataset file " + path_.string();
  if (h5::has_attribute(f, kKindAttribute)) {
    const std::string kind = h5::read_string_attribute(f, kKindAttribute);
    if (kind != "dataset")
      throw InputError(where + " is a crackseg '" + kind + "' file, not a dataset");
  }
  for (const char* required : {"/images", "/masks", "/names", "/sources"})
    if (!h5::link_exists(f, required)) throw InputError(where + " has no " + required + " (not a crackseg dataset?)");
  if (!h5::has_attribute(f, "format_version"))
    throw InputError(where + " has no format_version attribute (not a crackseg dataset?)");
  format_version_ = h5::read_int_attribute(f, "format_version");
  if (format_version_ > kDatasetFormatVersion)
    throw InputError(where + " has format_version " + std::to_string(format_version_) +
                     "; this crackseg reads up to " + std::to_string(kDatasetFormatVersion));
  creator_version_ = h5::has_attribute(f, "creator_version") ? h5::read_string_attribute(f, "creator_version") : "";

  images_ = h5::Dataset{CRACKSEG_H5_CHECK(H5Dopen2(f, "/images", H5P_DEFAULT))};
  masks_ = h5::Dataset{CRACKSEG_H5_CHECK(H5Dopen2(f, "/masks", H5P_DEFAULT))};
  const auto idims = dims_of(images_), mdims = dims_of(masks_);
  if (idims.size() != 4 || idims[3] != 3)
    throw InputError(where + ": /images has shape " + dims_text(idims) + ", expected [N,H,W,3]");
  if (mdims.size() != 3 || mdims[0] != idims[0] || mdims[1] != idims[1] || mdims[2] != idims[2])
    throw InputError(where + ": /masks has shape " + dims_text(mdims) + ", expected [N,H,W] = [" +
                     std::to_string(idims[0]) + "," + std::to_string(idims[1]) + "," +
                     std::to_string(idims[2]) + "] to match /images " + dims_text(idims));
  if (idims[0] > std::numeric_limits<uint32_t>::max())
    throw InputError(where + " holds more samples than uint32 indices can address");
  count_ = static_cast<uint32_t>(idims[0]);
  height_ = static_cast<int>(idims[1]);
  width_ = static_cast<int>(idims[2]);
  images_raw_ = raw_chunk_readable(images_, idims);
  masks_raw_ = raw_chunk_readable(masks_, mdims);

  names_ = h5::read_strings(f, "/names");
  sources_ = h5::read_strings(f, "/sources");
  if (names_.size() != count_ || sources_.size() != count_)
    throw InputError(where + ": /names has " + std::to_string(names_.size()) + " and /sources " +
                     std::to_string(sources_.size()) + " entries for " + std::to_string(count_) + " images");
  validate_contents(*this);  // element types uint8, sampled masks 0/1
}

bool DatasetFile::has_split(std::string_view name) const {
  return h5::link_exists(file_.get(), split_path(name));
}

std::vector<uint32_t> DatasetFile::split(std::string_view name) const {
  if (!has_split(name))
    throw InputError("dataset file " + path_.string() + " has no split '" + std::string(name) +
                     "' (no dataset " + split_path(name) + ")");
  auto idx = h5::read_u32(file_.get(), split_path(name));
  for (uint32_t i : idx)
    if (i >= count_)
      throw InputError("dataset file " + path_.string() + ": split '" + std::string(name) +
                       "' holds index " + std::to_string(i) + " >= count " + std::to_string(count_));
  return idx;
}

double DatasetFile::crack_fraction(std::string_view split) const {
  const std::string key = "crack_fraction_" + std::string(split);
  if (!h5::has_attribute(file_.get(), key)) return std::numeric_limits<double>::quiet_NaN();
  return h5::read_double_attribute(file_.get(), key);
}

void DatasetFile::read_sample(const h5::Dataset& d, RawChunks raw_kind, uint32_t index, uint8_t* dst,
                              size_t bytes) const {
  if (index >= count_)
    throw Error("sample index " + std::to_string(index) + " out of range: " + path_.string() + " holds " +
                std::to_string(count_) + " samples");
  hsize_t start[4] = {index, 0, 0, 0};
  if (raw_kind != RawChunks::none) {
    thread_local std::vector<uint8_t> raw;
    uint32_t filter_mask = 0;
    hsize_t stored = 0;
    {
      auto guard = h5::lock();
      CRACKSEG_H5_CHECK(H5Dget_chunk_storage_size(d.get(), start, &stored));
      if (stored > 0) {
        raw.resize(stored);
        CRACKSEG_H5_CHECK(H5Dread_chunk(d.get(), H5P_DEFAULT, start, &filter_mask, raw.data()));
      }
    }
    if (stored > 0) {
      // Bit 0 of the mask set = the deflate filter was skipped for this chunk (stored raw). A
      // deflated chunk can happen to be exactly as long as the sample (tiny images), so its
      // size says nothing.
      uLongf out_len = static_cast<uLongf>(bytes);
      if (raw_kind == RawChunks::plain || (filter_mask & 1u) != 0) {
        if (stored != bytes)
          throw Error("chunk " + std::to_string(index) + " of " + h5::object_name(d.get()) + " in " +
                      path_.string() + " has " + std::to_string(stored) + " bytes, expected " +
                      std::to_string(bytes));
        std::memcpy(dst, raw.data(), bytes);
        return;
      }
      const int zrc = uncompress(dst, &out_len, raw.data(), static_cast<uLong>(stored));
      if (zrc != Z_OK || out_len != bytes)
        throw Error("corrupt chunk " + std::to_string(index) + " of " + h5::object_name(d.get()) + " in " +
                    path_.string() + ": zlib " + (zError(zrc) ? zError(zrc) : "?") + ", " +
                    std::to_string(out_len) + " of " + std::to_string(bytes) + " bytes");
      return;
    }
    // An unallocated chunk reads as the fill value through the normal path below.
  }
  // For the 3-D /masks only the first three entries are used.
  hsize_t count[4] = {1, static_cast<hsize_t>(height_), static_cast<hsize_t>(width_), 3};
  auto guard = h5::lock();
  h5::Dataspace file_space{CRACKSEG_H5_CHECK(H5Dget_space(d.get()))};
  CRACKSEG_H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr));
  const hsize_t n = bytes;
  h5::Dataspace mem_space{CRACKSEG_H5_CHECK(H5Screate_simple(1, &n, nullptr))};
  CRACKSEG_H5_CHECK(H5Dread(d.get(), H5T_NATIVE_UINT8, mem_space.get(), file_space.get(), H5P_DEFAULT, dst));
}

void DatasetFile::read_image(uint32_t index, uint8_t* dst) const {
  read_sample(images_, images_raw_, index, dst, image_bytes());
}

void DatasetFile::read_mask(uint32_t index, uint8_t* dst) const {
  read_sample(masks_, masks_raw_, index, dst, mask_bytes());
}

void DatasetFile::read_images(std::span<const uint32_t> indices, uint8_t* dst) const {
  for (size_t i = 0; i < indices.size(); ++i) read_image(indices[i], dst + i * image_bytes());
}

void DatasetFile::read_masks(std::span<const uint32_t> indices, uint8_t* dst) const {
  for (size_t i = 0; i < indices.size(); ++i) read_mask(indices[i], dst + i * mask_bytes());
}

}  // namespace crackseg::io
