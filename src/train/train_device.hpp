// Where a training step runs. The trainer drives three small interfaces — the loss, the
// optimizer and the gradient sync — which a DeviceKit makes for the device the model's
// parameters live on, and reaches checkpoints and evaluation (host code) through
// TrainDevice:
//
//   auto backend = make_backend(...);  model.graph.instantiate(*backend, seed);
//   TrainDevice dev(*backend, cfg);          // kit for backend.device(): "cpu" built in
//   auto loss = dev.make_loss(cfg["loss"], ctx);
//   auto opt  = dev.make_optimizer(optim_config, model.graph.params());
//   auto sync = dev.make_sync(comm, params, sync_options, local_micro_batches);
//   dev.save(...), dev.load(...), dev.evaluate(...)
//
// "cpu" wraps crackseg::Loss, crackseg::Optimizer and dist::GradientSync unchanged (the
// same bits as calling them directly). Other devices register a kit: kernels/cuda's
// cuda::register_cuda_training() adds "cuda" (DeviceLoss, DeviceOptimizer, NCCL +
// DeviceGradientSync), so crackseg_train never depends on CUDA; asking for a device no kit
// is registered for is an InputError.
//
// Checkpoints and evaluation read host tensors. For a device model they go through a host
// copy of the model (built on first use, oneDNN backend) and of the optimizer state:
// copied down before a checkpoint is written or the model is evaluated, up after a
// checkpoint is read. Evaluation on the host is correct but not fast. train::Predictor
// reads device outputs through Backend::copy (so `crackseg eval/predict --backend cuda`
// run on the GPU); switching the trainer's validation to the device model is the next
// step for large validation sets (the dense patch-CNN path stays CPU-only).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/config/config.hpp"
#include "src/dist/gradient_sync.hpp"
#include "src/graph/layer.hpp"
#include "src/losses/loss.hpp"
#include "src/models/model.hpp"
#include "src/optim/optimizer.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/train_state.hpp"

namespace crackseg {
class LrSchedule;
class EarlyStopping;
}  // namespace crackseg

namespace crackseg::train {

class StepLoss {
 public:
  virtual ~StepLoss() = default;
  // logits and dlogits live where the model runs; target is the batch's (host) tensor and
  // is uploaded when the model runs elsewhere. Loss::forward_backward's contract otherwise.
  virtual LossOutput forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits,
                                      double grad_scale) = 0;
};

// crackseg::Optimizer's API for parameters on any device.
class StepOptimizer {
 public:
  virtual ~StepOptimizer() = default;
  virtual StepInfo step() = 0;
  [[nodiscard]] virtual double lr() const = 0;
  virtual void set_lr(double lr) = 0;
  [[nodiscard]] virtual int64_t step_count() const = 0;
  virtual void set_step_count(int64_t s) = 0;
  // Moment tensors on the parameters' device, named as crackseg::Optimizer names them.
  [[nodiscard]] virtual std::vector<std::pair<std::string, Tensor*>> state() = 0;
  // The host optimizer itself when the parameters are on the host (checkpoints use it).
  [[nodiscard]] virtual Optimizer* host() { return nullptr; }
};

// dist::GradientSync's API (see gradient_sync.hpp), plus the initial weight broadcast.
class StepSync {
 public:
  virtual ~StepSync() = default;
  // Every rank gets rank `root`'s parameter values.
  virtual void broadcast_values(std::span<Param* const> params, int root) = 0;
  virtual void mark_ready(std::size_t index) = 0;
  virtual void stash_micro_batch(int64_t global_index) = 0;
  // From a model replica's parameters (micro-batch-parallel bitwise mode, host models only).
  virtual void stash_replica(int64_t global_index, std::span<Param* const> /*from*/) {
    (void)global_index;
    throw Error("stash_micro_batch from a replica: not supported by this device's gradient sync");
  }
  virtual void finish() = 0;
};

class DeviceKit {
 public:
  virtual ~DeviceKit() = default;
  // Validates the section as make_loss does (same messages).
  [[nodiscard]] virtual std::unique_ptr<StepLoss> make_loss(const nlohmann::json& loss_section,
                                                            const LossContext& ctx) = 0;
  [[nodiscard]] virtual std::unique_ptr<StepOptimizer> make_optimizer(const OptimConfig& cfg,
                                                                      std::vector<Param*> params) = 0;
  // `comm` is the run's (host, MPI) communicator; a device kit may build its own on top.
  // local_micro_batches: micro-batches per step on this rank (bitwise stash size).
  [[nodiscard]] virtual std::unique_ptr<StepSync> make_sync(dist::Communicator& comm, std::vector<Param*> params,
                                                            const dist::GradientSyncOptions& options,
                                                            int64_t local_micro_batches) = 0;
};

// cfg: the resolved config values (a kit reads e.g. train.determinism).
using DeviceKitFactory = std::function<std::unique_ptr<DeviceKit>(const nlohmann::json& cfg)>;
// Adds or replaces the kit for `device` ("cuda"); "cpu" is built in.
void register_device_kit(const std::string& device, DeviceKitFactory factory);
// InputError naming the registered devices when `device` has no kit.
[[nodiscard]] std::unique_ptr<DeviceKit> make_device_kit(const std::string& device, const nlohmann::json& cfg);

class TrainDevice {
 public:
  // backend: the one the model is (or will be) instantiated on; it must outlive this. cfg:
  // the resolved config values; train.device must name backend.device() (InputError).
  TrainDevice(Backend& backend, const nlohmann::json& cfg);
  ~TrainDevice();
  TrainDevice(const TrainDevice&) = delete;
  TrainDevice& operator=(const TrainDevice&) = delete;

  [[nodiscard]] Device device() const { return backend_.device(); }
  [[nodiscard]] std::unique_ptr<StepLoss> make_loss(const nlohmann::json& loss_section, const LossContext& ctx);
  [[nodiscard]] std::unique_ptr<StepOptimizer> make_optimizer(const OptimConfig& cfg, std::vector<Param*> params);
  [[nodiscard]] std::unique_ptr<StepSync> make_sync(dist::Communicator& comm, std::vector<Param*> params,
                                                    const dist::GradientSyncOptions& options,
                                                    int64_t local_micro_batches);

  // save_train_state / load_train_state / evaluate_split for a model on this device.
  void save(const std::filesystem::path& path, const TrainState& state, const config::ResolvedConfig& cfg,
            Model& model, StepOptimizer& opt, LrSchedule& schedule, EarlyStopping& early);
  [[nodiscard]] TrainState load(const std::filesystem::path& path, const config::ResolvedConfig& cfg, Model& model,
                                StepOptimizer& opt, LrSchedule& schedule, EarlyStopping& early);
  [[nodiscard]] EvalResult evaluate(const nlohmann::json& cfg, Model& model, dist::Communicator& comm,
                                    const std::string& split, int64_t max_images);

 private:
  struct Mirror;
  Mirror& mirror(Model& model);
  void pull(Model& model, StepOptimizer* opt);  // device -> host copy
  void push(Model& model, StepOptimizer& opt);  // host copy -> device

  Backend& backend_;
  nlohmann::json cfg_;
  std::unique_ptr<DeviceKit> kit_;
  OptimConfig optim_;
  std::unique_ptr<Mirror> mirror_;
};

}  // namespace crackseg::train
