#include "io/dataset/contents.hpp"

#include <algorithm>
#include <vector>

#include "io/dataset/dataset.hpp"
#include "io/h5/util.hpp"

namespace crackseg::io {

namespace {

std::string type_name(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t bits = H5Tget_size(type) * 8;
  if (cls == H5T_INTEGER) return (H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(bits);
  if (cls == H5T_FLOAT) return "float" + std::to_string(bits);
  if (cls == H5T_STRING) return "string";
  if (cls == H5T_COMPOUND) return "compound";
  return "non-numeric type (class " + std::to_string(static_cast<int>(cls)) + ")";
}

void check_uint8(hid_t file, const char* name, const std::string& where, const char* holds) {
  h5::Dataset d{CRACKSEG_H5_CHECK(H5Dopen2(file, name, H5P_DEFAULT))};
  h5::Datatype t{CRACKSEG_H5_CHECK(H5Dget_type(d.get()))};
  const bool ok = H5Tget_class(t.get()) == H5T_INTEGER && H5Tget_size(t.get()) == 1 && H5Tget_sign(t.get()) == H5T_SGN_NONE;
  if (!ok)
    throw InputError(where + ": " + name + " is stored as " + type_name(t.get()) + "; crackseg reads uint8 " + holds +
                     " (write the file with `crackseg ingest`, or convert it)");
}

}  // namespace

void validate_contents(const DatasetFile& d) {
  const std::string where = "dataset file " + d.path().string();
  {
    auto guard = h5::lock();
    check_uint8(d.file_id(), "/images", where, "images (RGB, 0-255)");
    check_uint8(d.file_id(), "/masks", where, "masks (0 = background, 1 = crack)");
  }
  const uint32_t n = d.count();
  if (n == 0) return;
  const uint32_t k = std::min(n, kSampledMasks);
  std::vector<uint8_t> mask(d.mask_bytes());
  for (uint32_t j = 0; j < k; ++j) {
    const uint32_t i = k == 1 ? 0 : static_cast<uint32_t>((static_cast<uint64_t>(n - 1) * j) / (k - 1));
    d.read_mask(i, mask.data());
    const uint8_t top = mask.empty() ? 0 : *std::max_element(mask.begin(), mask.end());
    if (top > 1)
      throw InputError(where + ": /masks holds value " + std::to_string(top) + " in sample " + std::to_string(i) +
                       " ('" + d.names()[i] + "'); crackseg masks are 0/1 (1 = crack). A 0/255 mask must be "
                       "mapped to 0/1 (`crackseg ingest` does: crack = value > 127)");
  }
}

}  // namespace crackseg::io
