// `train.predict_images = N`: after every epoch, rank 0 predicts the first N images of the
// validation split (the training split when there is none) and writes one panel per image,
// <out>/predictions/<split>_<k>_epoch<EEE>.png (photo | ground truth | probability | overlay),
// so a run's progress can be watched image by image, as FlexUNet's epoch-change inference does.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>

#include "src/models/model.hpp"

namespace crackseg::train {

// Returns the number of panels written (0 when train.predict_images is 0).
int write_epoch_predictions(const nlohmann::json& cfg, Model& model, int64_t epoch, const std::filesystem::path& out);

}  // namespace crackseg::train
