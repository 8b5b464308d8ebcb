// Small typed helpers over the raw HDF5 API for attributes and string datasets, so the
// dataset writer/reader (and the checkpoint code) do not repeat type plumbing. Every error
// names the object path and attribute and carries the HDF5 error stack.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "io/h5/h5.hpp"

namespace crackseg::h5 {

// Name of the object `id` refers to in its file ("/images"), for messages.
[[nodiscard]] std::string object_name(hid_t id);

[[nodiscard]] bool has_attribute(hid_t obj, const std::string& name);
void write_attribute(hid_t obj, const std::string& name, int64_t value);
void write_attribute(hid_t obj, const std::string& name, double value);
void write_attribute(hid_t obj, const std::string& name, std::string_view value);
// Readers convert from whatever integer/float/string type is stored; a missing attribute or
// a type of the wrong class throws an Error naming object and attribute.
[[nodiscard]] int64_t read_int_attribute(hid_t obj, const std::string& name);
[[nodiscard]] double read_double_attribute(hid_t obj, const std::string& name);
[[nodiscard]] std::string read_string_attribute(hid_t obj, const std::string& name);

// A 1-D dataset of UTF-8 variable-length strings.
void write_strings(hid_t loc, const std::string& path, const std::vector<std::string>& values);
// Reads variable- or fixed-length string datasets.
[[nodiscard]] std::vector<std::string> read_strings(hid_t loc, const std::string& path);

// A 1-D uint32 dataset (index lists such as /splits/train).
void write_u32(hid_t loc, const std::string& path, const std::vector<uint32_t>& values);
[[nodiscard]] std::vector<uint32_t> read_u32(hid_t loc, const std::string& path);

[[nodiscard]] bool link_exists(hid_t loc, const std::string& path);

}  // namespace crackseg::h5
