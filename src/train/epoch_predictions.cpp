#include "src/train/epoch_predictions.hpp"

#include <cstdio>

#include "io/dataset/dataset.hpp"
#include "io/image/prediction.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/inference.hpp"

namespace crackseg::train {

int write_epoch_predictions(const nlohmann::json& cfg, Model& model, int64_t epoch, const std::filesystem::path& out) {
  const int64_t n = cfg.at("train").at("predict_images").get<int64_t>();
  if (n <= 0) return 0;
  const io::DatasetFile file(cfg.at("data").at("path").get<std::string>());
  std::string split = cfg.at("data").at("val_split").get<std::string>();
  if (split.empty() || !file.has_split(split)) split = cfg.at("data").at("train_split").get<std::string>();
  std::vector<uint32_t> idx = file.split(split);
  if (static_cast<int64_t>(idx.size()) > n) idx.resize(static_cast<std::size_t>(n));
  const std::filesystem::path dir = out / "predictions";
  std::filesystem::create_directories(dir);
  Predictor predictor(model, inference_options(cfg));
  // The trainer passes the last validation's threshold when eval.threshold is tuned on it.
  const double thr = fixed_threshold(cfg).value_or(0.5);
  const int H = file.height(), W = file.width();
  std::vector<uint8_t> img(file.image_bytes()), mask(file.mask_bytes());
  std::vector<float> x(img.size());
  int written = 0;
  for (std::size_t k = 0; k < idx.size(); ++k) {
    file.read_image(idx[k], img.data());
    file.read_mask(idx[k], mask.data());
    for (std::size_t i = 0; i < img.size(); ++i) x[i] = img[i] / 255.0f;
    const std::vector<float> prob = predictor.predict(x.data(), H, W);
    const io::PredictionImages p = io::render_prediction(img, prob, H, W, thr);
    char name[96];
    std::snprintf(name, sizeof name, "%s_%zu_epoch%03lld.png", split.c_str(), k, static_cast<long long>(epoch));
    io::save_prediction_panel(dir / name, img, mask, p, H, W, thr);
    ++written;
  }
  return written;
}

}  // namespace crackseg::train
