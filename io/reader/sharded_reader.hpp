// ShardedReader: each rank reads exactly its own samples of an HDF5 dataset split, by
// hyperslab, augments them, and hands them out as micro-batches prepared ahead of use on a
// background thread (or several: ReaderConfig::workers).
//
// TRAINING SHARDING RULE (the trainer relies on it; tests check it):
//   split   = the split's sample indices (sorted, as stored), n = split.size()
//   perm    = crackseg::epoch_permutation(seed, epoch, n)
//   steps   = floor(n / B)   -- the last incomplete global batch is DROPPED each epoch; its
//             samples are not read that epoch (a different permutation next epoch puts
//             other samples there). Every sample of the first steps*B positions is read
//             exactly once, by exactly one rank.
//   global step t covers permuted positions [t*B, (t+1)*B); position p holds dataset sample
//             split[perm[p]].
//   within step t, position t*B + j belongs to global micro-batch g = j / m (g in [0, B/m));
//   micro-batches are dealt round-robin: rank r owns g = r, r + R, r + 2R, ..., i.e. its
//             k-th micro-batch of the step (k = 0 .. a-1, a = B / (R*m) accumulation steps)
//             is g = k*R + r, positions t*B + (k*R + r)*m + [0, m).
//   B must be divisible by R*m (InputError otherwise).
//   A rank's micro-batches come out in order (t, k).
// So 1, 2 or 4 ranks see the same global batches, and each global micro-batch (the batchnorm
// group) has the same members whatever R is.
//
// EVAL SHARDING: no padding, no duplicates, no augmentation, whole images. With n split
// samples, rank r gets the contiguous block split[r*n/R, (r+1)*n/R) (integer division), in
// split order, cut into micro-batches of m (the last may be smaller; a rank may get none).
//
// SAMPLE IDENTITY: MicroBatch::indices holds each sample's dataset index (its row in
// /images). That is the "global sample index" keying every per-sample random draw
// (augmentation here, dropout in the trainer): SampleRng(seed, epoch, index, purpose).
//
// THREADS AND HDF5: Debian's parallel HDF5 1.10 is built without --enable-threadsafe
// (hdf5_is_threadsafe() reports it). The prefetch thread is the only thread that reads the
// dataset while an epoch runs, but the main thread may be writing a checkpoint meanwhile, so
// every HDF5 call made here goes through io/h5's process-wide lock (DatasetFile does that
// per call, and decompresses outside it). That is correct whether or not the library is
// thread-safe, and costs little: the lock is held only for raw chunk reads. The reader's
// DatasetFile is opened on the main thread and then used only by the prefetch thread.
// With several workers they share that one DatasetFile (its HDF5 calls take the lock; its
// inflate scratch is thread_local, so decompression runs in parallel). Output bytes do not
// depend on the number of workers: every draw is keyed by the sample, not the thread.
// The prefetch threads make no MPI calls (Runtime uses MPI_THREAD_FUNNELED).
//
//   ShardedReader reader(ReaderConfig{.path = "synth.h5", .rank = r, .world = R, .seed = 126,
//                                     .global_batch = 8, .micro_batch = 4,
//                                     .augment = {.crop = 256}});
//   reader.start_epoch(epoch);                 // or start_epoch(epoch, resume_step)
//   MicroBatch mb;
//   while (reader.next(mb)) { ... mb.images (m, H', W', 3), mb.masks, mb.indices ... }
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/augment/augment.hpp"

namespace crackseg::io {

class DatasetFile;

enum class ReaderMode { train, eval };

struct ReaderConfig {
  std::filesystem::path path;
  std::string split = "train";
  ReaderMode mode = ReaderMode::train;
  int rank = 0, world = 1;
  uint64_t seed = 126;
  int global_batch = 8;       // B (train); eval ignores it
  int micro_batch = 4;        // m
  AugmentConfig augment{};    // train only; eval never augments or crops
  int prefetch = 2;           // micro-batches ready or in preparation ahead of use (>= 1)
  int64_t max_samples = 0;    // > 0: only the first max_samples of the split, in stored
                              // order (data.max_train / max_val); 0 = the whole split
  int workers = 1;            // prefetch threads; each prepares whole micro-batches, and
                              // they come out in order whatever thread finished first.
                              // More than `prefetch` workers cannot all be busy.
};

struct MicroBatch {
  uint64_t epoch = 0;
  uint64_t step = 0;          // train: global step t; eval: this rank's batch ordinal
  int micro = 0;              // train: k, this rank's k-th micro-batch of step t; eval: 0
  int count = 0;              // samples in this micro-batch (m, or fewer for eval's last)
  int height = 0, width = 0;  // per-sample output size (crop or whole image)
  std::vector<float> images;      // (count, height, width, 3) float32, values x / 255
  std::vector<uint8_t> masks;     // (count, height, width) 0/1
  std::vector<uint64_t> indices;  // (count) dataset sample indices
};

// One rank's samples for one epoch, in consumption order (pure functions of their arguments;
// what ShardedReader reads, exposed for the trainer's bookkeeping and for tests).
// Throws InputError when B is not divisible by R*m or the split holds fewer than B samples.
[[nodiscard]] std::vector<uint32_t> train_shard(const std::vector<uint32_t>& split, uint64_t seed,
                                                uint64_t epoch, int global_batch, int micro_batch,
                                                int world, int rank);
[[nodiscard]] std::vector<uint32_t> eval_shard(const std::vector<uint32_t>& split, int world, int rank);

// H5is_library_threadsafe() of the linked HDF5.
[[nodiscard]] bool hdf5_is_threadsafe();

class ShardedReader {
 public:
  explicit ShardedReader(ReaderConfig cfg);
  ~ShardedReader();
  ShardedReader(const ShardedReader&) = delete;
  ShardedReader& operator=(const ShardedReader&) = delete;

  // Train: floor(n / B). Eval: 1 (one pass).
  [[nodiscard]] uint64_t steps_per_epoch() const { return steps_; }
  // Train: a = B / (R*m) micro-batches per step on each rank. Eval: this rank's batch count.
  [[nodiscard]] int micro_batches_per_step() const { return micro_per_step_; }
  [[nodiscard]] uint64_t split_size() const { return split_.size(); }
  [[nodiscard]] int out_height() const { return out_h_; }
  [[nodiscard]] int out_width() const { return out_w_; }
  [[nodiscard]] const ReaderConfig& config() const { return cfg_; }

  // Starts (or restarts) prefetching `epoch` from global step `first_step` (resume); any
  // epoch still in flight is cancelled first. Eval: one pass over the rank's block; `epoch`
  // is only recorded in MicroBatch::epoch and first_step is ignored.
  void start_epoch(uint64_t epoch, uint64_t first_step = 0);
  // Blocks until the next micro-batch is ready and swaps it into `out` (out's old buffers are
  // recycled, so a steady-state loop allocates nothing). Returns false when the epoch is
  // done. Rethrows an error raised on the prefetch thread (it names the file and sample).
  [[nodiscard]] bool next(MicroBatch& out);

 private:
  struct Job {  // one micro-batch to prepare
    uint64_t step;
    int micro;
    std::vector<uint32_t> samples;
  };
  void stop_workers();
  void worker();
  void fill(const Job& job, MicroBatch& mb, std::vector<uint8_t>& img, std::vector<uint8_t>& msk) const;

  ReaderConfig cfg_;
  std::unique_ptr<DatasetFile> file_;  // used by the prefetch threads only while an epoch runs
  std::vector<uint32_t> split_;
  int H_ = 0, W_ = 0, out_h_ = 0, out_w_ = 0;
  uint64_t steps_ = 0;
  int micro_per_step_ = 0;

  // The epoch in flight; jobs_ and epoch_ change only while no worker runs.
  uint64_t epoch_ = 0;
  std::vector<Job> jobs_;
  // Job j is claimed only while j < consumed_ + prefetch, and lands in slot j % prefetch, so a
  // slot is always free when its job finishes and the consumer takes jobs strictly in order.
  std::mutex mu_;
  std::condition_variable cv_;
  size_t claimed_ = 0, consumed_ = 0;
  std::vector<MicroBatch> slots_;  // (prefetch)
  std::vector<char> full_;         // (prefetch)
  std::vector<MicroBatch> free_;   // recycled buffers
  bool stop_ = false;
  std::exception_ptr error_;  // the earliest failed job's error, rethrown in its place
  size_t error_job_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace crackseg::io
