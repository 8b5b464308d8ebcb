// Content checks when a dataset is opened: what the shapes alone do not say. A file written
// by another tool (or an old script) may hold float32 images in [0,1] (they would read as
// black bytes), uint16 images (they would saturate) or masks stored 0/255 (training would
// run on targets of 255 and report nonsense with exit 0). Checked: the element type of
// /images and /masks (uint8) and the values of a few evenly spaced masks (0/1), so opening
// stays cheap (at most kSampledMasks chunk reads).
#pragma once
#include <cstdint>

namespace crackseg::io {

class DatasetFile;

inline constexpr uint32_t kSampledMasks = 8;

// Throws InputError naming the file, the dataset and the problem (and how to fix it).
void validate_contents(const DatasetFile& d);

}  // namespace crackseg::io
