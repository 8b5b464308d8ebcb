#include "src/train/trainer.hpp"

#include <omp.h>

#include <opencv2/core/utility.hpp>

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <optional>

#include "io/dataset/dataset.hpp"
#include "src/checkpoint/checkpoint.hpp"
#include "src/core/error.hpp"
#include "src/dist/communicator.hpp"
#include "src/dist/gradient_sync.hpp"
#include "src/graph/backend.hpp"
#include "src/losses/loss.hpp"
#include "src/models/model.hpp"
#include "src/optim/monitor.hpp"
#include "src/optim/optimizer.hpp"
#include "src/optim/schedule.hpp"
#include "src/train/batch_stats_sync.hpp"
#include "src/train/batches.hpp"
#include "src/train/epoch_predictions.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/provenance.hpp"
#include "src/train/replicas.hpp"
#include "src/train/run_checks.hpp"
#include "src/train/run_files.hpp"
#include "src/train/sections.hpp"
#include "src/train/signals.hpp"
#include "src/train/data_stamp.hpp"
#include "src/train/thread_cap.hpp"
#include "src/train/train_device.hpp"
#include "src/train/train_state.hpp"

namespace crackseg::train {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Validations still to run from epoch `epoch` (0-based, in progress) on.
int64_t validations_left(int64_t epoch, int64_t epochs, int64_t val_every, bool has_val) {
  int64_t n = 0;
  for (int64_t e = epoch; has_val && e < epochs; ++e) n += (e + 1) % val_every == 0 || e + 1 == epochs;
  return n;
}

// Training time left plus the validations left at the mean time of those done so far
// ("+ validation" while none has run yet).
std::string eta_text(double train_s, int64_t vals_left, double val_s, int64_t val_runs) {
  if (vals_left == 0) return format_duration(train_s);
  if (val_runs == 0) return format_duration(train_s) + " + validation";
  return format_duration(train_s + static_cast<double>(vals_left) * val_s / static_cast<double>(val_runs));
}

std::string backend_name(const nlohmann::json& train) {
  const std::string b = train.at("backend").get<std::string>();
  if (b != "auto") return b;
  return train.at("device").get<std::string>() == "cuda" ? "cuda" : "onednn";
}

}  // namespace

TrainOutcome run_training(const config::ResolvedConfig& rc, dist::Communicator& comm, const TrainOptions& opt) {
  const auto t_start = Clock::now();
  const nlohmann::json& cfg = rc.values;
  const auto& tr = cfg.at("train");
  const int R = comm.size(), rank = comm.rank();
  const bool lead = rank == 0;
  const uint64_t seed = tr.at("seed").get<uint64_t>();
  const int64_t B = tr.at("batch").get<int64_t>(), m = tr.at("micro_batch").get<int64_t>();
  const int64_t a = config::accumulation_steps(B, m, R);
  const int64_t M = B / m;  // micro-batches per global step, all ranks
  const int64_t epochs = tr.at("epochs").get<int64_t>(), max_steps = tr.at("steps").get<int64_t>();
  const std::filesystem::path out = tr.at("out").get<std::string>();
  if (const int64_t threads = tr.at("threads").get<int64_t>(); threads > 0) omp_set_num_threads(capped_threads(threads, lead));
  if (lead) std::filesystem::create_directories(out);
  install_stop_signal_handlers();
  // OpenCV (augmentation on the prefetch thread) would otherwise start a machine-sized
  // thread pool in every rank, on top of oneDNN's OpenMP threads.
  cv::setNumThreads(1);

  // ---- model, data, loss, optimizer ----
  auto backend = make_backend(backend_name(tr));
  // train.precision (absent in configs resolved before the key existed: fp32). Host backends
  // take it here; the cuda device kit reads it (TF32) in TrainDevice below.
  const std::string precision = tr.contains("precision") ? tr.at("precision").get<std::string>() : "fp32";
  if (backend->device() == Device::cpu) backend->set_precision(precision);
  // train.conv_algorithm (absent in older configs: direct); a backend without it refuses.
  const std::string conv_algorithm = tr.contains("conv_algorithm") ? tr.at("conv_algorithm").get<std::string>() : "direct";
  backend->set_conv_algorithm(conv_algorithm);
  // Loss, optimizer and gradient sync for the device the backend runs on (before the layers
  // exist: a device kit may set the device's numerics from train.determinism).
  TrainDevice device(*backend, cfg);
  // Loss vs model, input size vs data.crop, data.path, evaluation splits, eval.threshold: one
  // clear error before the model or the data is touched (after the device: a CUDA run on a
  // build without CUDA says so first).
  check_run_config(cfg);
  std::unique_ptr<Model> model = build_model(cfg.at("model"));
  const bool patches = model->output == Model::Output::patch;
  io::DatasetFile dataset(cfg.at("data").at("path").get<std::string>());
  const DataStamp data_opened = data_stamp(dataset.path());  // evaluations reopen the file
  // data.test_path: the final test evaluation reads this file's test_split instead, opened
  // here so that a missing file or split fails before training, not after it.
  const std::string test_path = cfg.at("data").at("test_path").get<std::string>();
  std::optional<io::DatasetFile> test_file;
  if (!test_path.empty()) {
    test_file.emplace(test_path);
    const std::string ts = cfg.at("data").at("test_split").get<std::string>();
    if (ts.empty() || !test_file->has_split(ts))
      throw InputError("data.test_path " + test_path + " has no split '" + ts + "' (data.test_split)");
  }
  const int64_t crop = cfg.at("data").at("crop").get<int64_t>();
  if (!patches) {
    const int64_t h = crop > 0 ? crop : dataset.height(), w = crop > 0 ? crop : dataset.width();
    model->check_input_size(h, w);
  }
  model->graph.instantiate(*backend, seed);
  // Running statistics follow the global batch: every micro-batch's batchnorm statistics are
  // applied to the (master) model in global micro-batch order at the end of each step.
  model->graph.defer_running_stats(true);
  BatchStatsSync bn_sync(comm, model->graph);
  std::vector<Param*> params = model->graph.params();
  auto buffers = model->graph.buffers();

  BatchLayout layout{rank, R, seed, static_cast<int>(B), static_cast<int>(m)};
  auto batches = patches ? make_patch_batches(cfg, layout) : make_segmentation_batches(cfg, layout);
  const double crack_fraction = dataset.crack_fraction(cfg.at("data").at("train_split").get<std::string>());
  const LossContext loss_ctx{std::isfinite(crack_fraction) ? crack_fraction : -1.0};
  auto loss = device.make_loss(cfg.at("loss"), loss_ctx);
  auto optimizer = device.make_optimizer(parse_optim_config(optim_section(cfg.at("optim"))), params);
  auto schedule = make_schedule(schedule_section(cfg.at("schedule")), cfg.at("optim").at("lr").get<double>(),
                                ScheduleContext{epochs, static_cast<int64_t>(batches->steps_per_epoch())});
  EarlyStopping early(early_stop_section(cfg.at("early_stop")));

  dist::GradientSyncOptions so;
  so.mode = dist::parse_determinism(tr.at("determinism").get<std::string>());
  so.bucket_bytes = static_cast<std::size_t>(cfg.at("dist").at("bucket_mb").get<double>() * (1 << 20));
  auto sync = device.make_sync(comm, params, so, a);
  // Threads of a rank (train.parallel): inside each kernel, or one micro-batch per thread on
  // model replicas (src/train/replicas.hpp), which makes bitwise mode independent of threads.
  const int threads = omp_get_max_threads();
  const std::string parallel_key = tr.at("parallel").get<std::string>();
  const bool batch_parallel = parallel_key == "batch" || (parallel_key == "auto" && so.mode == dist::Determinism::bitwise &&
                                                          backend->device() == Device::cpu);
  std::unique_ptr<Replicas> replicas;
  if (batch_parallel) {
    if (backend->device() != Device::cpu)
      throw InputError("train.parallel = \"batch\" runs model replicas on host backends; use \"intra\" with " +
                       backend->name());
    replicas = std::make_unique<Replicas>(static_cast<int>(std::min<int64_t>(threads, a)), backend->name(),
                                          cfg.at("model"), seed, [&] { return device.make_loss(cfg.at("loss"), loss_ctx); },
                                          precision, conv_algorithm);
    if (a < threads && lead && !opt.quiet)
      std::printf("note: train.parallel = \"batch\" runs one micro-batch per thread; %lld micro-batch(es) per rank "
                  "and step keep only %lld of the %d threads busy (a smaller train.micro_batch uses them all)\n",
                  static_cast<long long>(a), static_cast<long long>(a), threads);
  } else if (so.mode == dist::Determinism::bitwise && threads > 1 && lead && !opt.quiet) {
    std::printf("note: train.parallel = \"intra\" in bitwise mode: the bits depend on the %d threads per rank\n",
                threads);
  }
  // fast mode: the last micro-batch's backward hands each gradient to the sync as it completes.
  bool last_micro = false;
  if (so.mode == dist::Determinism::fast && !replicas)
    model->graph.set_grad_ready_hook([&](std::size_t i) {
      if (last_micro) sync->mark_ready(i);
    });

  // ---- resume or start ----
  TrainState state;
  const auto ckpt_path = out / "checkpoint.h5";
  if (opt.resume && std::filesystem::exists(ckpt_path)) {
    state = device.load(ckpt_path, rc, *model, *optimizer, *schedule, early);
    if (lead)
      std::printf("resuming from %s: epoch %lld, step %lld (global step %lld)\n", ckpt_path.c_str(),
                  static_cast<long long>(state.epoch + 1), static_cast<long long>(state.step_in_epoch),
                  static_cast<long long>(state.global_step));
  } else {
    // Same seed gives the same init on every rank; broadcasting makes that a guarantee.
    sync->broadcast_values(params, 0);
    model->graph.mark_params_changed();
  }
  if (replicas) replicas->copy_params_from(params);
  MetricsCsv csv(out / "metrics.csv");
  if (lead) csv.load_existing(state.epoch + 1);  // rows of the epochs done (1-based)

  // Patch CNN epochs may differ in length (each epoch draws its own background pixels), so
  // this is refreshed after every start_epoch.
  uint64_t steps_per_epoch = batches->steps_per_epoch();
  if (lead && !opt.quiet)
    std::printf("training %s %s (%lld parameters) on %d rank(s) x %d thread(s): batch %lld = %d x %lld x %lld, "
                "%llu steps/epoch, %s, determinism %s, parallel %s\n",
                model->name.c_str(), model->summary().c_str(), static_cast<long long>(model->graph.num_params()), R, threads,
                static_cast<long long>(B), R, static_cast<long long>(m), static_cast<long long>(a),
                static_cast<unsigned long long>(steps_per_epoch), backend->name().c_str(),
                tr.at("determinism").get<std::string>().c_str(), replicas ? "batch" : "intra");

  const int64_t log_every = tr.at("log_every").get<int64_t>();
  const int64_t ckpt_every = tr.at("checkpoint_every").get<int64_t>();
  const int64_t val_every = tr.at("val_every").get<int64_t>();
  const bool has_val = !cfg.at("data").at("val_split").get<std::string>().empty() &&
                       dataset.has_split(cfg.at("data").at("val_split").get<std::string>());
  TrainStatus status = TrainStatus::completed;
  Batch batch;
  Tensor dlogits;
  nlohmann::json last_val;
  double compute_s = 0, sync_s = 0;
  double val_s = 0;  // validation time so far, for the ETA
  int64_t val_runs = 0;
  int64_t samples_done = 0;
  const auto t_loop = Clock::now();

  // Saves the model and the position training continues from (next_epoch, next_step).
  auto save = [&](const std::filesystem::path& path, int64_t next_epoch, int64_t next_step) {
    TrainState at = state;
    at.epoch = next_epoch;
    at.step_in_epoch = next_step;
    if (next_step == 0) at.epoch_loss_sum = 0, at.epoch_loss_steps = 0;  // an epoch boundary
    if (lead) device.save(path, at, rc, *model, *optimizer, *schedule, early);
    comm.barrier();
  };

  for (; state.epoch < epochs; ++state.epoch, state.step_in_epoch = 0) {
    if (max_steps > 0 && state.global_step >= max_steps) break;
    batches->start_epoch(static_cast<uint64_t>(state.epoch), static_cast<uint64_t>(state.step_in_epoch));
    steps_per_epoch = batches->steps_per_epoch();
    // A resume mid-epoch carries on the epoch's loss average from the checkpoint.
    double epoch_loss = state.step_in_epoch > 0 ? state.epoch_loss_sum : 0;
    int64_t epoch_steps = state.step_in_epoch > 0 ? state.epoch_loss_steps : 0;
    const auto t_epoch = Clock::now();
    while (state.step_in_epoch < static_cast<int64_t>(steps_per_epoch)) {
      if (max_steps > 0 && state.global_step >= max_steps) break;
      const auto t_step = Clock::now();
      model->graph.zero_grad();
      optimizer->set_lr(schedule->lr_at_step(state.global_step, state.epoch));
      double step_loss = 0;
      const auto ran_out = [&] {
        return Error("training data ran out in epoch " + std::to_string(state.epoch + 1) + " step " +
                     std::to_string(state.step_in_epoch + 1));
      };
      // Micro-batch parallel: rounds of up to T micro-batches, one per replica; gradients and
      // batch statistics are filed per micro-batch under its global index k * R + rank.
      for (int64_t k0 = 0; replicas && k0 < a; k0 += replicas->size()) {
        const int n = static_cast<int>(std::min<int64_t>(replicas->size(), a - k0));
        for (int j = 0; j < n; ++j)
          if (!batches->next(replicas->batch(j))) throw ran_out();
        const std::vector<double> losses =
            replicas->run(n, seed, static_cast<uint64_t>(state.epoch), 1.0 / static_cast<double>(M));
        for (int j = 0; j < n; ++j) {
          const int64_t g = (k0 + j) * R + rank;
          step_loss += losses[static_cast<std::size_t>(j)];
          bn_sync.stash(g, replicas->graph(j));
          if (so.mode == dist::Determinism::bitwise) {
            sync->stash_replica(g, replicas->params(j));
          } else {  // fast: the step's gradient sum, replica by replica in order
            auto& rp = replicas->params(j);
            for (std::size_t i = 0; i < params.size(); ++i) {
              backend->accumulate(params[i]->grad, rp[i]->grad);
              rp[i]->grad.zero_();
            }
          }
        }
      }
      for (int64_t k = 0; !replicas && k < a; ++k) {
        if (!batches->next(batch)) throw ran_out();
        StepContext ctx{true, seed, static_cast<uint64_t>(state.epoch), batch.sample_ids};
        const Tensor& y = model->graph.forward(ctx, batch.images);
        if (!dlogits.defined() || dlogits.dims() != y.dims() || dlogits.format() != y.format())
          dlogits = Tensor::empty(y.dims(), DType::f32, y.format(), y.device());
        // Each micro-batch gradient is scaled by 1/M so the sum over the step's M micro-batches
        // (all ranks) is their mean.
        const LossOutput lo = loss->forward_backward(y, batch.targets, dlogits, 1.0 / static_cast<double>(M));
        step_loss += lo.loss;
        last_micro = k == a - 1;
        model->graph.backward(ctx, dlogits);
        bn_sync.stash(k * R + rank, model->graph);
        if (so.mode == dist::Determinism::bitwise) sync->stash_micro_batch(k * R + rank);
      }
      const auto t_sync = Clock::now();
      sync->finish();
      bn_sync.finish();
      sync_s += since(t_sync);
      const double loss_sum = comm.allreduce_value(step_loss, dist::ReduceOp::sum) / static_cast<double>(M);
      // Gradients are identical on every rank after the sync, so every rank decides alike.
      const StepInfo si = std::isfinite(loss_sum) ? optimizer->step() : StepInfo{NAN, false};
      if (!si.applied) {
        throw DivergedError("training diverged (NaN/Inf loss or gradient) at epoch " + std::to_string(state.epoch + 1) +
                            " step " + std::to_string(state.step_in_epoch + 1) + " (global step " +
                            std::to_string(state.global_step + 1) + ", counted from 1 as in the log); last good checkpoint: " +
                            (std::filesystem::exists(ckpt_path) ? ckpt_path.string() : std::string("none")));
      }
      model->graph.mark_params_changed();
      if (replicas) replicas->copy_params_from(params);
      compute_s += since(t_step);
      ++state.step_in_epoch;
      ++state.global_step;
      epoch_loss += loss_sum;
      ++epoch_steps;
      state.epoch_loss_sum = epoch_loss, state.epoch_loss_steps = epoch_steps;  // for a checkpoint mid-epoch
      samples_done += B;
      if (lead && !opt.quiet && (state.global_step % log_every == 0)) {
        const double el = since(t_loop), rate = samples_done / std::max(1e-9, el - val_s);
        // train.steps ends the run before the last epoch: count only the steps (and the
        // validations of the epochs) that will run.
        const int64_t spe = static_cast<int64_t>(steps_per_epoch);
        const int64_t last_epoch = max_steps > 0 ? std::min<int64_t>(epochs, (max_steps + spe - 1) / spe) : epochs;
        int64_t left = (last_epoch - state.epoch) * spe - state.step_in_epoch;
        if (max_steps > 0) left = std::min<int64_t>(left, max_steps - state.global_step);
        const double left_steps = static_cast<double>(std::max<int64_t>(left, 0));
        std::printf("epoch %lld/%lld step %lld/%llu loss %.4f lr %.2e %.1f samples/s ETA %s\n",
                    static_cast<long long>(state.epoch + 1), static_cast<long long>(epochs),
                    static_cast<long long>(state.step_in_epoch), static_cast<unsigned long long>(steps_per_epoch),
                    loss_sum, optimizer->lr(), rate,
                    eta_text(left_steps * B / rate, validations_left(state.epoch, last_epoch, val_every, has_val), val_s,
                             val_runs).c_str());
        std::fflush(stdout);
      }
      if (state.global_step == opt.raise_signal_at_step && rank == opt.raise_signal_rank) std::raise(SIGUSR1);
      if (ckpt_every > 0 && state.global_step % ckpt_every == 0) save(ckpt_path, state.epoch, state.step_in_epoch);
      if (agree_stop(comm)) {
        save(ckpt_path, state.epoch, state.step_in_epoch);
        status = TrainStatus::preempted;
        break;
      }
    }
    if (status == TrainStatus::preempted) break;
    const bool stopped_by_steps = max_steps > 0 && state.global_step >= max_steps &&
                                  state.step_in_epoch < static_cast<int64_t>(steps_per_epoch);
    // ---- end of epoch: validation, schedule, early stop, checkpoints, curves ----
    std::map<std::string, double> row{{"epoch", static_cast<double>(state.epoch + 1)},  // 1-based
                                      {"step", static_cast<double>(state.global_step)},
                                      {"lr", optimizer->lr()},
                                      {"train_loss", epoch_steps ? epoch_loss / epoch_steps : NAN},
                                      {"seconds", since(t_epoch)}};
    const std::string val_split = cfg.at("data").at("val_split").get<std::string>();
    // train.steps reached at the end of this epoch (exactly on its boundary, or mid-epoch):
    // the run ends here, so it validates here whatever val_every says (a run that stopped on
    // an epoch boundary used to end without a final validation: result.json final.val null).
    bool stop = stopped_by_steps || (max_steps > 0 && state.global_step >= max_steps);
    if (!val_split.empty() && dataset.has_split(val_split) &&
        ((state.epoch + 1) % val_every == 0 || state.epoch + 1 == epochs || stop)) {
      const auto t_val = Clock::now();
      check_same_data(dataset.path(), data_opened, "validation");
      EvalResult ev = device.evaluate(cfg, *model, comm, val_split, cfg.at("data").at("max_val").get<int64_t>());
      val_s += since(t_val);
      ++val_runs;
      last_val = ev.summary;
      for (const auto& [k, v] : ev.flat_metrics()) row["val_" + k] = v;
      std::map<std::string, double> vm;
      for (const auto& [k, v] : ev.flat_metrics()) vm["val_" + k] = v;
      schedule->end_epoch(state.epoch, vm);
      const std::string best_key = tr.at("best_metric").get<std::string>();
      const double best_v = ev.lookup(best_key.rfind("val_", 0) == 0 ? best_key : "val_" + best_key);
      if (state.improves_best(best_v, tr.at("best_mode").get<std::string>() == "max")) {
        state.best_value = best_v;
        state.best_epoch = state.epoch;
        state.best_metrics = ev.summary;
        save(out / "best.h5", state.epoch + 1, 0);
      }
      if (early.update(state.epoch, vm).stop) {
        status = TrainStatus::early_stopped;
        stop = true;
      }
    }
    if (lead) csv.append(row);
    if (lead) write_epoch_predictions(with_val_threshold(cfg, last_val), *model, state.epoch + 1, out);  // train.predict_images
    if (lead && !opt.quiet) {
      std::printf("epoch %lld done: train_loss %.4f", static_cast<long long>(state.epoch + 1), row["train_loss"]);
      for (const char* k : {"val_loss", "val_f1", "val_iou", "val_map"})
        if (row.count(k)) std::printf(" %s %.4f", k, row[k]);
      std::printf(" (%.1f s)\n", row["seconds"]);
      std::fflush(stdout);
    }
    if (stopped_by_steps) {
      save(ckpt_path, state.epoch, state.step_in_epoch);  // train.steps reached mid-epoch
      break;
    }
    save(ckpt_path, state.epoch + 1, 0);  // a resume starts the next epoch
    if (stop) {
      ++state.epoch;
      break;
    }
  }

  // A resume from the checkpoint a finished run wrote after its last validation (a job killed
  // during the final test evaluation, e.g. the patch CNN's minutes of per-patch scoring)
  // trains nothing and never reaches that validation: run it again on the same weights, so
  // result.json's final.val and the val-tuned test threshold are the uninterrupted run's.
  // (metrics.csv and the best checkpoint already have it.)
  if (last_val.is_null() && has_val && status != TrainStatus::preempted) {
    const auto t_val = Clock::now();
    check_same_data(dataset.path(), data_opened, "validation");
    last_val = device.evaluate(cfg, *model, comm, cfg.at("data").at("val_split").get<std::string>(),
                               cfg.at("data").at("max_val").get<int64_t>())
                   .summary;
    val_s += since(t_val);
  }

  TrainOutcome outcome;
  outcome.status = status;
  if (backend->device() == Device::cpu) {
    uint64_t h = 0xcbf29ce484222325ull;
    const auto mix = [&h](const Tensor& t) {
      const auto* b = static_cast<const unsigned char*>(t.raw());
      for (std::size_t i = 0; i < t.nbytes(); ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    };
    for (const Param* p : params) mix(p->value);
    for (const auto& [name, t] : model->graph.buffers()) mix(*t);
    outcome.state_digest = h;
  }
  if (status == TrainStatus::preempted) return outcome;

  // ---- final evaluation on the test split and result.json ----
  nlohmann::json result;
  result["status"] = status == TrainStatus::early_stopped ? "early_stopped" : "completed";
  result["config"] = cfg;
  result["config_hash"] = rc.hash;
  result["versions"] = versions_json();
  result["host"] = host_json();
  result["launch"] = launch_json(R, omp_get_max_threads());
  result["world_size"] = R;
  result["threads_per_rank"] = threads;
  // What determines the bits of a bitwise run (with determinism, seed and versions above).
  result["arithmetic"] = {{"parallel", replicas ? "batch" : "intra"},
                          {"replicas_per_rank", replicas ? replicas->size() : 0},
                          {"kernel_threads", replicas ? 1 : threads},
                          {"micro_batch", m},
                          {"micro_batches_per_step", M},
                          {"accumulation_steps", a},
                          {"thread_invariant", static_cast<bool>(replicas) || threads == 1},
                          {"precision", replicas ? replicas->precision_summary() : backend->precision_summary()}};
  result["device"] = tr.at("device");
  result["backend"] = backend->name();
  result["seed"] = seed;
  result["determinism"] = tr.at("determinism");
  check_same_data(dataset.path(), data_opened, "the test evaluation");
  result["dataset"] = {{"path", dataset.path().string()}, {"checksum", file_checksum(dataset.path())},
                       {"count", dataset.count()}, {"height", dataset.height()}, {"width", dataset.width()}};
  result["dataset"]["ingest"] = dataset_ingest_json(dataset.path());
  result.update(opt.extra_result);
  result["parameters"] = model->graph.num_params();
  result["steps"] = state.global_step;
  result["epochs_done"] = state.epoch;
  result["timings"] = {{"total_s", since(t_start)},
                       {"train_loop_s", since(t_loop)},
                       {"step_compute_s", compute_s},
                       {"grad_sync_wait_s", sync_s},
                       {"samples_per_s", samples_done / std::max(1e-9, since(t_loop))}};
  result["final"] = {{"val", last_val}};
  result["best"] = {{"metric", tr.at("best_metric")}, {"value", state.best_value},
                    {"epoch", state.best_epoch >= 0 ? nlohmann::json(state.best_epoch + 1) : nlohmann::json()},
                    {"val", state.best_metrics}};
  const std::string test_split = cfg.at("data").at("test_split").get<std::string>();
  // data.test_path: the final test reads that file's test split instead of data.path's.
  const std::string test_data = test_file ? test_path : cfg.at("data").at("path").get<std::string>();
  std::optional<EvalResult> final_test, best_test;
  if (test_file || (!test_split.empty() && dataset.has_split(test_split))) {
    nlohmann::json test_cfg = with_val_threshold(cfg, last_val);
    test_cfg["data"]["path"] = test_data;
    final_test = device.evaluate(test_cfg, *model, comm, test_split, 0);
    result["final"]["test"] = final_test->summary;
    if (test_file)
      result["test_dataset"] = {{"path", test_file->path().string()}, {"checksum", file_checksum(test_file->path())},
                                {"count", test_file->count()}, {"split", test_split}};
  }
  // Test metrics of the best checkpoint (what a paper reports beside the best epoch): best.h5
  // evaluated on the same test split as the final weights; when the last epoch is the best,
  // its numbers. Under result["best"]["test"] and as best_test_* in "metrics".
  if (final_test && state.best_epoch >= 0 && std::filesystem::exists(out / "best.h5")) {
    if (state.best_epoch + 1 == state.epoch) {
      best_test = final_test;
    } else {
      nlohmann::json best_cfg = with_val_threshold(cfg, state.best_metrics);
      best_cfg["data"]["path"] = test_data;
      LoadedModel best = load_model_from_checkpoint(out / "best.h5", backend_name(tr));
      best_test = evaluate_split(best_cfg, *best.model, comm, test_split, 0);
    }
    result["best"]["test"] = best_test->summary;
  }
  // Per-image test scores (the format of `crackseg eval --per-image`), for significance
  // tests: the sweep report's paired comparison reads them.
  if (lead && final_test) {
    write_file_atomic(out / "test_per_image.csv", final_test->per_image_csv(test_data, true));
    if (best_test) write_file_atomic(out / "best_test_per_image.csv", best_test->per_image_csv(test_data, true));
  }
  // Flat "metrics" for the sweep report: val_* of the last epoch, best_val_*, test_*, best_test_*.
  nlohmann::json flat = nlohmann::json::object();
  auto add_flat = [&](const std::string& prefix, const nlohmann::json& s) {
    if (!s.is_object()) return;
    for (auto it = s.begin(); it != s.end(); ++it)
      if (it->is_number_float()) flat[prefix + it.key()] = *it;
  };
  add_flat("val_", last_val);
  add_flat("best_val_", state.best_metrics);
  if (result["final"].contains("test")) add_flat("test_", result["final"]["test"]);
  if (result["best"].contains("test")) add_flat("best_test_", result["best"]["test"]);
  result["metrics"] = flat;
  if (lead) {
    write_file_atomic(out / "result.json", result.dump(2) + "\n");
    const std::string note = plot_learning_curves(out, cfg.at("loss").at("name").get<std::string>());
    if (!note.empty() && !opt.quiet) std::printf("note: %s\n", note.c_str());
    if (!opt.quiet) std::printf("done: %s\n", (out / "result.json").c_str());
  }
  outcome.result = std::move(result);
  return outcome;
}

}  // namespace crackseg::train
