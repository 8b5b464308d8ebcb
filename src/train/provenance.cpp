#include "src/train/provenance.hpp"

#include <hdf5.h>
#include <mpi.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <opencv2/core/version.hpp>
#include <string>

#include "crackseg/build_info.hpp"

namespace crackseg {

nlohmann::json versions_json() {
  nlohmann::json j;
  j["crackseg"] = build_info::version;
  j["git_commit"] = build_info::git_commit;
  j["git_dirty"] = build_info::git_dirty;
  j["compiler"] = build_info::compiler;
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi, &len);
  std::string m(mpi, static_cast<std::size_t>(len));
  if (auto nl = m.find_first_of("\n,"); nl != std::string::npos) m = m.substr(0, nl);
  j["mpi"] = m;
  unsigned maj = 0, min = 0, rel = 0;
  H5get_libversion(&maj, &min, &rel);
  j["hdf5"] = std::to_string(maj) + "." + std::to_string(min) + "." + std::to_string(rel);
  const dnnl_version_t* v = dnnl_version();
  j["onednn"] = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
                " (" + v->hash + ", cpu_runtime " + std::to_string(v->cpu_runtime) + ")";
  j["kokkos"] = build_info::kokkos;
  j["opencv"] = CV_VERSION;
  j["cuda"] = build_info::cuda_enabled ? "enabled" : "not built";
  return j;
}

}  // namespace crackseg
