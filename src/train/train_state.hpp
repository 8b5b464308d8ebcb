// What a training checkpoint holds beyond the weights, and the glue between the trainer's
// objects and src/checkpoint's HDF5 file:
//   /params, /buffers        model weights and batchnorm running statistics
//   /optim                   optimizer moments, step count, lr
//   /state                   position (epoch, step_in_epoch, global_step), best metric so
//                            far, scheduler and early-stopping state (JSON)
//   /config                  the resolved config (JSON) and its hash
// A checkpoint written at R ranks resumes at any R' (nothing in it depends on R).
#pragma once
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <memory>

#include "src/config/config.hpp"
#include "src/graph/layer.hpp"
#include "src/models/model.hpp"

namespace crackseg {
class Optimizer;
class LrSchedule;
class EarlyStopping;
}  // namespace crackseg

namespace crackseg::train {

struct TrainState {
  int64_t epoch = 0;          // the epoch training continues in
  int64_t step_in_epoch = 0;  // the global step within that epoch it continues from
  int64_t global_step = 0;    // optimizer steps done
  // Sum of the step losses and their count in `epoch` before step_in_epoch, so that a resume
  // mid-epoch reports the whole epoch's train_loss in metrics.csv (0 at an epoch boundary).
  double epoch_loss_sum = 0;
  int64_t epoch_loss_steps = 0;
  double best_value = NAN;    // best validation value of train.best_metric so far
  int64_t best_epoch = -1;
  nlohmann::json best_metrics;

  [[nodiscard]] bool improves_best(double v, bool larger_is_better) const {
    if (!std::isfinite(v)) return false;
    if (!std::isfinite(best_value)) return true;
    return larger_is_better ? v > best_value : v < best_value;
  }
};

void save_train_state(const std::filesystem::path& path, const TrainState& state, const config::ResolvedConfig& cfg,
                      Model& model, Optimizer& opt, LrSchedule& schedule, EarlyStopping& early);

// Restores everything in place. The checkpoint's config must equal `cfg` except for keys
// that do not change the trajectory (train.out, train.epochs, train.steps, train.log_every,
// train.checkpoint_every, train.threads, dist.*): other differences are an InputError naming
// the first differing key, so a resume never silently mixes two configurations.
[[nodiscard]] TrainState load_train_state(const std::filesystem::path& path, const config::ResolvedConfig& cfg,
                                          Model& model, Optimizer& opt, LrSchedule& schedule, EarlyStopping& early);

// The backend eval/predict use for `requested` (--backend): itself unless "auto"; "auto" is
// the checkpoint config's train.backend, or its device default (cuda for train.device =
// "cuda", else onednn), falling back to onednn when cuda is asked for but this build has no
// cuda backend registered.
[[nodiscard]] std::string resolve_inference_backend(const std::string& requested, const nlohmann::json& cfg_values);

// For eval/predict: the config stored in a checkpoint and its model, instantiated on
// `backend` (resolve_inference_backend) with the checkpoint's weights. A model on a device
// backend is read into a host (oneDNN) copy first and copied up through Backend::copy, so a
// GPU-trained checkpoint evaluates with default flags.
struct LoadedModel {
  config::ResolvedConfig cfg;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
};
[[nodiscard]] LoadedModel load_model_from_checkpoint(const std::filesystem::path& path,
                                                     const std::string& backend = "auto");

// FNV-1a 64 over the dataset file's bytes (16 hex digits): identifies the data in result.json.
[[nodiscard]] std::string file_checksum(const std::filesystem::path& path);

}  // namespace crackseg::train
