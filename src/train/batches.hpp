// Training batches as tensors. Two sources behind one interface:
//  - SegmentationBatches: whole images / random crops from io::ShardedReader (U-Net family,
//    Spiral-Net, FlexUNet): images (m, 3, H, W) nhwc f32, targets (m, 1, H, W) f32 0/1.
//  - PatchBatches: the patch CNN (Fan et al.): every epoch enumerates the patch samples of
//    the training images (all crack pixels + ratio x background), permutes that list with
//    (seed, epoch) and deals it to ranks by exactly the same rule as io::train_shard (the list
//    position plays the role of the sample index): images (m, 3, 2h+1, 2h+1) nhwc f32,
//    targets (m, (2s+1)^2) f32.
// sample_ids are global and rank-independent (dataset index for images, position in the
// epoch's permuted patch list for patches): dropout keys its masks by them.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace crackseg::train {

struct Batch {
  Tensor images;                     // (m, 3, H, W) nhwc f32
  Tensor targets;                    // (m, 1, H, W) or (m, K) f32
  std::vector<uint64_t> sample_ids;  // (m)
  uint64_t step = 0;                 // global step within the epoch
  int micro = 0;                     // this rank's k-th micro-batch of the step
};

struct BatchLayout {
  int rank = 0, world = 1;
  uint64_t seed = 0;
  int global_batch = 8, micro_batch = 4;
};

class TrainBatches {
 public:
  virtual ~TrainBatches() = default;
  [[nodiscard]] virtual uint64_t steps_per_epoch() const = 0;
  [[nodiscard]] virtual int micro_batches_per_step() const = 0;
  // Starts epoch `epoch` at global step `first_step` (resume mid-epoch).
  virtual void start_epoch(uint64_t epoch, uint64_t first_step) = 0;
  // Next micro-batch of this rank; false at the end of the epoch. Tensors are reused.
  [[nodiscard]] virtual bool next(Batch& b) = 0;
};

// `cfg` is the resolved run config (sections data, model, train).
[[nodiscard]] std::unique_ptr<TrainBatches> make_segmentation_batches(const nlohmann::json& cfg,
                                                                      const BatchLayout& layout);
[[nodiscard]] std::unique_ptr<TrainBatches> make_patch_batches(const nlohmann::json& cfg,
                                                               const BatchLayout& layout);

}  // namespace crackseg::train
