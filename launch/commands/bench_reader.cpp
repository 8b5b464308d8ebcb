// `crackseg bench-reader`: samples/s that ShardedReader delivers (HDF5 hyperslab reads +
// inflate + augmentation on the prefetch thread), consumed by a loop that does no training,
// so the number is the reader's ceiling. Ranks are real MPI ranks (mpirun -np R) times
// --ranks-sim readers per process (each with its own prefetch thread, consumed round-robin as
// R ranks on one node would). The aggregate is total samples / slowest rank's time.
#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "io/reader/sharded_reader.hpp"
#include "launch/command.hpp"
#include "src/core/error.hpp"
#include "src/core/mpi_check.hpp"

namespace {

// CPU seconds used by this process, all threads: on a shared machine samples / CPU-second is
// the reader's per-core capacity, which wall-clock samples/s understates under load.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Opts {
  std::string data, split = "train";
  int ranks_sim = 1, crop = 256, micro_batch = 4, batch = 0, prefetch = 2, workers = 1;
  bool augment = false;
  uint64_t seed = 126, epoch = 0, max_steps = 0;
} opts;

int run() {
  using namespace crackseg;
  int mpi_rank = 0, mpi_size = 1;
  CRACKSEG_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank));
  CRACKSEG_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &mpi_size));
  if (opts.ranks_sim < 1) throw InputError("--ranks-sim must be >= 1, got " + std::to_string(opts.ranks_sim));
  const int world = mpi_size * opts.ranks_sim;
  const int B = opts.batch > 0 ? opts.batch : world * opts.micro_batch;

  std::vector<std::unique_ptr<io::ShardedReader>> readers;
  for (int i = 0; i < opts.ranks_sim; ++i) {
    io::ReaderConfig cfg{.path = opts.data, .split = opts.split, .rank = mpi_rank * opts.ranks_sim + i,
                         .world = world, .seed = opts.seed, .global_batch = B, .micro_batch = opts.micro_batch,
                         .prefetch = opts.prefetch, .workers = opts.workers};
    cfg.augment.enabled = opts.augment;
    cfg.augment.crop = opts.crop;
    readers.push_back(std::make_unique<io::ShardedReader>(cfg));
  }
  const io::ShardedReader& r0 = *readers.front();
  const uint64_t steps = opts.max_steps > 0 ? std::min(opts.max_steps, r0.steps_per_epoch()) : r0.steps_per_epoch();
  const int a = r0.micro_batches_per_step();
  if (mpi_rank == 0)
    std::printf("bench-reader: %s split '%s' (%llu samples), %d rank(s) (%d MPI x %d per process), B=%d m=%d a=%d, "
                "%llu steps, output %dx%d, augment %s, prefetch %d, workers %d, HDF5 thread-safe: %s\n",
                opts.data.c_str(), opts.split.c_str(), static_cast<unsigned long long>(r0.split_size()), world,
                mpi_size, opts.ranks_sim, B, opts.micro_batch, a, static_cast<unsigned long long>(steps),
                r0.out_height(), r0.out_width(), opts.augment ? "on" : "off", opts.prefetch, opts.workers,
                io::hdf5_is_threadsafe() ? "yes" : "no");

  CRACKSEG_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = process_cpu_seconds();
  for (auto& r : readers) r->start_epoch(opts.epoch);
  std::vector<io::MicroBatch> mbs(readers.size());
  uint64_t samples = 0;
  double checksum = 0.0;  // touch the data so the consumer loop is not optimised away
  for (uint64_t t = 0; t < steps; ++t)
    for (int k = 0; k < a; ++k)
      for (size_t i = 0; i < readers.size(); ++i) {
        if (!readers[i]->next(mbs[i])) throw Error("bench-reader: reader ended before step " + std::to_string(t));
        samples += static_cast<uint64_t>(mbs[i].count);
        checksum += mbs[i].images[mbs[i].images.size() / 2] + mbs[i].masks[mbs[i].masks.size() / 2];
      }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = process_cpu_seconds() - cpu0;

  unsigned long long total = 0, mine = samples;
  double slowest = 0.0, cpu_total = 0.0;
  CRACKSEG_MPI_CHECK(MPI_Reduce(&mine, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD));
  CRACKSEG_MPI_CHECK(MPI_Reduce(&cpu, &cpu_total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
  CRACKSEG_MPI_CHECK(MPI_Reduce(&secs, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD));
  std::printf("  process %d: %llu samples in %.2f s = %.1f samples/s, %.2f CPU-s (checksum %.3f)\n", mpi_rank,
              mine, secs, static_cast<double>(mine) / secs, cpu, checksum);
  std::fflush(stdout);
  if (mpi_rank == 0) {
    const double rate = static_cast<double>(total) / slowest;
    const double mb_s = rate * static_cast<double>(r0.out_height()) * r0.out_width() * 3 * sizeof(float) / 1e6;
    const double per_cpu_s = static_cast<double>(total) / cpu_total;
    std::printf("aggregate: %llu samples in %.2f s = %.1f samples/s over %d rank(s) (%.1f MB/s of float images); "
                "%.1f samples per CPU-second (%.2f CPU-ms per sample)\n",
                total, slowest, rate, world, mb_s, per_cpu_s, 1e3 / per_cpu_s);
    std::printf("{\"bench\":\"reader\",\"ranks\":%d,\"augment\":%s,\"crop\":%d,\"samples\":%llu,\"seconds\":%.3f,"
                "\"samples_per_s\":%.2f,\"samples_per_cpu_s\":%.2f}\n",
                world, opts.augment ? "true" : "false", opts.crop, total, slowest, rate, per_cpu_s);
  }
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "bench-reader",
    .help = "sharded reader throughput (samples/s), optionally with augmentation; run under mpirun for ranks",
    .setup =
        [](CLI::App& app) {
          app.add_option("--data", opts.data, "dataset FILE.h5")->required()->check(CLI::ExistingFile);
          app.add_option("--split", opts.split, "split to read")->capture_default_str();
          app.add_option("--ranks-sim", opts.ranks_sim, "reader ranks simulated per process")
              ->capture_default_str();
          app.add_option("--crop", opts.crop, "random square crop (0 = whole image)")->capture_default_str();
          app.add_flag("--augment", opts.augment, "flips, rotation, scale, brightness/contrast, noise");
          app.add_option("--micro-batch", opts.micro_batch, "m")->capture_default_str();
          app.add_option("--batch", opts.batch, "global batch B (default ranks x m)");
          app.add_option("--prefetch", opts.prefetch, "micro-batches prepared ahead")->capture_default_str();
          app.add_option("--workers", opts.workers, "prefetch threads per reader")->capture_default_str();
          app.add_option("--seed", opts.seed)->capture_default_str();
          app.add_option("--epoch", opts.epoch)->capture_default_str();
          app.add_option("--max-steps", opts.max_steps, "stop after this many global steps (0 = epoch)");
        },
    .run = run,
}};

}  // namespace
