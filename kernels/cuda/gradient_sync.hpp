// dist::GradientSync's twin for device gradients over NcclCommunicator: the same API and
// the same semantics (see src/dist/gradient_sync.hpp), so the trainer drives either one.
//
// fast: buckets of about bucket_bytes in reverse parameter order; when a bucket's last
//   gradient is marked ready (and every earlier bucket has started: NCCL, like MPI, needs
//   the same collective order on every rank), its gradients go out in place as one NCCL
//   group of allreduces on the communicator's stream, ordered after the backward kernels
//   that wrote them by an event; finish() makes the compute stream wait. No packing copy.
// bitwise: stash_micro_batch copies the grads into a device stash and zeroes them; finish()
//   gathers every micro-batch's gradient (NCCL allgatherv as grouped broadcasts) and sums per
//   element in double from 0.0 in increasing global micro-batch index, rounding once: the
//   same numbers in the same order as the MPI implementation, so CPU-MPI and GPU-NCCL
//   bitwise runs agree whenever their per-micro-batch gradients do.
#pragma once
#include <vector>

#include "kernels/cuda/nccl_comm.hpp"
#include "src/dist/gradient_sync.hpp"

namespace crackseg::cuda {

class DeviceGradientSync {
 public:
  // params: grads f32 on the device, alive and in place as long as this object.
  // max_local_micro_batches: bitwise stash capacity reserved up front (grows if exceeded).
  DeviceGradientSync(NcclCommunicator& comm, std::vector<Param*> params, dist::GradientSyncOptions options = {},
                     int64_t max_local_micro_batches = 1);
  DeviceGradientSync(const DeviceGradientSync&) = delete;
  DeviceGradientSync& operator=(const DeviceGradientSync&) = delete;

  [[nodiscard]] dist::Determinism mode() const { return options_.mode; }
  [[nodiscard]] const std::vector<std::vector<std::size_t>>& buckets() const { return bucket_params_; }
  void mark_ready(std::size_t index);
  void stash_micro_batch(int64_t global_index);
  void finish();
  [[nodiscard]] const dist::SyncStats& last_stats() const { return stats_; }

 private:
  struct Bucket {
    std::vector<std::size_t> params;
    std::vector<std::size_t> offsets;
    std::size_t numel = 0, not_ready = 0;
    bool started = false;
    Event done;
  };
  void start_bucket(std::size_t b);
  void finish_bitwise();

  NcclCommunicator& comm_;
  std::vector<Param*> params_;
  dist::GradientSyncOptions options_;
  std::vector<std::vector<std::size_t>> bucket_params_;
  std::vector<Bucket> buckets_;
  std::vector<std::size_t> bucket_of_;
  std::vector<bool> ready_;
  // bitwise: stash (slots x total_numel, bucket-major within a slot), gather buffer, sums.
  std::size_t total_numel_ = 0, max_bucket_ = 0;
  int64_t stash_slots_ = 0;
  DevicePtr stash_, gathered_, order_;
  std::vector<int64_t> stashed_;
  dist::SyncStats stats_;
  std::size_t step_bytes_ = 0;
};

}  // namespace crackseg::cuda
