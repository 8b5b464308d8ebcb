#include "src/config/schema.hpp"

#include <algorithm>
#include <limits>

#include "src/core/error.hpp"
#include "src/core/text.hpp"

namespace crackseg::config {

const char* to_string(ValueType t) {
  switch (t) {
    case ValueType::integer: return "an integer";
    case ValueType::number: return "a number";
    case ValueType::boolean: return "a boolean (true/false)";
    case ValueType::string: return "a string";
    case ValueType::int_array: return "an array of integers";
    case ValueType::number_array: return "an array of numbers";
    case ValueType::string_array: return "an array of strings";
    case ValueType::any: return "any value";
  }
  return "?";
}

namespace {

KeySpec integer(std::string key, int64_t def, std::optional<double> min, std::string help) {
  return {std::move(key), ValueType::integer, def, {}, min, std::move(help)};
}
KeySpec number(std::string key, double def, std::optional<double> min, std::string help) {
  return {std::move(key), ValueType::number, def, {}, min, std::move(help)};
}
KeySpec boolean(std::string key, bool def, std::string help) {
  return {std::move(key), ValueType::boolean, def, {}, std::nullopt, std::move(help)};
}
KeySpec string(std::string key, std::string def, std::vector<std::string> choices, std::string help) {
  return {std::move(key), ValueType::string, std::move(def), std::move(choices), std::nullopt, std::move(help)};
}

}  // namespace

// Adding a key is one line here. Keys that follow from others are not keys: the number of
// accumulation steps is batch / (ranks x micro_batch) (see accumulation_steps in config.hpp).
Schema Schema::standard() {
  Schema s;
  auto& data = s.add_section("data", "dataset file, splits, cropping and augmentation");
  data.keys = {
      string("path", "synth.h5", {}, "HDF5 dataset (crackseg synth / ingest)"),
      string("train_split", "train", {}, "split used for training"),
      string("val_split", "val", {}, "split used for per-epoch validation (empty: none)"),
      string("test_split", "test", {}, "split used by the final evaluation (empty: none)"),
      string("test_path", "", {}, "separate HDF5 dataset for the final test evaluation (its test_split); empty: data.path"),
      integer("crop", 256, 0, "random square training crop; 0 = whole image"),
      boolean("augment", true, "flips, rotation, scale, brightness/contrast, noise"),
      integer("patch_ratio", 3, 0, "patch CNN: background patches per crack patch (Fan et al. 1:3)"),
      integer("max_train", 0, 0, "use at most this many training images; 0 = all"),
      integer("max_val", 0, 0, "use at most this many validation images; 0 = all"),
      integer("prefetch", 2, 0, "micro-batches read ahead on the reader thread"),
      string("stage", "none", {"none", "node"}, "node: one rank per node copies the file to node-local storage"),
      string("stage_dir", "", {}, "node-local folder for data.stage = node (\"\" = $SLURM_TMPDIR, $TMPDIR, /tmp)"),
  };
  auto& model = s.add_section("model", "architecture; keys beyond name come from the model registry");
  model.open = true;
  model.keys = {string("name", "unet", {}, "patch_cnn | unet | hourglass_unet | spiral_net | flex_unet")};
  auto& loss = s.add_section("loss", "loss function; keys beyond name come from the loss registry");
  loss.open = true;
  loss.keys = {string("name", "bce", {}, "bce | weighted_bce | balanced_bce | focal | dice | bce_dice | f1 | pseudo_f1 | softmax_ce")};
  auto& optim = s.add_section("optim", "optimizer and gradient clipping");
  optim.keys = {
      string("name", "adam", {"adam", "adamw", "sgd"}, "optimizer"),
      number("lr", 1e-3, 0.0, "learning rate"),
      number("beta1", 0.9, 0.0, "Adam first-moment decay"),
      number("beta2", 0.999, 0.0, "Adam second-moment decay"),
      number("eps", 1e-8, 0.0, "Adam denominator epsilon"),
      number("weight_decay", 0.0, 0.0, "L2 (sgd, adam) or decoupled (adamw) weight decay"),
      number("momentum", 0.9, 0.0, "SGD momentum"),
      boolean("nesterov", false, "SGD Nesterov momentum"),
      number("clip_value", 0.0, 0.0, "clip each gradient element to [-v, v]; 0 = off"),
      number("clip_norm", 0.0, 0.0, "rescale the global gradient to this L2 norm at most; 0 = off"),
  };
  auto& train = s.add_section("train", "loop, batch layout, reproducibility, output");
  train.keys = {
      integer("epochs", 10, 1, "epochs to train"),
      integer("steps", 0, 0, "stop after this many optimizer steps; 0 = epochs only"),
      integer("batch", 8, 1, "global batch = ranks x micro_batch x accumulation steps"),
      integer("micro_batch", 4, 1, "samples per forward/backward (the batchnorm group)"),
      integer("seed", 126, 0, "seed of every random draw (init, order, crops, dropout)"),
      string("determinism", "fast", {"fast", "bitwise"}, "gradient sum: bucketed overlap or fixed order"),
      string("device", "cpu", {"cpu", "cuda"}, "where tensors live"),
      string("backend", "auto", {"auto", "reference", "onednn", "cuda"}, "layer backend; auto = device default"),
      string("precision", "fp32", {"fp32", "bf16", "tf32"},
             "fp32 everywhere; bf16 (CPU: oneDNN, AVX512-BF16 or AMX; cuda: cuDNN, compute capability "
             ">= 8.0, fast mode only): convolutions read bf16 operands, accumulate in fp32, everything "
             "else (activations, BN statistics, loss, master weights, optimizer) stays fp32; tf32 "
             "(cuda, fast mode only): TF32 tensor cores for convolutions and matmuls"),
      string("conv_algorithm", "direct", {"direct", "winograd"},
             "3x3 stride-1 convolutions on the CPU (onednn backend, fp32): direct, or Winograd "
             "F(4x4, 3x3) where oneDNN has the kernel (AVX-512 CPUs; about 2x faster there; rounding "
             "differs from direct in the last digits; recorded in result.json arithmetic and used "
             "again by eval/predict of the checkpoint)"),
      integer("threads", 0, 0, "OpenMP threads per rank; 0 = OMP_NUM_THREADS or the runtime default"),
      string("parallel", "auto", {"auto", "intra", "batch"},
             "threads of a rank: intra = inside each kernel, batch = one micro-batch per thread "
             "(model replicas; bitwise results independent of threads); auto = batch in bitwise mode"),
      string("out", "runs/example", {}, "output folder: result.json, metrics.csv, checkpoints, plots"),
      integer("log_every", 10, 1, "progress line every this many steps (rank 0)"),
      integer("checkpoint_every", 0, 0, "checkpoint every this many steps; 0 = at epoch ends only"),
      integer("val_every", 1, 1, "validate every this many epochs"),
      string("best_metric", "f1", {}, "validation metric that selects best.h5"),
      string("best_mode", "max", {"max", "min"}, "whether larger or smaller best_metric is better"),
      integer("predict_images", 0, 0, "fixed validation images predicted to PNG each epoch"),
  };
  auto& schedule = s.add_section("schedule", "learning-rate schedule");
  schedule.keys = {
      string("name", "none", {"none", "plateau", "cosine", "step"}, "schedule"),
      string("monitor", "val_loss", {}, "plateau: metric watched"),
      string("mode", "min", {"min", "max"}, "plateau: whether the metric should fall or rise"),
      number("factor", 0.1, 0.0, "plateau and step: lr multiplier"),
      integer("patience", 10, 0, "plateau: epochs without improvement before reducing"),
      number("min_delta", 0.0, 0.0, "plateau: smallest change that counts as improvement"),
      number("min_lr", 0.0, 0.0, "lower bound of the learning rate"),
      integer("step_size", 10, 1, "step: epochs between reductions"),
      integer("t_max", 0, 0, "cosine: period in epochs; 0 = train.epochs"),
      integer("warmup_epochs", 0, 0, "linear warm-up epochs before the schedule"),
  };
  auto& early = s.add_section("early_stop", "stop when a validation metric stops improving");
  early.keys = {
      integer("patience", 0, 0, "epochs without improvement before stopping; 0 = off"),
      string("monitor", "val_loss", {}, "metric watched"),
      string("mode", "min", {"min", "max"}, "whether the metric should fall or rise"),
      number("min_delta", 0.0, 0.0, "smallest change that counts as improvement"),
  };
  auto& eval = s.add_section("eval", "evaluation and prediction");
  eval.keys = {
      {"threshold", ValueType::any, "auto", {}, std::nullopt,
       "probability threshold of the binary mask: a number in [0, 1]; \"val\" = the mean-F1-best threshold on "
       "the validation split, applied to test; \"auto\" = \"val\" for patch_cnn (when there is a validation "
       "split), 0.5 otherwise"},
      integer("batch", 0, 0, "images per evaluation forward; 0 = train.micro_batch"),
      integer("bins", 100, 2, "score histogram bins for AP and ODS/OIS"),
      integer("tile", 255, 0, "tile size for Spiral-Net/hourglass prediction; 0 = whole image"),
      string("patch_mode", "auto", {"auto", "dense", "patch"},
             "patch CNN prediction: dense = shared convolutions over the image (model.padding=context), patch = one patch per pixel, auto = dense when possible"),
  };
  auto& dist = s.add_section("dist", "data-parallel communication");
  dist.keys = {
      number("timeout_s", 600.0, 0.0, "a collective waiting longer than this ends the job; 0 = never"),
      number("bucket_mb", 4.0, 0.0, "fast mode: gradient bucket size in MiB"),
  };
  return s;
}

SectionSpec& Schema::add_section(std::string name, std::string help) {
  if (find(name)) throw Error("config schema: section [" + name + "] defined twice");
  sections_.push_back(SectionSpec{std::move(name), {}, false, {}, std::move(help)});
  return sections_.back();
}

SectionSpec* Schema::find(std::string_view section) {
  for (auto& s : sections_)
    if (s.name == section) return &s;
  return nullptr;
}
const SectionSpec* Schema::find(std::string_view section) const {
  for (const auto& s : sections_)
    if (s.name == section) return &s;
  return nullptr;
}

void Schema::set_dynamic_keys(std::string_view section, DynamicKeys fn) {
  SectionSpec* s = find(section);
  if (!s) throw Error("config schema: no section [" + std::string(section) + "]");
  s->dynamic = std::move(fn);
}

std::vector<std::string> Schema::dotted_keys() const {
  std::vector<std::string> out;
  for (const auto& s : sections_)
    for (const auto& k : s.keys) out.push_back(s.name + "." + k.key);
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) { return crackseg::edit_distance(a, b); }

std::string nearest_key(std::string_view dotted, const std::vector<std::string>& candidates) {
  const auto split = [](std::string_view s) {
    const auto dot = s.rfind('.');
    return dot == std::string_view::npos ? std::pair{std::string_view{}, s}
                                         : std::pair{s.substr(0, dot), s.substr(dot + 1)};
  };
  const auto [section, leaf] = split(dotted);
  std::string best;
  std::size_t best_score = std::numeric_limits<std::size_t>::max();
  for (const auto& c : candidates) {
    const auto [csection, cleaf] = split(c);
    std::size_t score = edit_distance(dotted, c);
    if (csection != section) score = std::min(score, edit_distance(leaf, cleaf) + 2);
    if (score < best_score) {
      best_score = score;
      best = c;
    }
  }
  return best;
}

}  // namespace crackseg::config
