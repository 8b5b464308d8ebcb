// Provenance for result.json: what built this binary and what it runs on.
#pragma once
#include <nlohmann/json.hpp>

namespace crackseg {

// {"crackseg": ..., "git_commit": ..., "git_dirty": ..., "compiler": ..., "mpi": ...,
//  "hdf5": ..., "onednn": ..., "kokkos": ..., "opencv": ..., "cuda": ...}
[[nodiscard]] nlohmann::json versions_json();

}  // namespace crackseg
