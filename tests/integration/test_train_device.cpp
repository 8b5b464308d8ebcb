// ctest-labels: train
// ctest-timeout: 600
// The trainer's device seam (src/train/train_device.hpp) without a GPU:
//  - train.device = "cuda" where no cuda backend / kit is registered is an InputError that
//    says how to get one (the CPU build's behaviour);
//  - a stand-in "cuda" device whose memory is host memory (oneDNN layers, host loss and
//    optimizer behind the kit interfaces, activations tagged Device::cuda) trains through
//    the device path: checkpoints and evaluation see the weights only through Backend::copy
//    and the host copy of the model. Its weights, checkpoints, resume and metrics must
//    equal a plain oneDNN run to the bit.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "src/dist/mpi_communicator.hpp"
#include "src/graph/backend.hpp"
#include "src/train/train_device.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

namespace {

const char* kUnet = R"(
[data]
crop = 32
augment = true
[model]
name = "unet"
base = 4
depth = 2
dropout = 0.2
[loss]
name = "bce_dice"
[optim]
name = "adam"
lr = 3e-3
[train]
epochs = 3
steps = 0
batch = 4
micro_batch = 2
seed = 7
determinism = "bitwise"
backend = "auto"
log_every = 1000
val_every = 1
[eval]
bins = 16
)";

// Host memory viewed as host memory, whatever the tensor's device tag says.
Tensor host_view(const Tensor& t) {
  return Tensor::wrap(const_cast<void*>(t.raw()), t.dims(), t.dtype(), t.format(), Device::cpu);
}

// oneDNN's layers; the Graph's activations and gradients are tagged
// Device::cuda (host memory from the allocator below), so any host access the Graph or the
// trainer makes outside the Backend hooks and the kit throws (Tensor::zero_, copy_from,
// Loss and Optimizer checks).
class HostMemoryDevice final : public Backend {
 public:
  std::string name() const override { return "host-as-cuda"; }
  Device device() const override { return Device::cuda; }
  Format activation_format() const override { return layers_->activation_format(); }
  std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& name) override {
    return layers_->make_layer(spec, name);
  }
  void copy(const Tensor& src, Tensor& dst) override {
    Tensor d = host_view(dst);
    Backend::copy(host_view(src), d);
    ++copies;
  }
  void accumulate(Tensor& dst, const Tensor& src) override {
    Tensor d = host_view(dst);
    Backend::accumulate(d, host_view(src));
  }
  void zero(Tensor& t) override { host_view(t).zero_(); }
  static inline int copies = 0;

 private:
  std::unique_ptr<Backend> layers_ = make_backend("onednn");
};

class HostMemoryLoss final : public train::StepLoss {
 public:
  explicit HostMemoryLoss(std::unique_ptr<Loss> l) : loss_(std::move(l)) {}
  LossOutput forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits,
                              double grad_scale) override {
    EXPECT_EQ(logits.device(), Device::cuda);
    EXPECT_EQ(dlogits.device(), Device::cuda);
    Tensor d = host_view(dlogits);
    return loss_->forward_backward(host_view(logits), host_view(target), d, grad_scale);
  }

 private:
  std::unique_ptr<Loss> loss_;
};

// Parameters of oneDNN layers are host tensors; state() and step() are the host
// optimizer's, host() stays null as on a real device, so checkpoints go through the copy.
class HostMemoryOptimizer final : public train::StepOptimizer {
 public:
  explicit HostMemoryOptimizer(std::unique_ptr<Optimizer> o) : opt_(std::move(o)) {}
  StepInfo step() override { return opt_->step(); }
  double lr() const override { return opt_->lr(); }
  void set_lr(double lr) override { opt_->set_lr(lr); }
  int64_t step_count() const override { return opt_->step_count(); }
  void set_step_count(int64_t s) override { opt_->set_step_count(s); }
  std::vector<std::pair<std::string, Tensor*>> state() override { return opt_->state(); }

 private:
  std::unique_ptr<Optimizer> opt_;
};

class HostMemoryKit final : public train::DeviceKit {
 public:
  std::unique_ptr<train::StepLoss> make_loss(const nlohmann::json& s, const LossContext& ctx) override {
    return std::make_unique<HostMemoryLoss>(crackseg::make_loss(s, ctx));
  }
  std::unique_ptr<train::StepOptimizer> make_optimizer(const OptimConfig& cfg, std::vector<Param*> ps) override {
    return std::make_unique<HostMemoryOptimizer>(crackseg::make_optimizer(cfg, std::move(ps)));
  }
  std::unique_ptr<train::StepSync> make_sync(dist::Communicator& comm, std::vector<Param*> ps,
                                             const dist::GradientSyncOptions& o, int64_t local_micro_batches) override {
    // Parameters and gradients are host memory here, so the CPU kit's sync serves as is.
    return train::make_device_kit("cpu", {})->make_sync(comm, std::move(ps), o, local_micro_batches);
  }
};

}  // namespace

// Runs first (gtest keeps definition order): nothing is registered for "cuda" yet.
TEST(TrainDevice, CudaWithoutACudaBuildIsAClearError) {
  for (const auto& n : backend_names())
    if (n == "cuda") GTEST_SKIP() << "a cuda backend is registered in this process";
  const auto cfg = test::tiny_config(kUnet, {"data.path=\"/nonexistent.h5\"", "train.device=\"cuda\""});
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  try {
    (void)train::run_training(cfg, comm, {.resume = false, .quiet = true});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("CRACKSEG_CUDA=ON"), std::string::npos) << e.what();
  }
  try {
    (void)train::make_device_kit("cuda", cfg.values);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cuda` preset"), std::string::npos) << e.what();
  }
  // A backend on one device with train.device naming another is refused up front.
  auto ref = make_backend("reference");
  EXPECT_THROW(train::TrainDevice(*ref, cfg.values), InputError);
}

TEST(TrainDevice, DevicePathEqualsTheHostRunToTheBit) {
  set_device_allocator(Device::cuda, {[](std::size_t n) { return std::aligned_alloc(64, n); },
                                      [](void* p) { std::free(p); }});
  register_backend("cuda", [] { return std::make_unique<HostMemoryDevice>(); });
  train::register_device_kit("cuda", [](const nlohmann::json&) { return std::make_unique<HostMemoryKit>(); });

  const auto dir = test::shared_tmpdir("device");
  const auto data = test::make_synth(dir, 24, 32);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> o = {"data.path=\"" + data.string() + "\"", "train.out=\"" + (dir / name).string() + "\""};
    o.insert(o.end(), extra.begin(), extra.end());
    return train::run_training(test::tiny_config(kUnet, o), comm, {.resume = true, .quiet = true});
  };
  // The device path runs each kernel on the rank's threads (a device backend has no model
  // replicas), so the host run it is compared with does too.
  const auto host = run("host", {"train.parallel=\"intra\""});
  HostMemoryDevice::copies = 0;
  const auto dev = run("device", {"train.device=\"cuda\""});
  EXPECT_GT(HostMemoryDevice::copies, 0);
  EXPECT_EQ(dev.result.at("backend").get<std::string>(), "host-as-cuda");
  EXPECT_EQ(test::checkpoint_weights_hash(dir / "device" / "checkpoint.h5"),
            test::checkpoint_weights_hash(dir / "host" / "checkpoint.h5"));
  EXPECT_EQ(test::checkpoint_weights_hash(dir / "device" / "best.h5"),
            test::checkpoint_weights_hash(dir / "host" / "best.h5"));
  EXPECT_EQ(dev.result.at("metrics"), host.result.at("metrics"));

  // Resume on the device from a 2-epoch checkpoint: the host copy is filled from the file and
  // copied up (weights, batchnorm statistics, Adam moments, step count, lr).
  (void)run("resumed", {"train.device=\"cuda\"", "train.epochs=2"});
  (void)run("resumed", {"train.device=\"cuda\""});
  EXPECT_EQ(test::checkpoint_weights_hash(dir / "resumed" / "checkpoint.h5"),
            test::checkpoint_weights_hash(dir / "host" / "checkpoint.h5"));
  std::filesystem::remove_all(dir);
}
