#include "src/train/provenance.hpp"

#include <hdf5.h>
#include <mpi.h>

#include <unistd.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <opencv2/core/version.hpp>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "crackseg/build_info.hpp"
#include "io/dataset/dataset.hpp"
#include "io/h5/util.hpp"

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

nlohmann::json host_json() {
  nlohmann::json j;
  char host[256] = {};
  j["hostname"] = gethostname(host, sizeof host - 1) == 0 ? std::string(host) : std::string("?");
  j["cpus"] = std::thread::hardware_concurrency();
  std::string model;
  std::set<std::string> isa;
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : std::string();
    if (model.empty() && key == "model name") model = value;
    if (isa.empty() && key == "flags") {
      std::istringstream ss(value);
      for (std::string flag; ss >> flag;)
        if (flag.rfind("avx", 0) == 0 || flag.rfind("amx", 0) == 0 || flag == "fma" || flag == "f16c") isa.insert(flag);
    }
  }
  j["cpu_model"] = model.empty() ? std::string("?") : model;
  j["isa"] = std::vector<std::string>(isa.begin(), isa.end());
  return j;
}

nlohmann::json launch_json(int ranks, int threads_per_rank) {
  nlohmann::json j;
  std::string cmd;
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  for (std::string arg; std::getline(f, arg, '\0');) cmd += (cmd.empty() ? "" : " ") + arg;
  j["command_line"] = cmd;
  const auto env = [](const char* k) { return std::getenv(k) != nullptr; };
  std::string launcher = "direct";
  if (env("SLURM_STEP_ID") || env("SLURM_PROCID"))
    launcher = "srun";
  else if (env("OMPI_COMM_WORLD_SIZE"))
    launcher = "mpirun (Open MPI)";
  else if (env("PMI_RANK") || env("PMI_SIZE") || env("HYDRA_CONTROL_FD"))
    launcher = "mpirun (MPICH/Hydra)";
  j["launcher"] = launcher;
  j["ranks"] = ranks;
  j["threads_per_rank"] = threads_per_rank;
  if (const char* job = std::getenv("SLURM_JOB_ID")) j["slurm_job_id"] = job;
  if (const char* task = std::getenv("SLURM_ARRAY_TASK_ID")) j["slurm_array_task_id"] = task;
  return j;
}

nlohmann::json dataset_ingest_json(const std::filesystem::path& dataset) {
  nlohmann::json j = nlohmann::json::object();
  const io::DatasetFile file(dataset);
  const hid_t root = file.file_id();
  if (h5::has_attribute(root, "origin")) j["origin"] = h5::read_string_attribute(root, "origin");
  if (h5::has_attribute(root, "ingest_options")) {
    const std::string text = h5::read_string_attribute(root, "ingest_options");
    j["options"] = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j["options"].is_discarded()) j["options"] = text;
  }
  return j;
}

}  // namespace crackseg
