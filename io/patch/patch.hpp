// Patch sampling for the patch CNN (Fan et al. 2018; DESIGN.md "Patch CNN sampling").
//
// A training sample is one pixel (image, y, x). Per image: every crack pixel, plus
// round(ratio x crack pixels) background pixels chosen uniformly without replacement (fewer
// when the image has fewer background pixels; an image without crack pixels contributes
// nothing, as in the paper). The input is the (2h+1) x (2h+1) patch centred on the pixel, the
// target the (2s+1) x (2s+1) mask window around it, both cut on the fly from the image/mask
// padded symmetrically (cv::BORDER_REFLECT, "cba|abc...", MATLAB's padarray 'symmetric'),
// so border pixels get full patches whose content continues the real surface.
//
//   PatchSampler sampler(cfg, PatchSampler::file_loader(file), file.height(), file.width());
//   auto samples = enumerate_patch_samples(cfg, seed, epoch, file, file.split("train"));
//   sampler.fill_batch(std::span(samples).subspan(i, n), images, labels);
//
// Determinism: the background choice for image i comes only from
// SampleRng(seed, epoch, i, Purpose::patch). The list comes out grouped by image (crack
// pixels in raster order, then background pixels in draw order); the trainer shuffles it
// (e.g. epoch_permutation over its length) and shards it like any sample list.
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace crackseg::io {

class DatasetFile;

struct PatchConfig {
  int h = 13;          // patch side 2h+1 (13 -> 27x27)
  int s = 2;           // label window side 2s+1 (2 -> 5x5 = 25 outputs)
  double ratio = 3.0;  // background pixels per crack pixel (1:3)
  // The patch CNN with model.padding = "context" reads the image around its (2h+1)^2 patch
  // instead of zero padding: input rows/cols centre - (h + 6) .. centre + (4*(h/2) + 5 - h)
  // (36x36 for h=13, centre at 19). See src/models/patch_cnn.cpp.
  bool context = false;
  [[nodiscard]] int before() const { return context ? h + 6 : h; }
  [[nodiscard]] int after() const { return context ? 4 * (h / 2) + 5 - h : h; }
  [[nodiscard]] int patch_side() const { return before() + after() + 1; }
  [[nodiscard]] int label_count() const { return (2 * s + 1) * (2 * s + 1); }
};

struct PatchSample {
  uint32_t image = 0;  // dataset sample index
  uint32_t y = 0, x = 0;
  friend bool operator==(const PatchSample&, const PatchSample&) = default;
};

// Samples of one image; mask (H, W) in {0, 1}.
[[nodiscard]] std::vector<PatchSample> patch_samples_for_image(const PatchConfig& cfg, uint64_t seed,
                                                               uint64_t epoch, uint32_t image,
                                                               std::span<const uint8_t> mask, int H, int W);

// Samples of several images, concatenated in `images` order; masks read one at a time by
// hyperslab from `file`.
[[nodiscard]] std::vector<PatchSample> enumerate_patch_samples(const PatchConfig& cfg, uint64_t seed,
                                                               uint64_t epoch, const DatasetFile& file,
                                                               std::span<const uint32_t> images);

class PatchSampler {
 public:
  // Reads sample `index`: image (H, W, 3) uint8 and mask (H, W) uint8 into the given buffers.
  using Loader = std::function<void(uint32_t index, uint8_t* image, uint8_t* mask)>;
  [[nodiscard]] static Loader file_loader(const DatasetFile& file);

  // Keeps the padded versions of the `cache_images` most recently used images, so a batch
  // drawn from few images reads each once.
  PatchSampler(PatchConfig cfg, Loader loader, int H, int W, size_t cache_images = 32);

  // images (N, side, side, 3) float (side = patch_side(): 2h+1, or the context side), values x / 255 (as io/augment); labels (N, (2s+1)^2)
  // float 0/1, row-major window (dy, dx) from (-s, -s). N = batch.size().
  void fill_batch(std::span<const PatchSample> batch, std::span<float> images, std::span<float> labels);

  [[nodiscard]] const PatchConfig& config() const { return cfg_; }
  [[nodiscard]] int pad() const { return pad_; }

 private:
  struct Padded {
    std::vector<uint8_t> image, mask;  // (H + 2 pad, W + 2 pad, 3) / (H + 2 pad, W + 2 pad)
  };
  const Padded& padded(uint32_t index);

  PatchConfig cfg_;
  Loader loader_;
  int H_, W_, pad_;
  size_t capacity_;
  std::list<uint32_t> lru_;  // most recent first
  std::unordered_map<uint32_t, std::pair<Padded, std::list<uint32_t>::iterator>> cache_;
  std::vector<uint8_t> raw_image_, raw_mask_;
};

}  // namespace crackseg::io
