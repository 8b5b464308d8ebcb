// BlockPlan: the Graph's gradient memory for one backward pass, planned once per input shape.
// Every gradient buffer (a node's gradient, a second consumer's scratch) is a slot with a
// lifetime in backward order: acquire() and release() are called in that order while the
// Graph walks its backward schedule, and finish() then places the slots at offsets in one
// arena so that slots whose lifetimes overlap never overlap in memory, whatever their shapes.
// Offline greedy by size (as TFLite's arena planner): the largest slot first, each into the
// smallest gap left between the slots already placed that are live at the same time, else
// above them. The U-Net's coarse levels live in the gaps of the fine levels and the arena
// stays at or near the peak of live gradients (docs/PERFORMANCE.md, "Memory"); exact-shape
// pooling needed one set of buffers per level. Offsets are multiples of kAlign elements (64
// bytes of floats). Host code: tested in tests/unit/test_block_plan.cpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace crackseg {

class BlockPlan {
 public:
  static constexpr int64_t kAlign = 16;

  // A new slot of `elems` elements, live from now until release(slot).
  int acquire(int64_t elems) {
    if (finished_) throw std::logic_error("BlockPlan::acquire after finish");
    slots_.push_back({elems, (elems + kAlign - 1) / kAlign * kAlign, now_++, kOpen, 0});
    return static_cast<int>(slots_.size() - 1);
  }
  void release(int slot) {
    Slot& s = slots_.at(static_cast<std::size_t>(slot));
    if (s.end != kOpen) throw std::logic_error("BlockPlan::release: slot released twice");
    s.end = now_++;
  }
  // Places every slot (slots never released stay live to the end).
  void finish() {
    std::vector<std::size_t> order(slots_.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return slots_[a].padded > slots_[b].padded; });
    std::vector<std::size_t> placed, busy;
    arena_ = 0;
    for (std::size_t i : order) {
      Slot& s = slots_[i];
      busy.clear();
      for (std::size_t j : placed)
        if (overlap(s, slots_[j])) busy.push_back(j);
      std::sort(busy.begin(), busy.end(), [&](std::size_t a, std::size_t b) { return slots_[a].offset < slots_[b].offset; });
      int64_t at = 0, best = -1, best_gap = std::numeric_limits<int64_t>::max();
      for (std::size_t j : busy) {
        const int64_t gap = slots_[j].offset - at;
        if (gap >= s.padded && gap < best_gap) best = at, best_gap = gap;
        at = std::max(at, slots_[j].offset + slots_[j].padded);
      }
      s.offset = best >= 0 ? best : at;
      arena_ = std::max(arena_, s.offset + s.padded);
      placed.push_back(i);
    }
    finished_ = true;
  }
  // Where the slot starts in the arena, in elements (after finish).
  [[nodiscard]] int64_t offset_of(int slot) const {
    if (!finished_) throw std::logic_error("BlockPlan::offset_of before finish");
    return slots_.at(static_cast<std::size_t>(slot)).offset;
  }
  // The arena's size in elements (after finish).
  [[nodiscard]] int64_t arena_elems() const { return arena_; }
  // The most (padded) elements live at one time: no placement can use less.
  [[nodiscard]] int64_t peak_live_elems() const {
    int64_t peak = 0;
    for (const Slot& s : slots_) {  // the peak is reached at some slot's start
      int64_t live = 0;
      for (const Slot& o : slots_)
        if (o.start <= s.start && s.start < o.end) live += o.padded;
      peak = std::max(peak, live);
    }
    return peak;
  }

 private:
  static constexpr int64_t kOpen = std::numeric_limits<int64_t>::max();
  struct Slot {
    int64_t elems, padded, start, end, offset;
  };
  static bool overlap(const Slot& a, const Slot& b) { return a.start < b.end && b.start < a.end; }
  std::vector<Slot> slots_;
  int64_t now_ = 0, arena_ = 0;
  bool finished_ = false;
};

}  // namespace crackseg
