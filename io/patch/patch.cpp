#include "io/patch/patch.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include <opencv2/core.hpp>

#include "io/dataset/dataset.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"

namespace crackseg::io {
namespace {

void check_config(const PatchConfig& cfg) {
  if (cfg.h < 0 || cfg.s < 0 || cfg.s > cfg.h || !(cfg.ratio >= 0.0))
    throw InputError("patch sampler: need 0 <= s <= h and ratio >= 0 (got h=" + std::to_string(cfg.h) +
                     ", s=" + std::to_string(cfg.s) + ", ratio=" + std::to_string(cfg.ratio) + ")");
}

}  // namespace

std::vector<PatchSample> patch_samples_for_image(const PatchConfig& cfg, uint64_t seed, uint64_t epoch,
                                                 uint32_t image, std::span<const uint8_t> mask, int H, int W) {
  check_config(cfg);
  if (H <= 0 || W <= 0 || mask.size() != static_cast<size_t>(H) * W)
    throw Error("patch sampler: mask of image " + std::to_string(image) + " has " + std::to_string(mask.size()) +
                " values, expected " + std::to_string(H) + "x" + std::to_string(W));
  std::vector<PatchSample> out;
  std::vector<uint32_t> background;  // flat pixel indices
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const uint32_t i = static_cast<uint32_t>(y) * static_cast<uint32_t>(W) + static_cast<uint32_t>(x);
      if (mask[i])
        out.push_back({image, static_cast<uint32_t>(y), static_cast<uint32_t>(x)});
      else
        background.push_back(i);
    }
  const size_t want = static_cast<size_t>(std::llround(cfg.ratio * static_cast<double>(out.size())));
  const size_t k = std::min(want, background.size());
  // Partial Fisher-Yates: the first k slots become a uniform k-subset, in draw order.
  SampleRng rng(seed, epoch, image, Purpose::patch);
  const auto nb = static_cast<uint32_t>(background.size());
  out.reserve(out.size() + k);
  for (uint32_t i = 0; i < k; ++i) {
    const uint32_t j = i + rng.below(nb - i);
    std::swap(background[i], background[j]);
    out.push_back({image, background[i] / static_cast<uint32_t>(W), background[i] % static_cast<uint32_t>(W)});
  }
  return out;
}

std::vector<PatchSample> enumerate_patch_samples(const PatchConfig& cfg, uint64_t seed, uint64_t epoch,
                                                 const DatasetFile& file, std::span<const uint32_t> images) {
  std::vector<PatchSample> out;
  std::vector<uint8_t> mask(file.mask_bytes());
  for (uint32_t idx : images) {
    file.read_mask(idx, mask.data());
    auto one = patch_samples_for_image(cfg, seed, epoch, idx, mask, file.height(), file.width());
    out.insert(out.end(), one.begin(), one.end());
  }
  return out;
}

PatchSampler::Loader PatchSampler::file_loader(const DatasetFile& file) {
  return [&file](uint32_t index, uint8_t* image, uint8_t* mask) {
    file.read_image(index, image);
    file.read_mask(index, mask);
  };
}

PatchSampler::PatchSampler(PatchConfig cfg, Loader loader, int H, int W, size_t cache_images)
    : cfg_(cfg), loader_(std::move(loader)), H_(H), W_(W), pad_(std::max({cfg.before(), cfg.after(), cfg.s})),
      capacity_(std::max<size_t>(1, cache_images)) {
  check_config(cfg_);
  // BORDER_REFLECT needs the pad to fit inside the image (it reflects once).
  if (H_ < pad_ || W_ < pad_)
    throw InputError("patch sampler: images of " + std::to_string(H_) + "x" + std::to_string(W_) +
                     " are smaller than the patch padding " + std::to_string(pad_));
  raw_image_.resize(static_cast<size_t>(H_) * W_ * 3);
  raw_mask_.resize(static_cast<size_t>(H_) * W_);
}

const PatchSampler::Padded& PatchSampler::padded(uint32_t index) {
  if (auto it = cache_.find(index); it != cache_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first;
  }
  if (cache_.size() >= capacity_) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  loader_(index, raw_image_.data(), raw_mask_.data());
  const int ph = H_ + 2 * pad_, pw = W_ + 2 * pad_;
  Padded p{std::vector<uint8_t>(static_cast<size_t>(ph) * pw * 3), std::vector<uint8_t>(static_cast<size_t>(ph) * pw)};
  cv::Mat dst(ph, pw, CV_8UC3, p.image.data()), mdst(ph, pw, CV_8UC1, p.mask.data());
  cv::copyMakeBorder(cv::Mat(H_, W_, CV_8UC3, raw_image_.data()), dst, pad_, pad_, pad_, pad_, cv::BORDER_REFLECT);
  cv::copyMakeBorder(cv::Mat(H_, W_, CV_8UC1, raw_mask_.data()), mdst, pad_, pad_, pad_, pad_, cv::BORDER_REFLECT);
  lru_.push_front(index);
  auto [it, inserted] = cache_.emplace(index, std::pair{std::move(p), lru_.begin()});
  return it->second.first;
}

void PatchSampler::fill_batch(std::span<const PatchSample> batch, std::span<float> images, std::span<float> labels) {
  const int side = cfg_.patch_side(), lside = 2 * cfg_.s + 1;
  const size_t patch_floats = static_cast<size_t>(side) * side * 3, nl = static_cast<size_t>(cfg_.label_count());
  if (images.size() != batch.size() * patch_floats || labels.size() != batch.size() * nl)
    throw Error("patch sampler: batch of " + std::to_string(batch.size()) + " needs images (N, " +
                std::to_string(side) + ", " + std::to_string(side) + ", 3) = " +
                std::to_string(batch.size() * patch_floats) + " floats and labels (N, " + std::to_string(nl) +
                ") = " + std::to_string(batch.size() * nl) + ", got " + std::to_string(images.size()) + " and " +
                std::to_string(labels.size()));
  const size_t pw = static_cast<size_t>(W_ + 2 * pad_);
  for (size_t n = 0; n < batch.size(); ++n) {
    const PatchSample& ps = batch[n];
    if (ps.y >= static_cast<uint32_t>(H_) || ps.x >= static_cast<uint32_t>(W_))
      throw Error("patch sampler: pixel (" + std::to_string(ps.y) + ", " + std::to_string(ps.x) + ") of image " +
                  std::to_string(ps.image) + " is outside " + std::to_string(H_) + "x" + std::to_string(W_));
    const Padded& p = padded(ps.image);
    // Centre (y, x) sits at (y + pad, x + pad) in the padded arrays.
    const size_t cy = ps.y + static_cast<size_t>(pad_), cx = ps.x + static_cast<size_t>(pad_);
    float* img = images.data() + n * patch_floats;
    for (int dy = -cfg_.before(); dy <= cfg_.after(); ++dy) {
      const uint8_t* row = p.image.data() + ((cy + dy) * pw + cx - cfg_.before()) * 3;
      for (int i = 0; i < side * 3; ++i) *img++ = static_cast<float>(row[i]) / 255.0f;
    }
    float* lab = labels.data() + n * nl;
    for (int dy = -cfg_.s; dy <= cfg_.s; ++dy)
      for (int dx = -cfg_.s; dx <= cfg_.s; ++dx)
        lab[(dy + cfg_.s) * lside + (dx + cfg_.s)] = p.mask[(cy + dy) * pw + cx + dx] ? 1.0f : 0.0f;
  }
}

}  // namespace crackseg::io
