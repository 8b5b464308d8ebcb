#include "kernels/cuda/train_kit.hpp"

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/gradient_sync.hpp"
#include "kernels/cuda/loss.hpp"
#include "kernels/cuda/nccl_comm.hpp"
#include "kernels/cuda/optim.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/core/error.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/train_device.hpp"

namespace crackseg::cuda {

namespace {

class CudaStepLoss final : public train::StepLoss {
 public:
  explicit CudaStepLoss(DeviceLossSpec spec) : loss_(std::move(spec)) {}
  LossOutput forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits,
                              double grad_scale) override {
    if (target.device() == Device::cuda) return loss_.forward_backward(logits, target, dlogits, grad_scale);
    // The reader's batch is on the host: upload it into a buffer kept across steps.
    if (!target_.defined() || target_.dims() != target.dims() || target_.format() != target.format() ||
        target_.dtype() != target.dtype())
      target_ = Tensor::empty(target.dims(), target.dtype(), target.format(), Device::cuda);
    upload_async(target, target_);  // pinned staging: the stream is not drained per batch
    return loss_.forward_backward(logits, target_, dlogits, grad_scale);
  }

 private:
  DeviceLoss loss_;
  Tensor target_;  // (N, 1, H, W) or (N, K), device copy of the batch's target
};

class CudaStepOptimizer final : public train::StepOptimizer {
 public:
  CudaStepOptimizer(const OptimConfig& cfg, std::vector<Param*> params) : opt_(cfg, std::move(params)) {}
  StepInfo step() override { return opt_.step(); }
  double lr() const override { return opt_.lr(); }
  void set_lr(double lr) override { opt_.set_lr(lr); }
  int64_t step_count() const override { return opt_.step_count(); }
  void set_step_count(int64_t s) override { opt_.set_step_count(s); }
  std::vector<std::pair<std::string, Tensor*>> state() override { return opt_.state(); }

 private:
  DeviceOptimizer opt_;
};

MPI_Comm mpi_of(dist::Communicator& comm) {
  if (auto* m = dynamic_cast<dist::MpiCommunicator*>(&comm)) return m->comm();
  throw Error("cuda training: the run's communicator is '" + comm.name() +
              "'; NCCL is set up over an MPI communicator");
}

class CudaStepSync final : public train::StepSync {
 public:
  CudaStepSync(dist::Communicator& comm, std::vector<Param*> params, const dist::GradientSyncOptions& options,
               int64_t local_micro_batches)
      : nccl_(mpi_of(comm), comm.timeout_s()), sync_(nccl_, std::move(params), options, local_micro_batches) {}
  void broadcast_values(std::span<Param* const> params, int root) override {
    for (Param* p : params) nccl_.broadcast(p->value.span<float>(), root);  // device spans
  }
  void mark_ready(std::size_t index) override { sync_.mark_ready(index); }
  void stash_micro_batch(int64_t global_index) override { sync_.stash_micro_batch(global_index); }
  void finish() override { sync_.finish(); }

 private:
  NcclCommunicator nccl_;  // declared before sync_, which holds a reference to it
  DeviceGradientSync sync_;
};

class CudaKit final : public train::DeviceKit {
 public:
  std::unique_ptr<train::StepLoss> make_loss(const nlohmann::json& section, const LossContext& ctx) override {
    (void)crackseg::make_loss(section, ctx);  // the host loss validates names, keys and values
    return std::make_unique<CudaStepLoss>(device_loss_spec(section, ctx));
  }
  std::unique_ptr<train::StepOptimizer> make_optimizer(const OptimConfig& cfg, std::vector<Param*> params) override {
    return std::make_unique<CudaStepOptimizer>(cfg, std::move(params));
  }
  std::unique_ptr<train::StepSync> make_sync(dist::Communicator& comm, std::vector<Param*> params,
                                             const dist::GradientSyncOptions& options,
                                             int64_t local_micro_batches) override {
    return std::make_unique<CudaStepSync>(comm, std::move(params), options, local_micro_batches);
  }
};

}  // namespace

void register_cuda_training() {
  train::register_device_kit("cuda", [](const nlohmann::json& cfg) {
    CudaOptions o = Context::get().options();
    const auto& train = cfg.at("train");
    o.deterministic = train.at("determinism").get<std::string>() == "bitwise";
    // train.precision: absent in configs resolved before the key existed (fp32 then).
    // Refused with the key named: tf32/bf16 under bitwise, bf16 on a GPU without bf16
    // tensor cores (precision.hpp cuda_precision).
    const std::string value = train.contains("precision") ? train.at("precision").get<std::string>() : "fp32";
    const DeviceInfo& dev = Context::get().device_info();
    const ConvPrecision p = cuda_precision(value, o.deterministic, dev.name, dev.cc_major, dev.cc_minor);
    o.tf32 = p == ConvPrecision::tf32;
    o.bf16 = p == ConvPrecision::bf16;
    Context::get().set_options(o);
    return std::make_unique<CudaKit>();
  });
}

}  // namespace crackseg::cuda
