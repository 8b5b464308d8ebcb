#include "src/train/run_checks.hpp"

#include <filesystem>
#include <string>

#include "io/dataset/dataset.hpp"
#include "src/core/error.hpp"
#include "src/models/model.hpp"
#include "src/train/evaluate.hpp"

namespace crackseg::train {

namespace {

std::string q(const std::string& s) { return "\"" + s + "\""; }

void check_loss_fits_model(const nlohmann::json& cfg, const Model& model) {
  const std::string loss = cfg.at("loss").value("name", std::string("bce"));
  const std::string name = model.name;
  const bool flex = name == "flex_unet";
  if (loss == "softmax_ce" && model.output != Model::Output::softmax2) {
    std::string msg = "loss.name = \"softmax_ce\" needs a model with 2 output classes, but model.name = " + q(name) +
                      " gives " + std::to_string(model.out_channels) + " sigmoid output(s): ";
    msg += flex ? "set model.classes = 2, or use a sigmoid loss (loss.name = \"bce\", \"weighted_bce\", \"dice\", ...)"
                : "use a sigmoid loss (loss.name = \"bce\", \"weighted_bce\", \"dice\", ...), or model.name = "
                  "\"flex_unet\" with model.classes = 2";
    throw InputError(msg);
  }
  if (loss != "softmax_ce" && model.output == Model::Output::softmax2)
    throw InputError("loss.name = " + q(loss) + " needs one sigmoid output channel, but model.name = " + q(name) +
                     " has model.classes = " + std::to_string(model.out_channels) +
                     " (softmax): set model.classes = 1, or loss.name = \"softmax_ce\" (2 classes)");
}

void check_input_size(const nlohmann::json& cfg, const Model& model, const std::filesystem::path& data) {
  if (model.output == Model::Output::patch) return;
  const int64_t crop = cfg.at("data").at("crop").get<int64_t>();
  int64_t h = crop, w = crop;
  if (crop <= 0) {
    const io::DatasetFile file(data);
    h = file.height();
    w = file.width();
  }
  for (const int64_t n : {h, w}) {
    if (model.size_rule.valid(n)) continue;
    const std::string what = crop > 0 ? "data.crop = " + std::to_string(crop)
                                      : "data.crop = 0 (whole " + std::to_string(h) + "x" + std::to_string(w) +
                                            " images of " + data.string() + ")";
    throw InputError(what + ": model.name = " + q(model.name) + " (" + model.summary() + ") takes inputs whose sides are " +
                     model.size_rule.describe() + "; train on crops of a valid size, e.g. data.crop = " +
                     std::to_string(model.default_input_size()) + " (nearest valid size to " + std::to_string(n) +
                     ": " + std::to_string(model.size_rule.nearest(n)) + "); eval and predict still take whole images");
  }
}

}  // namespace

void check_run_config(const nlohmann::json& cfg) {
  const std::filesystem::path data = cfg.at("data").at("path").get<std::string>();
  if (!std::filesystem::exists(data)) {
    std::string msg = "data.path = " + q(data.string()) + ": no such file";
    if (data.is_relative())
      msg += " (tried " + std::filesystem::absolute(data).string() + ", relative to the working directory " +
             std::filesystem::current_path().string() + ")";
    throw InputError(msg);
  }
  const std::unique_ptr<Model> model = build_model(cfg.at("model"));
  check_loss_fits_model(cfg, *model);
  check_input_size(cfg, *model, data);
  const io::DatasetFile file(data);
  // data.test_path: the final test reads that file's test split instead.
  const std::string test_path = cfg.at("data").value("test_path", std::string());
  const std::string val_split = cfg.at("data").at("val_split").get<std::string>();
  const std::string test_split = cfg.at("data").at("test_split").get<std::string>();
  if (!val_split.empty() && file.has_split(val_split)) require_images(data, val_split, "data.val_split");
  if (!test_split.empty()) {
    if (test_path.empty() && file.has_split(test_split)) require_images(data, test_split, "data.test_split");
    if (!test_path.empty() && std::filesystem::exists(test_path) && io::DatasetFile(test_path).has_split(test_split))
      require_images(test_path, test_split, "data.test_split (of data.test_path)");
  }
  const auto& t = cfg.at("eval").at("threshold");
  if (!(t.is_number() || (t.is_string() && (t.get<std::string>() == "val" || t.get<std::string>() == "auto"))))
    throw InputError("eval.threshold = " + t.dump() + ": must be a number in [0, 1], \"val\" or \"auto\"");
  if (t.is_string() && t.get<std::string>() == "val") {
    const std::string val = cfg.at("data").at("val_split").get<std::string>();
    if (val.empty() || !file.has_split(val))
      throw InputError("eval.threshold = \"val\" needs a validation split, but data.val_split = " + q(val) +
                       (val.empty() ? "" : " is not a split of " + data.string()) +
                       ": name one, or give a fixed threshold (eval.threshold = 0.5)");
  }
  (void)fixed_threshold(cfg);  // range of a numeric threshold
}

}  // namespace crackseg::train
