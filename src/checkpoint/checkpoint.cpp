#include "src/checkpoint/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "crackseg/build_info.hpp"
#include "io/h5/h5.hpp"
#include "io/h5/open.hpp"
#include "io/h5/util.hpp"
#include "src/core/error.hpp"

namespace crackseg::checkpoint {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kGroups[] = {"params", "buffers", "optim"};

// The tensor lists of `c` by group, in kGroups order.
std::array<const NamedTensors*, 3> groups_of(const Contents& c) { return {&c.params, &c.buffers, &c.optim}; }
std::array<NamedTensors*, 3> groups_of(Contents& c) { return {&c.params, &c.buffers, &c.optim}; }

void check_tensors(const fs::path& file, const char* group, const NamedTensors& tensors) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    const std::string what = "checkpoint " + file.string() + ": tensor /" + group + "/" + name;
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw Error(what + ": names must be non-empty and free of '/'");
    if (!seen.insert(name).second) throw Error(what + " appears twice");
    if (!t.defined() || t.dtype() != DType::f32 || t.device() != Device::cpu)
      throw Error(what + " must be a defined f32 host tensor");
    if (t.format() == Format::nhwc && t.rank() == 4)
      throw Error(what + " is nhwc; store it as plain or nchw (row-major logical order)");
  }
}

std::string dataset_path(const char* group, const std::string& name) { return std::string("/") + group + "/" + name; }

void write_tensors(hid_t file, const char* group, const NamedTensors& tensors) {
  h5::Group g{CRACKSEG_H5_CHECK(H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
  for (const auto& [name, t] : tensors) {
    const std::vector<hsize_t> dims(t.dims().begin(), t.dims().end());
    h5::Dataspace space{dims.empty() ? CRACKSEG_H5_CHECK(H5Screate(H5S_SCALAR))
                                     : CRACKSEG_H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr))};
    h5::Dataset ds{CRACKSEG_H5_CHECK(
        H5Dcreate2(g.get(), name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
    if (t.numel() > 0)
      CRACKSEG_H5_CHECK(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data<float>()));
  }
}

std::vector<std::string> children(hid_t group) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  const H5L_iterate_t collect = [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  CRACKSEG_H5_CHECK(H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &names));
  return names;
}

std::vector<std::string> attribute_names(hid_t obj) {
  std::vector<std::string> names;
  hsize_t idx = 0;
  const H5A_operator2_t collect = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  CRACKSEG_H5_CHECK(H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &names));
  return names;
}

Dims dataset_dims(hid_t ds, const std::string& where) {
  h5::Datatype type{CRACKSEG_H5_CHECK(H5Dget_type(ds))};
  if (CRACKSEG_H5_CHECK(H5Tget_class(type.get())) != H5T_FLOAT)
    throw InputError(where + " is not a floating-point dataset");
  h5::Dataspace space{CRACKSEG_H5_CHECK(H5Dget_space(ds))};
  const int rank = CRACKSEG_H5_CHECK(H5Sget_simple_extent_ndims(space.get()));
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) CRACKSEG_H5_CHECK(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
  return Dims(dims.begin(), dims.end());
}

std::vector<DatasetInfo> inventory(hid_t file, const char* group, const std::string& file_name) {
  std::vector<DatasetInfo> out;
  if (!h5::link_exists(file, std::string("/") + group)) return out;
  h5::Group g{CRACKSEG_H5_CHECK(H5Gopen2(file, group, H5P_DEFAULT))};
  for (const auto& name : children(g.get())) {
    h5::Dataset ds{CRACKSEG_H5_CHECK(H5Dopen2(g.get(), name.c_str(), H5P_DEFAULT))};
    out.push_back({name, dataset_dims(ds.get(), "checkpoint " + file_name + ": dataset " + dataset_path(group, name))});
  }
  return out;
}

// Every tensor of `want` has a dataset of the same dims and every dataset a tensor.
void match(const std::string& file_name, const char* group, const std::vector<DatasetInfo>& have,
           const NamedTensors& want) {
  const std::string where = "checkpoint " + file_name + ": ";
  for (const auto& [name, t] : want) {
    const auto it = std::find_if(have.begin(), have.end(), [&](const DatasetInfo& d) { return d.name == name; });
    if (it == have.end())
      throw InputError(where + "no dataset " + dataset_path(group, name) + " (the model's tensor " + name + ", dims " +
                       to_string(t.dims()) + "); the file holds " + std::to_string(have.size()) + " in /" + group);
    if (it->dims != t.dims())
      throw InputError(where + "dataset " + dataset_path(group, name) + " has dims " + to_string(it->dims) +
                       ", the model's tensor has " + to_string(t.dims()));
  }
  for (const auto& d : have)
    if (std::none_of(want.begin(), want.end(), [&](const auto& w) { return w.first == d.name; }))
      throw InputError(where + "dataset " + dataset_path(group, d.name) +
                       " matches no tensor of the model (a checkpoint of a different model or config?)");
}

Info read_info_open(hid_t file, const std::string& file_name) {
  Info info;
  const std::string kind =
      h5::has_attribute(file, "kind") ? h5::read_string_attribute(file, "kind") : std::string("(none)");
  if (kind != "checkpoint")
    throw InputError(file_name + " is not a crackseg checkpoint (root attribute kind = " + kind + ")");
  info.format_version = h5::read_int_attribute(file, "format_version");
  if (info.format_version > kFormatVersion || info.format_version < 1)
    throw InputError("checkpoint " + file_name + " has format_version " + std::to_string(info.format_version) +
                     "; this crackseg reads 1.." + std::to_string(kFormatVersion));
  if (h5::has_attribute(file, "crackseg")) info.crackseg_version = h5::read_string_attribute(file, "crackseg");
  if (h5::has_attribute(file, "git_commit")) info.git_commit = h5::read_string_attribute(file, "git_commit");
  for (const char* g : kGroups)
    if (!h5::link_exists(file, std::string("/") + g))
      throw InputError("checkpoint " + file_name + " has no group /" + g + " (written incompletely?)");
  info.params = inventory(file, "params", file_name);
  info.buffers = inventory(file, "buffers", file_name);
  info.optim = inventory(file, "optim", file_name);
  {
    h5::Group g{CRACKSEG_H5_CHECK(H5Gopen2(file, "optim", H5P_DEFAULT))};
    info.optim_step = h5::read_int_attribute(g.get(), "step");
  }
  {
    h5::Group g{CRACKSEG_H5_CHECK(H5Gopen2(file, "state", H5P_DEFAULT))};
    for (const auto& name : attribute_names(g.get())) {
      try {
        info.state[name] = json::parse(h5::read_string_attribute(g.get(), name));
      } catch (const json::exception& e) {
        throw InputError("checkpoint " + file_name + ": /state attribute " + name + " is not JSON: " + e.what());
      }
    }
  }
  {
    h5::Group g{CRACKSEG_H5_CHECK(H5Gopen2(file, "config", H5P_DEFAULT))};
    info.config_json = h5::read_string_attribute(g.get(), "json");
    info.config_hash = h5::read_string_attribute(g.get(), "hash");
  }
  return info;
}

h5::File open_read(const fs::path& path) {
  if (!fs::exists(path)) throw InputError("checkpoint " + path.string() + " does not exist");
  return h5::open_read_only(path, "checkpoint");
}

// Runs `f`, prefixing library errors with what was being done to which file; keeps the type.
template <typename F>
auto with_context(const std::string& context, F&& f) {
  try {
    return f();
  } catch (const InputError&) {
    throw;  // already names the file
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) {
    if (directory) return;  // best effort: some file systems refuse directory fds
    throw Error("checkpoint: cannot open " + p.string() + " to fsync: " + std::strerror(errno));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !directory) throw Error("checkpoint: fsync of " + p.string() + " failed: " + std::strerror(err));
}

// An HDF5 file that lives in memory only (`name` labels it in HDF5's messages).
h5::File create_in_memory(const fs::path& name) {
  auto lock = h5::lock();
  h5::PropList fapl{CRACKSEG_H5_CHECK(H5Pcreate(H5P_FILE_ACCESS))};
  CRACKSEG_H5_CHECK(H5Pset_fapl_core(fapl.get(), std::size_t{1} << 20, 0));
  return h5::File{CRACKSEG_H5_CHECK(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()))};
}

// Writes `bytes` to a new file `path`; errors (ENOSPC, EDQUOT, EIO) name the file.
void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot create " + path.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      throw Error("writing " + path.string() + " failed after " + std::to_string(done) + " of " +
                  std::to_string(bytes.size()) + " bytes: " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) throw Error("closing " + path.string() + " failed: " + std::strerror(errno));
}

}  // namespace

void write_checkpoint(const fs::path& path, const Contents& contents, const WriteOptions& options) {
  const auto groups = groups_of(contents);
  for (std::size_t i = 0; i < 3; ++i) check_tensors(path, kGroups[i], *groups[i]);
  if (!contents.state.is_object())
    throw Error("checkpoint " + path.string() + ": state must be a JSON object, got " + contents.state.dump());
  const auto stage = [&](std::string_view s) {
    if (options.after_stage) options.after_stage(s);
  };
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  // Removes the temporary file unless it was renamed into place.
  struct TmpFile {
    fs::path p;
    bool keep = false;
    ~TmpFile() {
      std::error_code ec;
      if (!keep) fs::remove(p, ec);
    }
  } guard{tmp};
  with_context("writing checkpoint " + path.string() + " (via " + tmp.string() + ")", [&] {
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    // Built in memory (HDF5 core driver, no backing store), then written with write(2): HDF5
    // never meets a full disk, whose failed close leaves a half-closed file that crashes the
    // process at exit; ENOSPC becomes a message naming the file. Costs one transient copy of
    // the checkpoint in memory.
    h5::File f = create_in_memory(tmp);
    h5::write_attribute(f.get(), "kind", std::string_view("checkpoint"));
    h5::write_attribute(f.get(), "format_version", kFormatVersion);
    h5::write_attribute(f.get(), "crackseg", std::string_view(build_info::version));
    h5::write_attribute(f.get(), "git_commit", std::string_view(build_info::git_commit));
    for (std::size_t i = 0; i < 3; ++i) {
      write_tensors(f.get(), kGroups[i], *groups[i]);
      stage(kGroups[i]);
    }
    {
      h5::Group g{CRACKSEG_H5_CHECK(H5Gopen2(f.get(), "optim", H5P_DEFAULT))};
      h5::write_attribute(g.get(), "step", contents.optim_step);
    }
    {
      h5::Group g{CRACKSEG_H5_CHECK(H5Gcreate2(f.get(), "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
      for (const auto& [k, v] : contents.state.items()) h5::write_attribute(g.get(), k, std::string_view(v.dump()));
      stage("state");
    }
    {
      h5::Group g{CRACKSEG_H5_CHECK(H5Gcreate2(f.get(), "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
      h5::write_attribute(g.get(), "json", std::string_view(contents.config_json));
      h5::write_attribute(g.get(), "hash", std::string_view(contents.config_hash));
      stage("config");
    }
    CRACKSEG_H5_CHECK(H5Fflush(f.get(), H5F_SCOPE_GLOBAL));
    std::vector<char> image;
    {
      auto lock = h5::lock();
      const ssize_t size = CRACKSEG_H5_CHECK(H5Fget_file_image(f.get(), nullptr, 0));
      image.resize(static_cast<std::size_t>(size));
      CRACKSEG_H5_CHECK(H5Fget_file_image(f.get(), image.data(), image.size()));
    }
    CRACKSEG_H5_CHECK(H5Fclose(f.release()));
    write_bytes(tmp, image);
    stage("closed");
    fsync_path(tmp, false);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error("cannot rename " + tmp.string() + " to " + path.string() + ": " + std::strerror(errno));
    guard.keep = true;
    fsync_path(path.has_parent_path() ? path.parent_path() : fs::path("."), true);
  });
}

void read_checkpoint(const fs::path& path, Contents& into, const ReadOptions& options) {
  const auto groups = groups_of(into);
  for (std::size_t i = 0; i < 3; ++i) check_tensors(path, kGroups[i], *groups[i]);
  with_context("reading checkpoint " + path.string(), [&] {
    h5::File f = open_read(path);
    Info info = read_info_open(f.get(), path.string());
    const bool wanted[3] = {options.params, options.buffers, options.optim};
    const std::vector<DatasetInfo>* have[3] = {&info.params, &info.buffers, &info.optim};
    // Check everything before reading anything, so a mismatch leaves the model untouched.
    for (std::size_t i = 0; i < 3; ++i)
      if (wanted[i]) match(path.string(), kGroups[i], *have[i], *groups[i]);
    for (std::size_t i = 0; i < 3; ++i) {
      if (!wanted[i]) continue;
      for (auto& [name, t] : *groups[i]) {
        if (t.numel() == 0) continue;
        h5::Dataset ds{CRACKSEG_H5_CHECK(H5Dopen2(f.get(), dataset_path(kGroups[i], name).c_str(), H5P_DEFAULT))};
        try {
          CRACKSEG_H5_CHECK(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data<float>()));
        } catch (const Error& e) {
          throw Error("dataset " + dataset_path(kGroups[i], name) + ": " + e.what());
        }
      }
    }
    if (options.optim) into.optim_step = info.optim_step;
    into.state = std::move(info.state);
    into.config_json = std::move(info.config_json);
    into.config_hash = std::move(info.config_hash);
  });
}

Info read_info(const fs::path& path) {
  return with_context("reading checkpoint " + path.string(), [&] {
    h5::File f = open_read(path);
    return read_info_open(f.get(), path.string());
  });
}

bool is_checkpoint(const fs::path& path) {
  try {
    if (!fs::is_regular_file(path)) return false;
    if (CRACKSEG_H5_CHECK(H5Fis_hdf5(path.c_str())) <= 0) return false;
    h5::File f = h5::open_read_only(path, "checkpoint");
    return h5::has_attribute(f.get(), "kind") && h5::read_string_attribute(f.get(), "kind") == "checkpoint";
  } catch (const Error&) {
    return false;
  }
}

}  // namespace crackseg::checkpoint
