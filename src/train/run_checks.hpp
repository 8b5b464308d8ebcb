// Checks of a resolved run config that need the model and loss registries or the dataset,
// done before any rank builds anything, so a mismatch is one clear InputError naming the
// keys that fit (not a shape error at the first step):
//   - loss vs model output: softmax_ce needs 2 output classes (flex_unet model.classes = 2),
//     every other loss one sigmoid channel (model.classes = 1) or the patch CNN's outputs;
//   - the model's input-size rule vs data.crop (or the whole image when crop = 0), naming
//     the data.crop that fits (data.crop = 255 for Spiral-Net / the hourglass U-Net);
//   - data.path exists (a relative path that does not is reported with the absolute path
//     tried); the validation and test splits named by data.val_split / data.test_split,
//     when present in the file, hold images (an empty evaluation set is an error, never
//     zeros); eval.threshold is a number in [0, 1], "val" or "auto".
#pragma once
#include <nlohmann/json.hpp>

namespace crackseg::train {

void check_run_config(const nlohmann::json& cfg);

}  // namespace crackseg::train
