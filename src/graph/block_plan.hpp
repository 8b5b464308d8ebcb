// BlockPlan: the Graph's gradient memory for one backward pass, planned once per input shape.
// Every gradient buffer (a node's gradient, a second consumer's scratch) is a slot with a
// lifetime in backward order; slots whose lifetimes do not overlap share a block, whatever
// their shapes. A request takes the smallest free block that holds it, else grows the largest
// free block, else opens a new one (best fit; blocks are sized when planning ends, so growing
// costs nothing). Exact-shape pooling kept one set of buffers per U-Net level; sharing across
// levels lets the coarse levels' gradients live in the fine levels' blocks (docs/PERFORMANCE.md,
// "Memory"). Host code, no allocation: tested in tests/unit/test_block_plan.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace crackseg {

class BlockPlan {
 public:
  // A new slot of `elems` elements, busy until release(slot).
  int acquire(int64_t elems) {
    int best = -1, largest = -1;
    for (int b = 0; b < static_cast<int>(size_.size()); ++b) {
      if (busy_[static_cast<std::size_t>(b)]) continue;
      const int64_t s = size_[static_cast<std::size_t>(b)];
      if (s >= elems && (best < 0 || s < size_[static_cast<std::size_t>(best)])) best = b;
      if (largest < 0 || s > size_[static_cast<std::size_t>(largest)]) largest = b;
    }
    if (best < 0 && largest >= 0) {
      best = largest;
      size_[static_cast<std::size_t>(best)] = elems;
    }
    if (best < 0) {
      best = static_cast<int>(size_.size());
      size_.push_back(elems);
      busy_.push_back(0);
    }
    busy_[static_cast<std::size_t>(best)] = 1;
    slot_block_.push_back(best);
    slot_live_.push_back(1);
    return static_cast<int>(slot_block_.size() - 1);
  }
  void release(int slot) {
    const int b = block_of(slot);
    if (!slot_live_[static_cast<std::size_t>(slot)]) throw std::logic_error("BlockPlan::release: slot released twice");
    slot_live_[static_cast<std::size_t>(slot)] = 0;
    busy_[static_cast<std::size_t>(b)] = 0;
  }
  [[nodiscard]] int block_of(int slot) const { return slot_block_.at(static_cast<std::size_t>(slot)); }
  // Final block sizes in elements (the largest request each block served).
  [[nodiscard]] const std::vector<int64_t>& block_elems() const { return size_; }
  [[nodiscard]] int64_t total_elems() const {
    int64_t t = 0;
    for (int64_t s : size_) t += s;
    return t;
  }

 private:
  std::vector<int64_t> size_;
  std::vector<char> busy_;
  std::vector<int> slot_block_;
  std::vector<char> slot_live_;
};

}  // namespace crackseg
