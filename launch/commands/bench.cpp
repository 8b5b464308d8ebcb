// `crackseg bench`: training-step throughput of the reference cases of issue 3 on the oneDNN
// backend, as a fraction of this machine's FP32 matrix-multiply peak measured in the same run.
//
// One step = forward, BCE-with-logits loss (and its gradient), backward, Adam update; the
// first steps plan memory and build primitives and are not timed. Reported per case:
//   samples/s       batch / median step time
//   GFLOP/s         2 x (conv + linear multiply-adds per sample) x 3 (forward, backward data,
//                   backward weights) x samples/s, from Graph::forward_macs_per_sample
//   % of peak       that GFLOP/s over the best of several large dnnl_sgemm calls on all threads
//   peak RSS        the process's resident high-water mark during the case (reset per case
//                   through /proc/self/clear_refs)
//   pct_peak_cpu    the same ratio per CPU-second (user + system) instead of per wall second:
//                   on a shared, loaded machine wall time inflates with the load, CPU time much
//                   less, so this is the fairer efficiency figure there.
//   step_ms_min/max the fastest and slowest timed step (JSON): a wide spread says the host
//                   moved under the run and the median alone should not be quoted.
// --paced (with --json): after the untimed steps the case prints {"paced":"ready",...} and
// then runs each timed step only when a line arrives on stdin, printing {"paced":"step",
// "ms":...} after it; the usual JSON object follows the last one. A driver (bench/peer/
// peer_bench.py paired) alternates such processes step by step, so both sides of a
// comparison see the same moment of a noisy host.
// A benchmark, not a test: run it on a quiet machine, several times, and quote medians.
#include <dnnl.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "launch/command.hpp"
#include "src/train/replicas.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "src/graph/backend.hpp"
#include "src/graph/layer.hpp"
#include "src/losses/loss.hpp"
#include "src/models/model.hpp"
#include "src/optim/optimizer.hpp"

namespace {

using namespace crackseg;
using Clock = std::chrono::steady_clock;

struct Opts {
  std::vector<std::string> cases;
  bool json = false;
  int steps = 10;
  int warmup = 2;
  int threads = 0;
  std::string backend = "onednn";
  std::string parallel = "intra";
  std::string precision = "fp32";
  std::string conv_algorithm = "direct";
  bool paced = false;
} opts;

// --paced: before timed step `s` (counted from 0 over warmup + timed steps) wait for a line on
// stdin, announcing readiness once; after it, report its time. Nothing happens otherwise.
void pace_before(const std::string& name, int s) {
  if (!opts.paced || s < opts.warmup) return;
  if (s == opts.warmup) {
    std::printf("%s\n", nlohmann::json({{"paced", "ready"}, {"case", name}}).dump().c_str());
    std::fflush(stdout);
  }
  std::string line;
  if (!std::getline(std::cin, line))
    throw InputError("--paced: stdin closed before timed step " + std::to_string(s - opts.warmup + 1) + " of " +
                     std::to_string(opts.steps) + " of case " + name);
}
void pace_after(int s, double seconds) {
  if (!opts.paced || s < opts.warmup) return;
  std::printf("%s\n", nlohmann::json({{"paced", "step"}, {"ms", seconds * 1e3}}).dump().c_str());
  std::fflush(stdout);
}

struct BenchCase {
  std::string name;
  nlohmann::json model;
  int64_t size;
  int64_t batch;
};

const std::vector<BenchCase>& all_cases() {
  static const std::vector<BenchCase> c = {
      {"patch_cnn", {{"name", "patch_cnn"}, {"h", 13}, {"s", 2}}, 27, 128},
      {"unet", {{"name", "unet"}, {"base", 16}, {"depth", 4}}, 400, 4},
      {"spiral_net", {{"name", "spiral_net"}, {"width", 0.25}}, 255, 4},
  };
  return c;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// User + system CPU seconds of this process so far.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// VmHWM of this process in MB; reset_peak_rss() restarts the high-water mark (Linux >= 4.0).
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0.0;
}
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}

// FP32 sgemm peak: the best of several n x n x n dnnl_sgemm calls on the current threads.
// per_cpu_s: the best GFLOP per CPU-second of the same calls.
double sgemm_peak_gflops(int64_t n, int reps, double& per_cpu_s) {
  std::vector<float> a(static_cast<std::size_t>(n * n)), b(a.size()), c(a.size());
  SampleRng rng(1, 0, 0, Purpose::noise);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = rng.uniform() - 0.5f, b[i] = rng.uniform() - 0.5f;
  double best = 0;
  per_cpu_s = 0;
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  for (int r = 0; r < reps + 1; ++r) {
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    const dnnl_status_t st = dnnl_sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    const double s = seconds_since(t0), cs = cpu_seconds() - c0;
    if (st != dnnl_success) throw_library_error("oneDNN", "dnnl_sgemm", "status " + std::to_string(static_cast<int>(st)));
    if (r == 0) continue;  // the first call warms up (threads, page faults)
    best = std::max(best, flop / s / 1e9);
    if (cs > 0) per_cpu_s = std::max(per_cpu_s, flop / cs / 1e9);
  }
  return best;
}

struct CaseResult {
  std::string name;
  double samples_per_s, step_ms, gflops, pct_peak, peak_rss_mb, gflop_per_sample, loss_first, loss_last;
  double cpu_s_per_step, pct_peak_cpu;
  double step_ms_min, step_ms_max;  // the fastest and slowest timed step: how much the host moved
  double allocated_mb = 0;  // buffers the graph and its layers allocated for the case (nn_counters)
  int64_t params;
  std::string arithmetic;  // Backend::precision_summary: what the convolutions computed in
};

// Random images in [0, 1) and 0/1 targets (about 10% positive), fixed seed.
Tensor random_input(const Dims& d, uint64_t purpose_offset, bool binary) {
  Tensor t = Tensor::empty(d, DType::f32, d.size() == 4 ? Format::nchw : Format::plain);
  SampleRng rng(126, purpose_offset, 0, Purpose::noise);
  for (auto& v : t.span<float>()) v = binary ? (rng.uniform() < 0.1f ? 1.0f : 0.0f) : rng.uniform();
  return t;
}

// The figures of one case from its timed steps (median step time, CPU time, peak RSS).
CaseResult summarize(const BenchCase& c, Model& m, const std::vector<double>& times, double cpu_timed,
                     double loss_first, double loss_last, double peak, double peak_per_cpu_s) {
  CaseResult r;
  r.name = c.name;
  r.params = m.graph.num_params();
  const double step = median(times);
  r.step_ms = step * 1e3;
  r.step_ms_min = *std::min_element(times.begin(), times.end()) * 1e3;
  r.step_ms_max = *std::max_element(times.begin(), times.end()) * 1e3;
  r.samples_per_s = static_cast<double>(c.batch) / step;
  r.gflop_per_sample = 2.0 * 3.0 * m.graph.forward_macs_per_sample({m.in_channels, c.size, c.size}) / 1e9;
  r.gflops = r.gflop_per_sample * r.samples_per_s;
  r.pct_peak = 100.0 * r.gflops / peak;
  r.cpu_s_per_step = cpu_timed / opts.steps;
  r.pct_peak_cpu = 100.0 * (r.gflop_per_sample * static_cast<double>(c.batch) / r.cpu_s_per_step) / peak_per_cpu_s;
  r.peak_rss_mb = peak_rss_mb();
  r.loss_first = loss_first;
  r.loss_last = loss_last;
  return r;
}

// The loss a model replica uses (train::Replicas drives the trainer's StepLoss interface).
class BenchLoss final : public train::StepLoss {
 public:
  LossOutput forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    return loss_->forward_backward(logits, target, dlogits, scale);
  }

 private:
  std::unique_ptr<Loss> loss_ = make_loss({{"name", "bce"}});
};

// --parallel batch: the batch is cut into one micro-batch per thread, each computed on its own
// model replica by one thread (train.parallel = "batch", src/train/replicas.hpp); the
// gradients are summed into the master model, which takes the Adam step.
CaseResult run_case_batch_parallel(const BenchCase& c, Backend& backend, double peak, double peak_per_cpu_s) {
  reset_peak_rss();
  const uint64_t bytes_before = nn_counters().bytes_allocated.load();
  const int T = omp_get_max_threads();
  if (c.batch % T != 0)
    throw InputError("--parallel batch: case " + c.name + " has batch " + std::to_string(c.batch) +
                     ", not a multiple of the " + std::to_string(T) + " threads");
  const int64_t mb = c.batch / T;
  auto m = build_model(c.model);
  m->graph.instantiate(backend, 126);
  auto opt = make_optimizer(nlohmann::json{{"name", "adam"}, {"lr", 1e-4}}, m->graph.params());
  std::vector<Param*> params = m->graph.params();
  train::Replicas reps(T, backend.name(), c.model, 126, [] { return std::make_unique<BenchLoss>(); }, opts.precision,
                       opts.conv_algorithm);
  reps.copy_params_from(params);
  const Dims out_dims = m->output_dims(mb, c.size, c.size);
  for (int j = 0; j < T; ++j) {
    train::Batch& b = reps.batch(j);
    b.images = random_input({mb, m->in_channels, c.size, c.size}, 1 + 2 * static_cast<uint64_t>(j), false);
    b.targets = random_input(out_dims, 2 + 2 * static_cast<uint64_t>(j), true);
    for (int64_t i = 0; i < mb; ++i) b.sample_ids.push_back(static_cast<uint64_t>(j * mb + i));
  }
  std::vector<double> times;
  double loss_first = 0, loss_last = 0, cpu_timed = 0;
  for (int s = 0; s < opts.warmup + opts.steps; ++s) {
    pace_before(c.name, s);
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    opt->zero_grad();
    const std::vector<double> losses = reps.run(T, 126, 0, 1.0 / T);
    for (int j = 0; j < T; ++j)
      for (std::size_t i = 0; i < params.size(); ++i) {
        backend.accumulate(params[i]->grad, reps.params(j)[i]->grad);
        reps.params(j)[i]->grad.zero_();
      }
    (void)opt->step();
    m->graph.mark_params_changed();
    reps.copy_params_from(params);
    const double dt = seconds_since(t0);
    pace_after(s, dt);
    double l = 0;
    for (double v : losses) l += v / T;
    if (s == 0) loss_first = l;
    loss_last = l;
    if (s >= opts.warmup) times.push_back(dt), cpu_timed += cpu_seconds() - c0;
  }
  CaseResult r = summarize(c, *m, times, cpu_timed, loss_first, loss_last, peak, peak_per_cpu_s);
  r.arithmetic = reps.precision_summary();
  r.allocated_mb = static_cast<double>(nn_counters().bytes_allocated.load() - bytes_before) / (1 << 20);
  return r;
}

CaseResult run_case(const BenchCase& c, Backend& backend, double peak, double peak_per_cpu_s) {
  if (opts.parallel == "batch") return run_case_batch_parallel(c, backend, peak, peak_per_cpu_s);
  reset_peak_rss();
  const uint64_t bytes_before = nn_counters().bytes_allocated.load();
  auto m = build_model(c.model);
  const Dims out_dims = m->output_dims(c.batch, c.size, c.size);
  m->graph.instantiate(backend, 126);
  auto loss = make_loss({{"name", "bce"}});
  auto opt = make_optimizer(nlohmann::json{{"name", "adam"}, {"lr", 1e-4}}, m->graph.params());
  const Tensor x = random_input({c.batch, m->in_channels, c.size, c.size}, 1, false);
  const Tensor target = random_input(out_dims, 2, true);
  std::vector<uint64_t> ids(static_cast<std::size_t>(c.batch));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  StepContext ctx;
  ctx.training = true;
  ctx.seed = 126;
  ctx.sample_ids = ids;
  Tensor dlogits;
  std::vector<double> times;
  double loss_first = 0, loss_last = 0, cpu_timed = 0;
  for (int s = 0; s < opts.warmup + opts.steps; ++s) {
    pace_before(c.name, s);
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    opt->zero_grad();
    const Tensor& y = m->graph.forward(ctx, x);
    if (!dlogits.defined()) dlogits = Tensor::empty(y.dims(), DType::f32, y.format(), y.device());
    const LossOutput lo = loss->forward_backward(y, target, dlogits);
    m->graph.backward(ctx, dlogits);
    (void)opt->step();
    m->graph.mark_params_changed();
    const double dt = seconds_since(t0);
    pace_after(s, dt);
    if (s == 0) loss_first = lo.loss;
    loss_last = lo.loss;
    if (s >= opts.warmup) times.push_back(dt), cpu_timed += cpu_seconds() - c0;
  }
  CaseResult r = summarize(c, *m, times, cpu_timed, loss_first, loss_last, peak, peak_per_cpu_s);
  r.arithmetic = backend.precision_summary();
  r.allocated_mb = static_cast<double>(nn_counters().bytes_allocated.load() - bytes_before) / (1 << 20);
  return r;
}

int run() {
  if (opts.paced && !opts.json) throw InputError("--paced needs --json (its step lines are JSON for a driver)");
  if (opts.threads > 0) omp_set_num_threads(opts.threads);
  const int threads = omp_get_max_threads();
  std::vector<const BenchCase*> chosen;
  for (const auto& name : opts.cases) {
    const auto it = std::find_if(all_cases().begin(), all_cases().end(), [&](const auto& c) { return c.name == name; });
    if (it == all_cases().end()) {
      std::vector<std::string> names;
      for (const auto& c : all_cases()) names.push_back(c.name);
      throw InputError("--case: unknown case '" + name + "'; did you mean '" + nearest_name(name, names) +
                       "'? (cases: patch_cnn, unet, spiral_net)");
    }
    chosen.push_back(&*it);
  }
  if (chosen.empty())
    for (const auto& c : all_cases()) chosen.push_back(&c);

  auto backend = make_backend(opts.backend);  // the header's name; every case gets its own below
  backend->set_precision(opts.precision);
  backend->set_conv_algorithm(opts.conv_algorithm);
  double peak_per_cpu_s = 0;
  const double peak = sgemm_peak_gflops(2048, 3, peak_per_cpu_s);
  if (!opts.json)
    std::printf("FP32 sgemm peak (dnnl_sgemm 2048^3, %d threads): %.1f GFLOP/s (%.1f GFLOP per CPU-s); backend %s; "
                "median of %d steps; parallel %s; precision %s\n",
                threads, peak, peak_per_cpu_s, backend->name().c_str(), opts.steps, opts.parallel.c_str(),
                opts.precision.c_str());
  if (!opts.json)
    std::printf("%-11s %6s %9s %11s %10s %9s %8s %9s %11s\n", "case", "batch", "step ms", "samples/s", "GFLOP/smp",
                "GFLOP/s", "% peak", "% peak/cpu", "peak RSS MB");
  for (const BenchCase* c : chosen) {
    auto case_backend = make_backend(opts.backend);
    case_backend->set_precision(opts.precision);
    case_backend->set_conv_algorithm(opts.conv_algorithm);
    const CaseResult r = run_case(*c, *case_backend, peak, peak_per_cpu_s);
    if (opts.json) {
      const nlohmann::json j = {{"case", r.name},
                                {"samples_per_s", r.samples_per_s},
                                {"gflops", r.gflops},
                                {"pct_peak", r.pct_peak},
                                {"peak_rss_mb", r.peak_rss_mb},
                                {"allocated_mb", r.allocated_mb},
                                {"step_ms", r.step_ms},
                                {"step_ms_min", r.step_ms_min},
                                {"step_ms_max", r.step_ms_max},
                                {"batch", c->batch},
                                {"input", {c->size, c->size}},
                                {"gflop_per_sample_step", r.gflop_per_sample},
                                {"sgemm_peak_gflops", peak},
                                {"pct_peak_cpu", r.pct_peak_cpu},
                                {"cpu_s_per_step", r.cpu_s_per_step},
                                {"sgemm_gflop_per_cpu_s", peak_per_cpu_s},
                                {"threads", threads},
                                {"parallel", opts.parallel},
                                {"precision", opts.precision},
                                {"conv_algorithm", opts.conv_algorithm},
                                {"arithmetic", r.arithmetic},
                                {"backend", backend->name()},
                                {"steps", opts.steps},
                                {"params", r.params},
                                {"model", c->model},
                                {"loss_first", r.loss_first},
                                {"loss_last", r.loss_last}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%-11s %6lld %9.1f %11.2f %10.3f %9.1f %7.1f%% %9.1f%% %11.0f\n", r.name.c_str(),
                  static_cast<long long>(c->batch), r.step_ms, r.samples_per_s, r.gflop_per_sample, r.gflops,
                  r.pct_peak, r.pct_peak_cpu, r.peak_rss_mb);
    }
    std::fflush(stdout);
  }
  return cli::kOk;
}

crackseg::cli::CommandRegistration reg{{
    .name = "bench",
    .help = "training-step throughput (samples/s, GFLOP/s, % of sgemm peak, peak RSS) of the reference models",
    .setup =
        [](CLI::App& app) {
          app.add_option("--case", opts.cases, "patch_cnn | unet | spiral_net (repeatable; default: all)");
          app.add_flag("--json", opts.json, "one JSON object per case (case, samples_per_s, gflops, pct_peak, peak_rss_mb, ...)");
          app.add_option("--steps", opts.steps, "timed steps per case (median reported)")
              ->capture_default_str()
              ->check(CLI::Range(1, 100000));
          app.add_option("--warmup", opts.warmup, "untimed steps first (planning, primitive creation)")
              ->capture_default_str()
              ->check(CLI::Range(1, 1000));
          app.add_option("--threads", opts.threads,
                         "OpenMP threads (0 = OMP_NUM_THREADS / all cores); write --threads=T: Kokkos also "
                         "parses argv and rejects a separate value")
              ->capture_default_str()
              ->check(CLI::NonNegativeNumber);
          app.add_option("--backend", opts.backend, "layer backend (onednn; reference is slow)")->capture_default_str();
          app.add_option("--parallel", opts.parallel,
                         "intra = all threads inside each kernel; batch = one micro-batch per thread on model "
                         "replicas (train.parallel = batch; the batch must be a multiple of the threads)")
              ->capture_default_str()
              ->check(CLI::IsMember({"intra", "batch"}));
          app.add_option("--precision", opts.precision,
                         "fp32, or bf16 (train.precision: bf16 convolutions with fp32 accumulation, needs "
                         "AVX512-BF16 or AMX); %% of peak stays relative to the fp32 sgemm peak")
              ->capture_default_str()
              ->check(CLI::IsMember({"fp32", "bf16"}));
          app.add_option("--conv-algorithm", opts.conv_algorithm,
                         "direct, or winograd (train.conv_algorithm: Winograd F(4x4, 3x3) for the 3x3 stride-1 "
                         "fp32 convolutions); %% of peak still counts direct-convolution FLOPs")
              ->capture_default_str()
              ->check(CLI::IsMember({"direct", "winograd"}));
          app.add_flag("--paced", opts.paced,
                       "with --json: after the untimed steps print {\"paced\":\"ready\"}, then run each timed step "
                       "when a line arrives on stdin and print {\"paced\":\"step\",\"ms\":...} after it (for "
                       "bench/peer/peer_bench.py paired, which alternates crackseg and PyTorch step by step)");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
