// ctest-labels: train
// ctest-timeout: 300
// eval/predict of a GPU-trained checkpoint with default flags (issue 14 item 4), without a
// GPU: `--backend auto` resolves a train.device = "cuda" checkpoint to the cuda backend (or
// to onednn where no cuda backend is registered), and load_model_from_checkpoint reads the
// host tensors of the file into a host model and copies them up through Backend::copy.
// The stand-in "cuda" backend here runs oneDNN's layers on host memory but tags every
// parameter and buffer Device::cuda, as the real backend's are: reading the checkpoint into
// them directly is refused by read_checkpoint, so the test fails if the host detour goes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "src/checkpoint/checkpoint.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/graph/backend.hpp"
#include "src/train/train_state.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

namespace {

const char* kUnet = R"(
[data]
crop = 32
[model]
name = "unet"
base = 4
depth = 2
[loss]
name = "bce_dice"
[optim]
name = "adam"
lr = 3e-3
[train]
epochs = 1
steps = 2
batch = 4
micro_batch = 2
seed = 7
log_every = 1000
val_every = 1
)";

Tensor host_view(const Tensor& t) {
  return Tensor::wrap(const_cast<void*>(t.raw()), t.dims(), t.dtype(), t.format(), Device::cpu);
}
Tensor device_view(const Tensor& t) {
  return Tensor::wrap(const_cast<void*>(t.raw()), t.dims(), t.dtype(), t.format(), Device::cuda);
}

// A oneDNN layer whose parameters and buffers are seen as device tensors (same memory).
class DeviceTagged final : public Layer {
 public:
  explicit DeviceTagged(std::unique_ptr<Layer> inner) : inner_(std::move(inner)) {
    for (Param* p : inner_->params())
      params_.push_back({p->name, device_view(p->value), p->grad.defined() ? device_view(p->grad) : Tensor(), p->decay});
    for (const auto& [n, t] : inner_->buffers()) buffers_.emplace_back(n, device_view(*t));
  }
  const LayerSpec& spec() const override { return inner_->spec(); }
  Dims output_dims(std::span<const Dims> in) const override { return inner_->output_dims(in); }
  void plan(std::span<const Dims> in) override { inner_->plan(in); }
  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    inner_->forward(ctx, in, out);
  }
  void backward(const StepContext& ctx, std::span<const Tensor* const> in, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    inner_->backward(ctx, in, out, dout, din);
  }
  std::vector<Param*> params() override {
    std::vector<Param*> out;
    for (auto& p : params_) out.push_back(&p);
    return out;
  }
  std::vector<std::pair<std::string, Tensor*>> buffers() override {
    std::vector<std::pair<std::string, Tensor*>> out;
    for (auto& [n, t] : buffers_) out.emplace_back(n, &t);
    return out;
  }
  void params_changed() override { inner_->params_changed(); }

 private:
  std::unique_ptr<Layer> inner_;
  std::vector<Param> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
};

class HostMemoryDevice final : public Backend {
 public:
  std::string name() const override { return "host-as-cuda"; }
  Device device() const override { return Device::cuda; }
  Format activation_format() const override { return layers_->activation_format(); }
  std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& name) override {
    return std::make_unique<DeviceTagged>(layers_->make_layer(spec, name));
  }
  void upload(const Tensor& host, Tensor& dst) override {  // initial values (not counted)
    Tensor d = host_view(dst);
    d.copy_from(host);
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

bool cuda_registered() {
  for (const auto& n : backend_names())
    if (n == "cuda") return true;
  return false;
}

}  // namespace

// Runs first (gtest keeps definition order): nothing is registered for "cuda" yet.
TEST(DeviceCheckpoint, AutoResolvesToCudaOnlyWhereACudaBackendExists) {
  const nlohmann::json gpu = {{"train", {{"backend", "auto"}, {"device", "cuda"}}}};
  const nlohmann::json cpu = {{"train", {{"backend", "auto"}, {"device", "cpu"}}}};
  const nlohmann::json ref = {{"train", {{"backend", "reference"}, {"device", "cpu"}}}};
  if (!cuda_registered()) {
    EXPECT_EQ(train::resolve_inference_backend("auto", gpu), "onednn");
  }
  EXPECT_EQ(train::resolve_inference_backend("auto", cpu), "onednn");
  EXPECT_EQ(train::resolve_inference_backend("auto", ref), "reference");
  EXPECT_EQ(train::resolve_inference_backend("onednn", gpu), "onednn");
  register_backend("cuda", [] { return std::make_unique<HostMemoryDevice>(); });
  EXPECT_EQ(train::resolve_inference_backend("auto", gpu), "cuda");
  EXPECT_EQ(train::resolve_inference_backend("auto", cpu), "onednn");
}

TEST(DeviceCheckpoint, LoadsThroughAHostModelOntoTheDevice) {
  set_device_allocator(Device::cuda, {[](std::size_t n) { return std::aligned_alloc(64, (n + 63) / 64 * 64); },
                                      [](void* p) { std::free(p); }});
  register_backend("cuda", [] { return std::make_unique<HostMemoryDevice>(); });
  const auto dir = test::shared_tmpdir("devckpt");
  const auto data = test::make_synth(dir, 24, 32);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 60.0);
  // A checkpoint (the file's tensors are host tensors whichever device wrote them; the
  // resolution of a train.device = "cuda" config is the test above).
  (void)train::run_training(test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"",
                                                       "train.out=\"" + (dir / "run").string() + "\""}),
                            comm, {.resume = false, .quiet = true});
  const auto ckpt = dir / "run" / "checkpoint.h5";
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  // Reading it into the device tensors directly is refused (what `--backend auto` did).
  {
    auto be = make_backend("cuda");
    auto host = train::load_model_from_checkpoint(ckpt, "onednn");
    auto dev = build_model(host.cfg.values.at("model"));
    dev->graph.instantiate(*be, 0);
    EXPECT_EQ(dev->graph.params().front()->value.device(), Device::cuda);
    checkpoint::Contents c;
    for (Param* p : dev->graph.params()) c.params.emplace_back(p->name, p->value);
    checkpoint::ReadOptions ro;
    ro.optim = false;
    EXPECT_ANY_THROW(checkpoint::read_checkpoint(ckpt, c, ro));
  }
  HostMemoryDevice::copies = 0;
  auto dev = train::load_model_from_checkpoint(ckpt, "cuda");
  EXPECT_EQ(dev.backend->name(), "host-as-cuda");
  EXPECT_GT(HostMemoryDevice::copies, 0);
  auto host = train::load_model_from_checkpoint(ckpt, "onednn");
  const auto dp = dev.model->graph.params(), hp = host.model->graph.params();
  ASSERT_EQ(dp.size(), hp.size());
  for (std::size_t i = 0; i < dp.size(); ++i) {
    EXPECT_EQ(dp[i]->value.device(), Device::cuda);
    EXPECT_EQ(dp[i]->name, hp[i]->name);
    const Tensor a = host_view(dp[i]->value).to_format(hp[i]->value.format());
    ASSERT_EQ(a.nbytes(), hp[i]->value.nbytes());
    EXPECT_EQ(0, std::memcmp(a.raw(), hp[i]->value.raw(), a.nbytes())) << dp[i]->name;
  }
  const auto db = dev.model->graph.buffers(), hb = host.model->graph.buffers();
  ASSERT_EQ(db.size(), hb.size());
  ASSERT_GT(db.size(), 0u);  // batchnorm running statistics travel too
  for (std::size_t i = 0; i < db.size(); ++i)
    EXPECT_EQ(0, std::memcmp(db[i].second->raw(), hb[i].second->raw(), hb[i].second->nbytes())) << db[i].first;
  std::filesystem::remove_all(dir);
}
