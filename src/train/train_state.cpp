#include "src/train/train_state.hpp"

#include "src/config/schema.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "src/checkpoint/checkpoint.hpp"
#include "src/core/error.hpp"
#include "src/graph/backend.hpp"
#include "src/optim/monitor.hpp"
#include "src/optim/optimizer.hpp"
#include "src/optim/schedule.hpp"

namespace crackseg::train {

namespace {

checkpoint::NamedTensors named(const std::vector<Param*>& ps) {
  checkpoint::NamedTensors out;
  for (Param* p : ps) out.emplace_back(p->name, p->value);
  return out;
}
checkpoint::NamedTensors named(const std::vector<std::pair<std::string, Tensor*>>& ts) {
  checkpoint::NamedTensors out;
  for (const auto& [n, t] : ts) out.emplace_back(n, *t);
  return out;
}

// Keys that may differ between a checkpoint's config and the resuming run's: they do not
// change the arithmetic of the trajectory (output place, length, logging, threads, comms).
bool resume_may_differ(const std::string& section, const std::string& key) {
  if (section == "dist") return true;
  if (section == "train")
    return key == "out" || key == "epochs" || key == "steps" || key == "log_every" || key == "checkpoint_every" ||
           key == "threads" || key == "val_every" || key == "predict_images";
  if (section == "data") return key == "prefetch" || key == "path" || key == "stage" || key == "stage_dir";
  return section == "eval" || section == "early_stop";
}

void check_resumable(const std::filesystem::path& path, const nlohmann::json& saved, const nlohmann::json& now) {
  for (auto s = now.begin(); s != now.end(); ++s) {
    if (!s->is_object()) continue;
    for (auto k = s->begin(); k != s->end(); ++k) {
      if (resume_may_differ(s.key(), k.key())) continue;
      nlohmann::json old;
      if (saved.contains(s.key()) && saved[s.key()].contains(k.key())) {
        old = saved[s.key()][k.key()];
      } else {
        // A key added after the checkpoint was written: it ran with that key's default.
        static const config::Schema schema = config::Schema::standard();
        if (const auto* sec = schema.find(s.key()))
          for (const auto& spec : sec->keys)
            if (spec.key == k.key()) old = spec.default_value;
      }
      if (old != *k)
        throw InputError("cannot resume from " + path.string() + ": its config has " + s.key() + "." + k.key() + "=" +
                         old.dump() + " but this run has " + k->dump() +
                         " (start a new run folder, or pass --no-resume to overwrite)");
    }
  }
}

std::vector<std::pair<std::string, Tensor*>> named_tensors(const std::vector<Param*>& ps) {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (Param* p : ps) out.emplace_back(p->name, &p->value);
  return out;
}

// dst[name] = src[name] through `be` (host -> device), every tensor of dst named in src.
void copy_by_name(Backend& be, const std::vector<std::pair<std::string, Tensor*>>& src,
                  const std::vector<std::pair<std::string, Tensor*>>& dst, const char* what,
                  const std::filesystem::path& path) {
  std::map<std::string, Tensor*> by_name;
  for (const auto& [n, t] : src) by_name[n] = t;
  for (const auto& [n, t] : dst) {
    const auto it = by_name.find(n);
    if (it == by_name.end() || by_name.size() != dst.size())
      throw Error("loading " + path.string() + " onto the " + be.name() + " backend: the host model's " + what +
                  " do not match the device model's (no '" + n + "' or a different count)");
    be.copy(*it->second, *t);
  }
}

}  // namespace

void save_train_state(const std::filesystem::path& path, const TrainState& st, const config::ResolvedConfig& cfg,
                      Model& model, Optimizer& opt, LrSchedule& schedule, EarlyStopping& early) {
  checkpoint::Contents c;
  c.params = named(model.graph.params());
  c.buffers = named(model.graph.buffers());
  c.optim = named(opt.state());
  c.optim_step = opt.step_count();
  c.state["position"] = {{"epoch", st.epoch},
                         {"step_in_epoch", st.step_in_epoch},
                         {"global_step", st.global_step},
                         {"epoch_loss_sum", st.epoch_loss_sum},
                         {"epoch_loss_steps", st.epoch_loss_steps}};
  c.state["best"] = {{"value", std::isfinite(st.best_value) ? nlohmann::json(st.best_value) : nlohmann::json()},
                     {"epoch", st.best_epoch},
                     {"metrics", st.best_metrics}};
  c.state["scheduler"] = schedule.state();
  c.state["early_stop"] = early.state();
  c.state["lr"] = opt.lr();
  c.config_json = cfg.canonical;
  c.config_hash = cfg.hash;
  checkpoint::write_checkpoint(path, c);
}

TrainState load_train_state(const std::filesystem::path& path, const config::ResolvedConfig& cfg, Model& model,
                            Optimizer& opt, LrSchedule& schedule, EarlyStopping& early) {
  const checkpoint::Info info = checkpoint::read_info(path);
  check_resumable(path, nlohmann::json::parse(info.config_json), cfg.values);
  checkpoint::Contents c;
  c.params = named(model.graph.params());
  c.buffers = named(model.graph.buffers());
  c.optim = named(opt.state());
  checkpoint::read_checkpoint(path, c);
  // A checkpoint with NaN/Inf weights cannot be a resume point (a divergence would then name
  // it as the "last good checkpoint").
  for (const auto& [name, t] : c.params)
    if (t.device() == Device::cpu && t.dtype() == DType::f32)
      for (const float v : t.span<float>())
        if (!std::isfinite(v))
          throw InputError("checkpoint " + path.string() + ": parameter " + name +
                           " holds NaN/Inf values; it cannot be resumed (remove it or pass --no-resume)");
  model.graph.mark_params_changed();
  opt.set_step_count(c.optim_step);
  TrainState st;
  try {
    const auto& pos = c.state.at("position");
    st.epoch = pos.at("epoch").get<int64_t>();
    st.step_in_epoch = pos.at("step_in_epoch").get<int64_t>();
    st.global_step = pos.at("global_step").get<int64_t>();
    st.epoch_loss_sum = pos.value("epoch_loss_sum", 0.0);  // absent in older checkpoints
    st.epoch_loss_steps = pos.value("epoch_loss_steps", int64_t{0});
    if (st.epoch < 0 || st.step_in_epoch < 0 || st.global_step < st.step_in_epoch)
      throw InputError("checkpoint " + path.string() + ": invalid position epoch " + std::to_string(st.epoch) +
                       ", step " + std::to_string(st.step_in_epoch) + ", global step " +
                       std::to_string(st.global_step) + " (negative, or fewer global steps than steps in the epoch)");
    const auto& best = c.state.at("best");
    st.best_value = best.at("value").is_number() ? best.at("value").get<double>() : NAN;
    st.best_epoch = best.at("epoch").get<int64_t>();
    st.best_metrics = best.at("metrics");
    schedule.load_state(c.state.at("scheduler"));
    early.load_state(c.state.at("early_stop"));
    opt.set_lr(c.state.at("lr").get<double>());
  } catch (const nlohmann::json::exception& e) {
    throw InputError("checkpoint " + path.string() + ": /state is incomplete or malformed: " + e.what());
  }
  return st;
}

std::string resolve_inference_backend(const std::string& requested, const nlohmann::json& cfg_values) {
  if (requested != "auto") return requested;
  std::string b = cfg_values.at("train").at("backend").get<std::string>();
  if (b == "auto") b = cfg_values.at("train").at("device").get<std::string>() == "cuda" ? "cuda" : "onednn";
  if (b == "cuda") {  // a GPU-trained model on a build without the cuda backend: run it on the CPU
    const auto names = backend_names();
    if (std::find(names.begin(), names.end(), "cuda") == names.end()) b = "onednn";
  }
  return b;
}

LoadedModel load_model_from_checkpoint(const std::filesystem::path& path, const std::string& backend) {
  if (!checkpoint::is_checkpoint(path)) throw InputError(path.string() + " is not a crackseg checkpoint");
  const checkpoint::Info info = checkpoint::read_info(path);
  LoadedModel out;
  out.cfg = config::from_resolved_json(nlohmann::json::parse(info.config_json), path.string());
  out.backend = make_backend(resolve_inference_backend(backend, out.cfg.values));
  // The arithmetic the run recorded its metrics with: a bf16-trained model is evaluated in
  // bf16 where the device can (a CPU with AVX512-BF16, a GPU of compute capability 8.0 or
  // newer), so eval reproduces the recorded numbers; elsewhere in fp32, said.
  const auto& tr = out.cfg.values.at("train");
  if (tr.contains("precision") && tr.at("precision").get<std::string>() == "bf16") {
    try {
      out.backend->set_precision("bf16");
    } catch (const InputError& e) {
      std::fprintf(stderr, "note: %s was trained with bf16 convolutions; evaluating in fp32 here (%s): metrics may "
                   "differ from the recorded ones in the last digits\n", path.string().c_str(), e.what());
    }
  }
  // Winograd-trained models are evaluated with Winograd too (the recorded metrics' arithmetic);
  // a backend without it (reference, cuda) evaluates direct, said.
  if (tr.contains("conv_algorithm") && tr.at("conv_algorithm").get<std::string>() != "direct") {
    try {
      out.backend->set_conv_algorithm(tr.at("conv_algorithm").get<std::string>());
    } catch (const InputError& e) {
      std::fprintf(stderr, "note: %s was trained with train.conv_algorithm = %s; evaluating with direct convolutions "
                   "here (%s): metrics may differ from the recorded ones in the last digits\n", path.string().c_str(),
                   tr.at("conv_algorithm").get<std::string>().c_str(), e.what());
    }
  }
  out.model = build_model(out.cfg.values.at("model"));
  out.model->graph.instantiate(*out.backend, 0);
  checkpoint::ReadOptions ro;
  ro.optim = false;
  // Checkpoints hold host tensors. A model on another device (cuda) is read into a host copy
  // of the model first and copied up through the backend, as TrainDevice::push does.
  std::unique_ptr<Backend> host_backend;
  std::unique_ptr<Model> host_model;
  Model* target = out.model.get();
  if (out.backend->device() != Device::cpu) {
    host_backend = make_backend("onednn");
    host_model = build_model(out.cfg.values.at("model"));
    host_model->graph.instantiate(*host_backend, 0);
    target = host_model.get();
  }
  checkpoint::Contents c;
  c.params = named(target->graph.params());
  c.buffers = named(target->graph.buffers());
  checkpoint::read_checkpoint(path, c, ro);
  if (host_model) {
    copy_by_name(*out.backend, named_tensors(host_model->graph.params()), named_tensors(out.model->graph.params()),
                 "parameters", path);
    copy_by_name(*out.backend, host_model->graph.buffers(), out.model->graph.buffers(), "buffers", path);
  }
  out.model->graph.mark_params_changed();
  return out;
}

std::string file_checksum(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw InputError("cannot open " + path.string() + " for its checksum");
  uint64_t h = 0xcbf29ce484222325ull;
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      ::close(fd);
      throw Error("read error on " + path.string() + " while computing its checksum");
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      h ^= buf[static_cast<std::size_t>(i)];
      h *= 0x100000001b3ull;
    }
  }
  ::close(fd);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

}  // namespace crackseg::train
