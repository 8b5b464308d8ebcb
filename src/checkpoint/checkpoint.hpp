// Training checkpoints in HDF5: everything `--resume` needs to continue exactly.
//
//   /                 attributes kind = "checkpoint", format_version = 1, crackseg = version,
//                     git_commit
//   /params/<name>    f32, the parameter's dims (one dataset per Param, named as Param::name)
//   /buffers/<name>   f32, non-trainable state (batchnorm running mean / variance)
//   /optim/<name>     f32 optimizer state tensors (Adam moments...); attribute step (int64)
//   /state            one JSON-string attribute per member of `state`; by convention
//                     position = {epoch, step_in_epoch, global_step}, scheduler, early_stop,
//                     best = {metric, value, epoch}
//   /config           attributes json (the resolved config, canonical) and hash
//
// Writing goes to `<path>.tmp.<pid>`, is fsync'ed, then renamed over `path`, so a crash or
// preemption mid-write leaves the previous checkpoint intact and never a partial file. Only
// rank 0 writes (the caller ensures it); every rank reads (no MPI inside). Reading checks
// names and shapes against the model's tensors, and every error names the checkpoint file
// and the offending dataset.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/tensor/tensor.hpp"

namespace crackseg::checkpoint {

inline constexpr int64_t kFormatVersion = 1;

// Named tensors; a Tensor is a handle, so reading fills the model's own storage. Tensors are
// f32 on the host, plain or nchw (row-major logical order); names must not contain '/'.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct Contents {
  NamedTensors params;
  NamedTensors buffers;
  NamedTensors optim;
  int64_t optim_step = 0;
  nlohmann::json state = nlohmann::json::object();
  std::string config_json;  // the resolved config, canonical JSON
  std::string config_hash;
};

struct WriteOptions {
  // Called after each stage ("params", "buffers", "optim", "state", "config", "closed")
  // of writing the temporary file; a throw aborts the write as a real failure would. For
  // tests of the no-partial-file guarantee.
  std::function<void(std::string_view stage)> after_stage;
};

void write_checkpoint(const std::filesystem::path& path, const Contents& contents, const WriteOptions& options = {});

// What to load: eval/predict need only the weights.
struct ReadOptions {
  bool params = true;
  bool buffers = true;
  bool optim = true;
};

// Fills the data of every tensor in `into` (names and dims must match the file exactly: a
// missing, extra or mis-shaped dataset is an error naming the file and dataset) and sets
// optim_step, state, config_json, config_hash.
void read_checkpoint(const std::filesystem::path& path, Contents& into, const ReadOptions& options = {});

// A checkpoint's metadata and tensor inventory without the tensor data (for `crackseg info`
// and for building the model from the stored config before loading).
struct DatasetInfo {
  std::string name;
  Dims dims;
};
struct Info {
  int64_t format_version = 0;
  std::string crackseg_version, git_commit;
  std::vector<DatasetInfo> params, buffers, optim;
  int64_t optim_step = 0;
  nlohmann::json state = nlohmann::json::object();
  std::string config_json, config_hash;
};
[[nodiscard]] Info read_info(const std::filesystem::path& path);

// True when `path` is an HDF5 file whose root says kind = "checkpoint".
[[nodiscard]] bool is_checkpoint(const std::filesystem::path& path);

}  // namespace crackseg::checkpoint
