// `crackseg bench-layers`: times training steps of one model on one backend, layer by layer.
// A step = forward, the BCE-with-logits gradient (computed inline against a fixed stripe
// target), backward, and a plain SGD write to every parameter (so weight-layout caches are
// refreshed as after a real optimizer step). Prints the median step, samples/s, effective
// GFLOP/s (2 x multiply-adds x 3 for training) and its % of a measured sgemm peak, peak RSS
// and the slowest layers. Not a test; run it on a quiet machine.
//
//   crackseg bench-layers                                   U-Net base 16, 400x400, batch 4
//   crackseg bench-layers --model patch_cnn --size 27 --batch 128
//   crackseg bench-layers --backend reference --size 32 --no-fusion --json
#include <dnnl.hpp>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "launch/command.hpp"
#include "src/core/error.hpp"
#include "src/graph/backend.hpp"
#include "src/models/model.hpp"

namespace {

struct Opts {
  std::string model = "unet";
  std::vector<std::string> keys;  // key=value for the model section
  std::string backend = "onednn";
  std::string precision = "fp32";
  int64_t size = 400, batch = 4;
  int steps = 5, warmup = 2, top = 12;
  bool no_fusion = false, json = false, no_peak = false;
} opts;

using Clock = std::chrono::steady_clock;

// User + system CPU seconds of this process: on a shared machine wall time inflates with
// the load, CPU time much less, so both are reported.
double cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

// FP32 matrix-multiply peak: the best of a few 2048^3 oneDNN sgemm calls on all threads.
// `per_cpu_s` receives the best GFLOP per CPU-second (load-robust with one thread).
double sgemm_peak_gflops(double& per_cpu_s) {
  const int64_t n = 2048;
  per_cpu_s = 0;
  std::vector<float> a(static_cast<std::size_t>(n * n), 0.5f), b(a), c(a.size(), 0.0f);
  double best = 0;
  for (int rep = 0; rep < 4; ++rep) {
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    if (dnnl::sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n) != dnnl::status::success)
      throw crackseg::Error("bench-layers: dnnl_sgemm failed");
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
    per_cpu_s = std::max(per_cpu_s, 2.0 * n * n * n / std::max(1e-9, cpu_seconds() - c0) / 1e9);
  }
  return best;
}

double peak_rss_mb() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_maxrss) / 1024.0;
}

int run() {
  using namespace crackseg;
  nlohmann::json section = {{"name", opts.model}};
  for (const auto& kv : opts.keys) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos) throw InputError("bench-layers: expected key=value, got '" + kv + "'");
    auto v = nlohmann::json::parse(kv.substr(eq + 1), nullptr, false);
    section[kv.substr(0, eq)] = v.is_discarded() ? nlohmann::json(kv.substr(eq + 1)) : v;
  }
  auto model = build_model(section);
  model->check_input_size(opts.size, opts.size);
  auto backend = make_backend(opts.backend);
  backend->set_precision(opts.precision);
  model->graph.set_fusion(!opts.no_fusion);
  model->graph.instantiate(*backend, 126);
  const Dims in{opts.batch, model->in_channels, opts.size, opts.size};
  Tensor x = Tensor::empty(in, DType::f32, backend->activation_format());
  auto xs = x.span<float>();
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f;
  const Dims od = model->output_dims(opts.batch, opts.size, opts.size);
  Tensor dy = Tensor::empty(od, DType::f32, od.size() == 4 ? backend->activation_format() : Format::plain);
  auto params = model->graph.params();
  std::vector<uint64_t> ids(static_cast<std::size_t>(opts.batch));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i;
  StepContext ctx;
  ctx.seed = 126;
  ctx.sample_ids = ids;

  std::vector<double> step_s;
  double cpu0 = 0;
  for (int s = 0; s < opts.warmup + opts.steps; ++s) {
    if (s == opts.warmup) model->graph.set_profiling(true), cpu0 = cpu_seconds();
    const auto t0 = Clock::now();
    model->graph.zero_grad();
    const Tensor& y = model->graph.forward(ctx, x);
    const auto ys = y.span<float>();
    auto ds = dy.span<float>();
    const float inv = 1.0f / static_cast<float>(ys.size());
#pragma omp parallel for simd schedule(static)
    for (std::size_t i = 0; i < ys.size(); ++i) {  // d BCE-with-logits / d logit, target: stripes
      const float t = (i / 7) % 5 == 0 ? 1.0f : 0.0f;
      ds[i] = (1.0f / (1.0f + std::exp(-ys[i])) - t) * inv;
    }
    model->graph.backward(ctx, dy);
    for (Param* p : params) {
      auto v = p->value.span<float>();
      auto g = p->grad.span<float>();
      const std::size_t n = v.size();
#pragma omp parallel for simd schedule(static) if (n > 65536)
      for (std::size_t i = 0; i < n; ++i) v[i] -= 1e-3f * g[i];
    }
    model->graph.mark_params_changed();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s >= opts.warmup) step_s.push_back(secs);
  }
  const double cpu_per_step = (cpu_seconds() - cpu0) / static_cast<double>(opts.steps);
  std::vector<double> sorted = step_s;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const double macs = model->graph.forward_macs_per_sample({model->in_channels, opts.size, opts.size});
  const double gflop_per_sample = 2.0 * macs * 3.0 / 1e9;
  const double sps = static_cast<double>(opts.batch) / median;
  const double gflops = gflop_per_sample * sps;
  double peak_cpu = 0;
  const double peak = opts.no_peak ? 0.0 : sgemm_peak_gflops(peak_cpu);
  // Load-robust efficiency: training GFLOP per CPU-second over sgemm GFLOP per CPU-second.
  const double gflop_per_cpu_s = gflop_per_sample * static_cast<double>(opts.batch) / cpu_per_step;
  const double pct_peak_cpu = peak_cpu > 0 ? 100.0 * gflop_per_cpu_s / peak_cpu : 0.0;
  auto prof = model->graph.profile();
  std::sort(prof.begin(), prof.end(),
            [](const auto& a, const auto& b) { return a.forward_s + a.backward_s > b.forward_s + b.backward_s; });
  const double nsteps = static_cast<double>(step_s.size());
  if (opts.json) {
    nlohmann::json j = {{"case", opts.model},           {"backend", opts.backend},
                        {"precision", backend->precision_summary()},
                        {"size", opts.size},            {"batch", opts.batch},
                        {"fusion", !opts.no_fusion},    {"step_s_median", median},
                        {"step_s", step_s},             {"samples_per_s", sps},
                        {"gflop_per_sample", gflop_per_sample}, {"gflops", gflops},
                        {"sgemm_peak_gflops", peak},    {"pct_peak", peak > 0 ? 100.0 * gflops / peak : 0.0},
                        {"peak_rss_mb", peak_rss_mb()}, {"cpu_s_per_step", cpu_per_step},
                        {"gflop_per_cpu_s", gflop_per_cpu_s}, {"sgemm_gflop_per_cpu_s", peak_cpu},
                        {"pct_peak_cpu_time", pct_peak_cpu}};
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& t : prof)
      layers.push_back({{"name", t.name}, {"kind", t.kind}, {"forward_ms", 1e3 * t.forward_s / nsteps},
                        {"backward_ms", 1e3 * t.backward_s / nsteps}});
    j["layers"] = layers;
    std::printf("%s\n", j.dump().c_str());
    return cli::kOk;
  }
  std::printf("%s (%s) on %s, input %lldx%lld, batch %lld, fusion %s, %d steps after %d warm-up\n",
              opts.model.c_str(), model->summary().c_str(), opts.backend.c_str(), static_cast<long long>(opts.size),
              static_cast<long long>(opts.size), static_cast<long long>(opts.batch), opts.no_fusion ? "off" : "on",
              opts.steps, opts.warmup);
  std::printf("arithmetic: %s\n", backend->precision_summary().c_str());
  std::printf("step median %.3f s (min %.3f, max %.3f); %.2f samples/s; %.2f GFLOP per sample per step\n", median,
              sorted.front(), sorted.back(), sps, gflop_per_sample);
  std::printf("CPU time %.3f s per step (all threads): %.1f GFLOP per CPU-second", cpu_per_step, gflop_per_cpu_s);
  if (peak_cpu > 0) std::printf(" = %.1f%% of sgemm's %.1f", pct_peak_cpu, peak_cpu);
  std::printf("\n");
  std::printf("effective %.1f GFLOP/s", gflops);
  if (peak > 0) std::printf(" = %.1f%% of the sgemm peak %.1f GFLOP/s", 100.0 * gflops / peak, peak);
  std::printf("; peak RSS %.0f MB\n\n%-28s %-22s %10s %10s %7s\n", peak_rss_mb(), "layer", "kind", "fwd ms", "bwd ms",
              "share");
  double total = 0;
  for (const auto& t : prof) total += t.forward_s + t.backward_s;
  for (std::size_t i = 0; i < prof.size() && static_cast<int>(i) < opts.top; ++i) {
    const auto& t = prof[i];
    std::printf("%-28s %-22s %10.2f %10.2f %6.1f%%\n", t.name.c_str(), t.kind.c_str(), 1e3 * t.forward_s / nsteps,
                1e3 * t.backward_s / nsteps, 100.0 * (t.forward_s + t.backward_s) / total);
  }
  std::printf("layers total %.3f s per step (the rest of the step: loss gradient, SGD write, input copy)\n",
              total / nsteps);
  return cli::kOk;
}

crackseg::cli::CommandRegistration reg{{
    .name = "bench-layers",
    .help = "time training steps of a model layer by layer (forward, backward, SGD write)",
    .setup =
        [](CLI::App& app) {
          app.add_option("--model", opts.model, "model family")->capture_default_str();
          app.add_option("keys", opts.keys, "model keys, key=value (base=32 depth=5 ...)");
          app.add_option("--backend", opts.backend, "onednn | reference")->capture_default_str();
          app.add_option("--precision", opts.precision, "fp32 | bf16 (train.precision)")->capture_default_str();
          app.add_option("--size", opts.size, "square input size")->capture_default_str();
          app.add_option("--batch", opts.batch, "batch (micro-batch) size")->capture_default_str();
          app.add_option("--steps", opts.steps, "timed steps")->capture_default_str();
          app.add_option("--warmup", opts.warmup, "untimed steps first")->capture_default_str();
          app.add_option("--top", opts.top, "layers to list")->capture_default_str();
          app.add_flag("--no-fusion", opts.no_fusion, "turn conv+activation fusion off");
          app.add_flag("--no-peak", opts.no_peak, "skip the sgemm peak measurement");
          app.add_flag("--json", opts.json, "one JSON object");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
