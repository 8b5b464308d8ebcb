// Host bookkeeping of upload_async's staging ring (tensor_ops.cu), free of CUDA so that a
// host test runs it in CI (tests/unit/test_staging_ring.cpp).
//
// A slot is a pinned host buffer and a device buffer of the same size, and two events:
//   dma_done  recorded on the copy stream after the host -> device DMA (pinned -> device slot);
//   consumed  recorded on the compute stream after the device -> device copy (device slot ->
//             the destination tensor), which the compute stream runs after waiting on dma_done.
// The DMA runs on its own stream, so it overlaps the compute stream's earlier work (e.g. the
// previous micro-batch's backward, which may still read the destination tensor: that is why
// the DMA lands in the slot and not in the destination). Before a slot is used again:
//   - the host waits for its previous DMA (cudaEventSynchronize(dma_done)) before writing the
//     pinned buffer or reallocating it;
//   - the copy stream waits for its previous consumer (cudaStreamWaitEvent(consumed)) before
//     the DMA overwrites the device buffer.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "src/core/error.hpp"

namespace crackseg::cuda {

struct StagingStep {
  int slot = -1;               // -1: nothing to upload (0 bytes); no slot is taken
  bool wait_dma = false;       // host: the slot's previous DMA must have finished
  bool wait_consumed = false;  // copy stream: the slot's previous consumer must have finished
  std::size_t grow_to = 0;     // > 0: (re)allocate both buffers to this many bytes, after wait_dma
};

class StagingRing {
 public:
  explicit StagingRing(int slots) {
    if (slots < 1) throw Error("StagingRing: " + std::to_string(slots) + " slots; needs at least 1");
    slots_.resize(static_cast<std::size_t>(slots));
  }

  // The step for the next upload of `bytes` bytes; the slots are taken in turn, so a slot
  // comes back after slots() uploads.
  [[nodiscard]] StagingStep next(std::size_t bytes) {
    if (bytes == 0) return {};
    const int k = cursor_;
    cursor_ = (cursor_ + 1) % static_cast<int>(slots_.size());
    Slot& s = slots_[static_cast<std::size_t>(k)];
    StagingStep step;
    step.slot = k;
    step.wait_dma = step.wait_consumed = s.used;
    if (s.capacity < bytes) step.grow_to = s.capacity = bytes;
    s.used = true;
    return step;
  }

  // A step whose CUDA calls failed part-way: the slot's buffers are in an unknown state, so
  // its next use reallocates them (and still waits on whatever was recorded).
  void forget(int slot) { slots_.at(static_cast<std::size_t>(slot)).capacity = 0; }

  [[nodiscard]] int slots() const { return static_cast<int>(slots_.size()); }
  [[nodiscard]] std::size_t capacity(int slot) const { return slots_.at(static_cast<std::size_t>(slot)).capacity; }

 private:
  struct Slot {
    std::size_t capacity = 0;
    bool used = false;  // events were recorded for it: a reuse waits on them
  };
  std::vector<Slot> slots_;
  int cursor_ = 0;
};

}  // namespace crackseg::cuda
