// Helpers for tests that train for real: a tiny synthetic dataset, a tiny config, weight
// hashes, and sub-communicators of 1, 2 or 4 ranks inside one mpiexec job (so one test can
// compare rank counts directly).
#pragma once
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/synth/synth.hpp"
#include "src/config/config.hpp"
#include "src/models/model.hpp"
#include "src/train/train_state.hpp"

namespace crackseg::test {

// A folder shared by all ranks of MPI_COMM_WORLD (rank 0 creates it, broadcasts the name).
inline std::filesystem::path shared_tmpdir(const std::string& tag) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char buf[512] = {};
  if (rank == 0) {
    std::string tmpl = (std::filesystem::temp_directory_path() / ("crackseg-" + tag + "-XXXXXX")).string();
    std::snprintf(buf, sizeof buf, "%s", mkdtemp(tmpl.data()));
  }
  MPI_Bcast(buf, sizeof buf, MPI_CHAR, 0, MPI_COMM_WORLD);
  return buf;
}

// Rank 0 writes a small synthetic dataset; everyone waits for it.
inline std::filesystem::path make_synth(const std::filesystem::path& dir, uint32_t count, int size) {
  const auto path = dir / "synth.h5";
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0 && !std::filesystem::exists(path)) {
    io::SynthOptions o;
    o.out = path;
    o.count = count;
    o.size = size;
    o.seed = 11;
    o.threads = 1;
    (void)io::write_synth_dataset(o);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

inline config::ResolvedConfig tiny_config(const std::string& toml, const std::vector<std::string>& overrides) {
  config::RawConfig raw = config::raw_from_toml_text(toml, "test config");
  config::apply_overrides(raw, overrides);
  return config::resolve(raw);
}

// FNV-1a 64 over every parameter's bytes, in params() order.
inline uint64_t weights_hash(const std::vector<Param*>& params) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const Param* p : params) {
    const auto* b = static_cast<const unsigned char*>(p->value.raw());
    for (std::size_t i = 0; i < p->value.nbytes(); ++i) {
      h ^= b[i];
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

inline uint64_t checkpoint_weights_hash(const std::filesystem::path& ckpt) {
  auto loaded = train::load_model_from_checkpoint(ckpt, "onednn");
  return weights_hash(loaded.model->graph.params());
}

// Largest per-tensor relative difference ||a - b|| / max(||a||, 1e-3 sqrt(n)) (L2) between
// the parameters of two checkpoints. The floor keeps parameters whose true gradient is zero
// (conv biases right before batchnorm, which only ever see rounding noise) from dividing
// noise by noise.
inline double checkpoint_max_rel_diff(const std::filesystem::path& a, const std::filesystem::path& b) {
  auto la = train::load_model_from_checkpoint(a, "onednn"), lb = train::load_model_from_checkpoint(b, "onednn");
  const auto pa = la.model->graph.params(), pb = lb.model->graph.params();
  double worst = 0;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    const auto x = pa[i]->value.span<float>(), y = pb[i]->value.span<float>();
    double d2 = 0, n2 = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      d2 += (double(x[k]) - y[k]) * (double(x[k]) - y[k]);
      n2 += double(x[k]) * x[k];
    }
    worst = std::max(worst, std::sqrt(d2 / std::max(n2, 1e-6 * static_cast<double>(x.size()))));
  }
  return worst;
}

// A communicator of the first `n` world ranks (MPI_COMM_NULL on the others). Collective over
// MPI_COMM_WORLD.
class SubComm {
 public:
  explicit SubComm(int n) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_split(MPI_COMM_WORLD, rank < n ? 0 : MPI_UNDEFINED, rank, &comm_);
  }
  ~SubComm() {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  SubComm(const SubComm&) = delete;
  SubComm& operator=(const SubComm&) = delete;
  [[nodiscard]] bool member() const { return comm_ != MPI_COMM_NULL; }
  [[nodiscard]] MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace crackseg::test
