#include "src/train/train_device.hpp"

#include <map>
#include <mutex>

#include "src/core/error.hpp"
#include "src/dist/communicator.hpp"
#include "src/graph/backend.hpp"

namespace crackseg::train {

namespace {

// ---- "cpu": the host objects, called exactly as the trainer called them directly ----

class HostLoss final : public StepLoss {
 public:
  explicit HostLoss(std::unique_ptr<Loss> loss) : loss_(std::move(loss)) {}
  LossOutput forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits,
                              double grad_scale) override {
    return loss_->forward_backward(logits, target, dlogits, grad_scale);
  }

 private:
  std::unique_ptr<Loss> loss_;
};

class HostOptimizer final : public StepOptimizer {
 public:
  explicit HostOptimizer(std::unique_ptr<Optimizer> opt) : opt_(std::move(opt)) {}
  StepInfo step() override { return opt_->step(); }
  double lr() const override { return opt_->lr(); }
  void set_lr(double lr) override { opt_->set_lr(lr); }
  int64_t step_count() const override { return opt_->step_count(); }
  void set_step_count(int64_t s) override { opt_->set_step_count(s); }
  std::vector<std::pair<std::string, Tensor*>> state() override { return opt_->state(); }
  Optimizer* host() override { return opt_.get(); }

 private:
  std::unique_ptr<Optimizer> opt_;
};

class HostSync final : public StepSync {
 public:
  HostSync(dist::Communicator& comm, std::vector<Param*> params, const dist::GradientSyncOptions& options)
      : comm_(comm), sync_(comm, std::move(params), options) {}
  void broadcast_values(std::span<Param* const> params, int root) override {
    for (Param* p : params) comm_.broadcast(p->value.span<float>(), root);
  }
  void mark_ready(std::size_t index) override { sync_.mark_ready(index); }
  void stash_micro_batch(int64_t global_index) override { sync_.stash_micro_batch(global_index); }
  void stash_replica(int64_t global_index, std::span<Param* const> from) override {
    sync_.stash_micro_batch(global_index, from);
  }
  void finish() override { sync_.finish(); }

 private:
  dist::Communicator& comm_;
  dist::GradientSync sync_;
};

class CpuKit final : public DeviceKit {
 public:
  std::unique_ptr<StepLoss> make_loss(const nlohmann::json& section, const LossContext& ctx) override {
    return std::make_unique<HostLoss>(crackseg::make_loss(section, ctx));
  }
  std::unique_ptr<StepOptimizer> make_optimizer(const OptimConfig& cfg, std::vector<Param*> params) override {
    return std::make_unique<HostOptimizer>(crackseg::make_optimizer(cfg, std::move(params)));
  }
  std::unique_ptr<StepSync> make_sync(dist::Communicator& comm, std::vector<Param*> params,
                                      const dist::GradientSyncOptions& options, int64_t) override {
    return std::make_unique<HostSync>(comm, std::move(params), options);
  }
};

std::mutex g_mutex;
std::map<std::string, DeviceKitFactory>& kits() {
  static std::map<std::string, DeviceKitFactory> r{
      {"cpu", [](const nlohmann::json&) { return std::make_unique<CpuKit>(); }},
  };
  return r;
}

// dst[name] <- src[name] for every named tensor of dst (the two sides list the same names).
void copy_named(Backend& be, const std::vector<std::pair<std::string, Tensor*>>& src,
                const std::vector<std::pair<std::string, Tensor*>>& dst, const char* what) {
  std::map<std::string, Tensor*> by_name;
  for (const auto& [n, t] : src) by_name[n] = t;
  if (by_name.size() != dst.size())
    throw Error(std::string("TrainDevice: ") + what + ": " + std::to_string(src.size()) + " tensors on one side, " +
                std::to_string(dst.size()) + " on the other");
  for (const auto& [n, t] : dst) {
    const auto it = by_name.find(n);
    if (it == by_name.end()) throw Error(std::string("TrainDevice: ") + what + ": no tensor named '" + n + "'");
    be.copy(*it->second, *t);
  }
}

std::vector<std::pair<std::string, Tensor*>> named_values(const std::vector<Param*>& ps) {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (Param* p : ps) out.emplace_back(p->name, &p->value);
  return out;
}

}  // namespace

void register_device_kit(const std::string& device, DeviceKitFactory factory) {
  std::lock_guard lock(g_mutex);
  kits()[device] = std::move(factory);
}

std::unique_ptr<DeviceKit> make_device_kit(const std::string& device, const nlohmann::json& cfg) {
  DeviceKitFactory f;
  std::string names;
  {
    std::lock_guard lock(g_mutex);
    if (const auto it = kits().find(device); it != kits().end()) f = it->second;
    for (const auto& [k, v] : kits()) names += (names.empty() ? "" : ", ") + k;
  }
  if (!f)
    throw InputError("train.device = \"" + device + "\": this crackseg has no training support for it (available: " +
                     names + (device == "cuda" ? "; build with the `cuda` preset" : "") + ")");
  return f(cfg);
}

// ---- TrainDevice ----

struct TrainDevice::Mirror {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;  // state holder for checkpoints; never steps
};

TrainDevice::TrainDevice(Backend& backend, const nlohmann::json& cfg) : backend_(backend), cfg_(cfg) {
  const std::string device = to_string(backend.device());
  const std::string wanted = cfg.at("train").at("device").get<std::string>();
  if (wanted != device)
    throw InputError("train.device = \"" + wanted + "\" but train.backend = \"" + backend.name() + "\" runs on " +
                     device + " (use train.backend = \"auto\")");
  kit_ = make_device_kit(device, cfg);
}

TrainDevice::~TrainDevice() = default;

std::unique_ptr<StepLoss> TrainDevice::make_loss(const nlohmann::json& loss_section, const LossContext& ctx) {
  return kit_->make_loss(loss_section, ctx);
}

std::unique_ptr<StepOptimizer> TrainDevice::make_optimizer(const OptimConfig& cfg, std::vector<Param*> params) {
  optim_ = cfg;
  return kit_->make_optimizer(cfg, std::move(params));
}

std::unique_ptr<StepSync> TrainDevice::make_sync(dist::Communicator& comm, std::vector<Param*> params,
                                                 const dist::GradientSyncOptions& options,
                                                 int64_t local_micro_batches) {
  return kit_->make_sync(comm, std::move(params), options, local_micro_batches);
}

TrainDevice::Mirror& TrainDevice::mirror(Model& model) {
  if (!mirror_) {
    auto m = std::make_unique<Mirror>();
    m->backend = make_backend("onednn");
    m->model = build_model(cfg_.at("model"));
    m->model->graph.instantiate(*m->backend, 0);
    if (m->model->graph.num_params() != model.graph.num_params())
      throw Error("TrainDevice: the host copy of the model has " + std::to_string(m->model->graph.num_params()) +
                  " parameters, the device model " + std::to_string(model.graph.num_params()));
    m->opt = crackseg::make_optimizer(optim_, m->model->graph.params());
    mirror_ = std::move(m);
  }
  return *mirror_;
}

void TrainDevice::pull(Model& model, StepOptimizer* opt) {
  Mirror& m = mirror(model);
  copy_named(backend_, named_values(model.graph.params()), named_values(m.model->graph.params()), "parameters");
  copy_named(backend_, model.graph.buffers(), m.model->graph.buffers(), "buffers");
  if (opt) {
    copy_named(backend_, opt->state(), m.opt->state(), "optimizer state");
    m.opt->set_step_count(opt->step_count());
    m.opt->set_lr(opt->lr());
  }
  m.model->graph.mark_params_changed();
}

void TrainDevice::push(Model& model, StepOptimizer& opt) {
  Mirror& m = mirror(model);
  copy_named(backend_, named_values(m.model->graph.params()), named_values(model.graph.params()), "parameters");
  copy_named(backend_, m.model->graph.buffers(), model.graph.buffers(), "buffers");
  copy_named(backend_, m.opt->state(), opt.state(), "optimizer state");
  opt.set_step_count(m.opt->step_count());
  opt.set_lr(m.opt->lr());
  model.graph.mark_params_changed();
}

void TrainDevice::save(const std::filesystem::path& path, const TrainState& state, const config::ResolvedConfig& cfg,
                       Model& model, StepOptimizer& opt, LrSchedule& schedule, EarlyStopping& early) {
  if (Optimizer* host = opt.host(); host && device() == Device::cpu)
    return save_train_state(path, state, cfg, model, *host, schedule, early);
  pull(model, &opt);
  save_train_state(path, state, cfg, *mirror_->model, *mirror_->opt, schedule, early);
}

TrainState TrainDevice::load(const std::filesystem::path& path, const config::ResolvedConfig& cfg, Model& model,
                             StepOptimizer& opt, LrSchedule& schedule, EarlyStopping& early) {
  if (Optimizer* host = opt.host(); host && device() == Device::cpu)
    return load_train_state(path, cfg, model, *host, schedule, early);
  Mirror& m = mirror(model);
  TrainState st = load_train_state(path, cfg, *m.model, *m.opt, schedule, early);
  push(model, opt);
  return st;
}

EvalResult TrainDevice::evaluate(const nlohmann::json& cfg, Model& model, dist::Communicator& comm,
                                 const std::string& split, int64_t max_images) {
  if (device() == Device::cpu) return evaluate_split(cfg, model, comm, split, max_images);
  pull(model, nullptr);
  return evaluate_split(cfg, *mirror_->model, comm, split, max_images);
}

}  // namespace crackseg::train
