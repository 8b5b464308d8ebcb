#include "io/h5/util.hpp"

#include <memory>

namespace crackseg::h5 {

std::string object_name(hid_t id) {
  auto guard = lock();
  const ssize_t n = H5Iget_name(id, nullptr, 0);
  if (n <= 0) return "?";
  std::string s(static_cast<size_t>(n) + 1, '\0');
  (void)H5Iget_name(id, s.data(), s.size());
  s.resize(static_cast<size_t>(n));
  return s;
}

bool has_attribute(hid_t obj, const std::string& name) {
  return CRACKSEG_H5_CHECK(H5Aexists(obj, name.c_str())) > 0;
}

namespace {
Datatype vlen_string_type() {
  Datatype t{CRACKSEG_H5_CHECK(H5Tcopy(H5T_C_S1))};
  CRACKSEG_H5_CHECK(H5Tset_size(t.get(), H5T_VARIABLE));
  CRACKSEG_H5_CHECK(H5Tset_cset(t.get(), H5T_CSET_UTF8));
  return t;
}

// Replaces an existing attribute so rewriting one (e.g. a fraction) is allowed.
Attribute create_attribute(hid_t obj, const std::string& name, hid_t type, hid_t space) {
  if (has_attribute(obj, name)) CRACKSEG_H5_CHECK(H5Adelete(obj, name.c_str()));
  return Attribute{CRACKSEG_H5_CHECK(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT))};
}

Attribute open_attribute(hid_t obj, const std::string& name) {
  if (!has_attribute(obj, name))
    throw Error("HDF5 object " + object_name(obj) + " has no attribute '" + name + "'");
  return Attribute{CRACKSEG_H5_CHECK(H5Aopen(obj, name.c_str(), H5P_DEFAULT))};
}

template <typename T>
void write_scalar(hid_t obj, const std::string& name, hid_t mem_type, T value) {
  Dataspace space{CRACKSEG_H5_CHECK(H5Screate(H5S_SCALAR))};
  Attribute a = create_attribute(obj, name, mem_type, space.get());
  CRACKSEG_H5_CHECK(H5Awrite(a.get(), mem_type, &value));
}

H5T_class_t attribute_class(hid_t attr) {
  Datatype t{CRACKSEG_H5_CHECK(H5Aget_type(attr))};
  return CRACKSEG_H5_CHECK(H5Tget_class(t.get()));
}
}  // namespace

void write_attribute(hid_t obj, const std::string& name, int64_t value) {
  write_scalar(obj, name, H5T_NATIVE_INT64, value);
}
void write_attribute(hid_t obj, const std::string& name, double value) {
  write_scalar(obj, name, H5T_NATIVE_DOUBLE, value);
}
void write_attribute(hid_t obj, const std::string& name, std::string_view value) {
  Datatype t = vlen_string_type();
  Dataspace space{CRACKSEG_H5_CHECK(H5Screate(H5S_SCALAR))};
  Attribute a = create_attribute(obj, name, t.get(), space.get());
  const std::string s(value);
  const char* p = s.c_str();
  CRACKSEG_H5_CHECK(H5Awrite(a.get(), t.get(), &p));
}

int64_t read_int_attribute(hid_t obj, const std::string& name) {
  Attribute a = open_attribute(obj, name);
  if (attribute_class(a.get()) != H5T_INTEGER)
    throw Error("attribute '" + name + "' of " + object_name(obj) + " is not an integer");
  int64_t v = 0;
  CRACKSEG_H5_CHECK(H5Aread(a.get(), H5T_NATIVE_INT64, &v));
  return v;
}

double read_double_attribute(hid_t obj, const std::string& name) {
  Attribute a = open_attribute(obj, name);
  const H5T_class_t c = attribute_class(a.get());
  if (c != H5T_FLOAT && c != H5T_INTEGER)
    throw Error("attribute '" + name + "' of " + object_name(obj) + " is not a number");
  double v = 0;
  CRACKSEG_H5_CHECK(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v));
  return v;
}

std::string read_string_attribute(hid_t obj, const std::string& name) {
  Attribute a = open_attribute(obj, name);
  Datatype ft{CRACKSEG_H5_CHECK(H5Aget_type(a.get()))};
  if (CRACKSEG_H5_CHECK(H5Tget_class(ft.get())) != H5T_STRING)
    throw Error("attribute '" + name + "' of " + object_name(obj) + " is not a string");
  if (CRACKSEG_H5_CHECK(H5Tis_variable_str(ft.get())) > 0) {
    Datatype t = vlen_string_type();
    char* p = nullptr;
    CRACKSEG_H5_CHECK(H5Aread(a.get(), t.get(), &p));
    std::string s = p ? p : "";
    auto guard = lock();
    H5free_memory(p);
    return s;
  }
  const size_t n = H5Tget_size(ft.get());
  std::string s(n, '\0');
  CRACKSEG_H5_CHECK(H5Aread(a.get(), ft.get(), s.data()));
  s.resize(s.find('\0') == std::string::npos ? n : s.find('\0'));
  return s;
}

bool link_exists(hid_t loc, const std::string& path) {
  // H5Lexists fails (rather than returning 0) when an intermediate group is missing.
  size_t pos = 0;
  while ((pos = path.find('/', pos + 1)) != std::string::npos) {
    if (CRACKSEG_H5_CHECK(H5Lexists(loc, path.substr(0, pos).c_str(), H5P_DEFAULT)) <= 0) return false;
  }
  return CRACKSEG_H5_CHECK(H5Lexists(loc, path.c_str(), H5P_DEFAULT)) > 0;
}

namespace {
Dataset open_dataset(hid_t loc, const std::string& path) {
  if (!link_exists(loc, path))
    throw Error("HDF5 file " + object_name(loc) + " has no dataset '" + path + "'");
  return Dataset{CRACKSEG_H5_CHECK(H5Dopen2(loc, path.c_str(), H5P_DEFAULT))};
}

hsize_t length_1d(hid_t dset, const std::string& path) {
  Dataspace s{CRACKSEG_H5_CHECK(H5Dget_space(dset))};
  if (CRACKSEG_H5_CHECK(H5Sget_simple_extent_ndims(s.get())) != 1)
    throw Error("HDF5 dataset '" + path + "' is not one-dimensional");
  hsize_t n = 0;
  CRACKSEG_H5_CHECK(H5Sget_simple_extent_dims(s.get(), &n, nullptr));
  return n;
}
}  // namespace

void write_strings(hid_t loc, const std::string& path, const std::vector<std::string>& values) {
  Datatype t = vlen_string_type();
  const hsize_t n = values.size();
  Dataspace space{CRACKSEG_H5_CHECK(H5Screate_simple(1, &n, nullptr))};
  Dataset d{CRACKSEG_H5_CHECK(H5Dcreate2(loc, path.c_str(), t.get(), space.get(), H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT))};
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n > 0) CRACKSEG_H5_CHECK(H5Dwrite(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()));
}

std::vector<std::string> read_strings(hid_t loc, const std::string& path) {
  Dataset d = open_dataset(loc, path);
  const hsize_t n = length_1d(d.get(), path);
  Datatype ft{CRACKSEG_H5_CHECK(H5Dget_type(d.get()))};
  if (CRACKSEG_H5_CHECK(H5Tget_class(ft.get())) != H5T_STRING)
    throw Error("HDF5 dataset '" + path + "' does not hold strings");
  std::vector<std::string> out(n);
  if (n == 0) return out;
  if (CRACKSEG_H5_CHECK(H5Tis_variable_str(ft.get())) > 0) {
    Datatype t = vlen_string_type();
    std::vector<char*> ptrs(n, nullptr);
    CRACKSEG_H5_CHECK(H5Dread(d.get(), t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()));
    for (hsize_t i = 0; i < n; ++i) out[i] = ptrs[i] ? ptrs[i] : "";
    Dataspace s{CRACKSEG_H5_CHECK(H5Dget_space(d.get()))};
    CRACKSEG_H5_CHECK(H5Dvlen_reclaim(t.get(), s.get(), H5P_DEFAULT, ptrs.data()));
    return out;
  }
  const size_t width = H5Tget_size(ft.get());
  std::vector<char> buf(width * n);
  CRACKSEG_H5_CHECK(H5Dread(d.get(), ft.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
  for (hsize_t i = 0; i < n; ++i) {
    std::string s(buf.data() + i * width, width);
    if (auto z = s.find('\0'); z != std::string::npos) s.resize(z);
    out[i] = std::move(s);
  }
  return out;
}

void write_u32(hid_t loc, const std::string& path, const std::vector<uint32_t>& values) {
  const hsize_t n = values.size();
  Dataspace space{CRACKSEG_H5_CHECK(H5Screate_simple(1, &n, nullptr))};
  Dataset d{CRACKSEG_H5_CHECK(H5Dcreate2(loc, path.c_str(), H5T_STD_U32LE, space.get(), H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT))};
  if (n > 0)
    CRACKSEG_H5_CHECK(H5Dwrite(d.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
}

std::vector<uint32_t> read_u32(hid_t loc, const std::string& path) {
  Dataset d = open_dataset(loc, path);
  std::vector<uint32_t> out(length_1d(d.get(), path));
  if (!out.empty())
    CRACKSEG_H5_CHECK(H5Dread(d.get(), H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()));
  return out;
}

}  // namespace crackseg::h5
