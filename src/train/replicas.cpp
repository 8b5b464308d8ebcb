#include "src/train/replicas.hpp"

#include <omp.h>

#include <exception>

#include "src/core/error.hpp"

namespace crackseg::train {

struct Replicas::Slot {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  std::unique_ptr<StepLoss> loss;
  std::vector<Param*> params;
  Batch batch;
  Tensor dlogits;
  const Tensor* logits = nullptr;  // the graph's output of the last forward
};

Replicas::Replicas(int count, const std::string& backend, const nlohmann::json& model_cfg, uint64_t init_seed,
                   const std::function<std::unique_ptr<StepLoss>()>& make_loss, const std::string& precision,
                   const std::string& conv_algorithm) {
  if (count < 1) throw Error("Replicas: count " + std::to_string(count) + " < 1");
  for (int j = 0; j < count; ++j) {
    auto s = std::make_unique<Slot>();
    s->backend = make_backend(backend);
    if (s->backend->device() != Device::cpu)
      throw InputError("train.parallel = \"batch\" needs a host backend, not " + s->backend->name());
    s->backend->set_precision(precision);
    s->backend->set_conv_algorithm(conv_algorithm);
    s->model = build_model(model_cfg);
    s->model->graph.instantiate(*s->backend, init_seed);
    s->model->graph.defer_running_stats(true);
    s->params = s->model->graph.params();
    s->loss = make_loss();
    slots_.push_back(std::move(s));
  }
}

Replicas::~Replicas() = default;

std::string Replicas::precision_summary() const { return slots_.front()->backend->precision_summary(); }

Batch& Replicas::batch(int j) { return slots_.at(static_cast<std::size_t>(j))->batch; }
Graph& Replicas::graph(int j) { return slots_.at(static_cast<std::size_t>(j))->model->graph; }
std::vector<Param*>& Replicas::params(int j) { return slots_.at(static_cast<std::size_t>(j))->params; }

void Replicas::copy_params_from(std::span<Param* const> src) {
  for (auto& s : slots_) {
    if (s->params.size() != src.size())
      throw Error("Replicas: the master model has " + std::to_string(src.size()) + " parameters, a replica " +
                  std::to_string(s->params.size()));
    for (std::size_t i = 0; i < src.size(); ++i) s->params[i]->value.copy_from(src[i]->value);
    s->model->graph.mark_params_changed();
  }
}

namespace {
// Runs body(j) for j in [0, n), one OpenMP thread each, every thread limited to one thread
// for the work it starts (oneDNN primitives planned inside see omp_get_max_threads() == 1).
// The first exception (lowest j) is rethrown after all threads finished.
template <class F>
void each_replica(int n, F&& body) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n));
#pragma omp parallel num_threads(n)
  {
    const int j = omp_get_thread_num();
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    try {
      // A team smaller than asked for (OMP_THREAD_LIMIT, OMP_DYNAMIC): thread j takes j, j+team, ...
      for (int i = j; i < n; i += omp_get_num_threads()) body(i);
    } catch (...) {
      errors[static_cast<std::size_t>(j)] = std::current_exception();
    }
    omp_set_num_threads(saved);
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}
}  // namespace

std::vector<double> Replicas::run(int n, uint64_t seed, uint64_t epoch, double grad_scale) {
  if (n < 1 || n > size()) throw Error("Replicas::run: " + std::to_string(n) + " of " + std::to_string(size()));
  auto ctx_of = [&](Slot& s) { return StepContext{true, seed, epoch, s.batch.sample_ids}; };
  each_replica(n, [&](int j) {
    Slot& s = *slots_[static_cast<std::size_t>(j)];
    const Tensor& y = s.model->graph.forward(ctx_of(s), s.batch.images);
    s.logits = &y;
    if (!s.dlogits.defined() || s.dlogits.dims() != y.dims() || s.dlogits.format() != y.format())
      s.dlogits = Tensor::empty(y.dims(), DType::f32, y.format(), y.device());
  });
  // The loss runs on this thread, replica after replica: its kernels (Kokkos host loops) are
  // thread-count invariant by construction (src/losses/parallel.hpp), and Kokkos' host
  // execution space is not meant to be entered from several threads at once.
  std::vector<double> losses(static_cast<std::size_t>(n));
  for (int j = 0; j < n; ++j) {
    Slot& s = *slots_[static_cast<std::size_t>(j)];
    losses[static_cast<std::size_t>(j)] =
        s.loss->forward_backward(*s.logits, s.batch.targets, s.dlogits, grad_scale).loss;
  }
  each_replica(n, [&](int j) {
    Slot& s = *slots_[static_cast<std::size_t>(j)];
    s.model->graph.backward(ctx_of(s), s.dlogits);
  });
  return losses;
}

}  // namespace crackseg::train
