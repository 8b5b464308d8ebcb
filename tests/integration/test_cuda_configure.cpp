// ctest-labels: build
// ctest-timeout: 600
// ctest-link: crackseg_base
// The cuda preset on a machine where the toolkit is not at /usr/local/cuda (issue 14 items
// 12-13): a configure in a temporary folder reaches CUDA, cuDNN and NCCL only through
// CUDAToolkit_ROOT, CUDNN_ROOT and NCCL_ROOT (a symlinked copy of the toolkit's path, and no
// CUDA directory on PATH). It must succeed, every CUDA path in the cache must come from those
// variables, nvcc must get the C++ compiler as its host compiler, and the build must link one
// CUDA runtime (the shared one: no cudart_static anywhere in the link lines). Skipped where
// /usr/local/cuda does not exist (CI machines without the toolkit).
// CMake config packages (cmake/CudaDeps.cmake step 1), in the same configure: NCCL is given
// no NCCL_ROOT but a config package on CMAKE_PREFIX_PATH whose NCCL::nccl target names the
// real library through a third path, which must be what the cache holds; a cuDNN config
// package on CMAKE_PREFIX_PATH naming the real library by its canonical path must lose to
// CUDNN_ROOT. (The packages are written here: this machine's NCCL and cuDNN ship none; the
// library files they name are the real ones, so the version checks run on them.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::map<std::string, std::string> cache_values(const fs::path& cache) {
  std::map<std::string, std::string> out;
  std::ifstream f(cache);
  for (std::string line; std::getline(f, line);) {
    if (line.empty() || line[0] == '#' || line[0] == '/') continue;
    const auto colon = line.find(':'), eq = line.find('=');
    if (colon == std::string::npos || eq == std::string::npos || colon > eq) continue;
    out[line.substr(0, colon)] = line.substr(eq + 1);
  }
  return out;
}

std::string path_without_cuda() {
  std::string out;
  std::stringstream in(std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  for (std::string dir; std::getline(in, dir, ':');) {
    if (dir.find("cuda") != std::string::npos) continue;
    out += (out.empty() ? "" : ":") + dir;
  }
  return out;
}

// A config package `dir`/lib/cmake/<name>/<name>-config.cmake defining `target` as the
// shared library `lib` with the include directory `inc`.
void write_config_package(const fs::path& dir, const std::string& name, const std::string& target,
                          const fs::path& lib, const fs::path& inc) {
  const fs::path d = dir / "lib" / "cmake" / name;
  fs::create_directories(d);
  std::ofstream(d / (name + "-config.cmake"))
      << "if(NOT TARGET " << target << ")\n  add_library(" << target << " SHARED IMPORTED)\n  set_target_properties("
      << target << " PROPERTIES IMPORTED_LOCATION \"" << lib.string() << "\" INTERFACE_INCLUDE_DIRECTORIES \""
      << inc.string() << "\")\nendif()\nset(" << name << "_FOUND TRUE)\n";
}

}  // namespace

TEST(CudaConfigure, PresetFindsTheToolkitThroughRootVariablesOnly) {
  if (!fs::exists("/usr/local/cuda/bin/nvcc")) GTEST_SKIP() << "no CUDA toolkit at /usr/local/cuda";
  const fs::path tmp = fs::temp_directory_path() / ("crackseg-cudaconf-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const fs::path toolkit = tmp / "toolkit";  // the same files, under a path no default search knows
  fs::create_directory_symlink(fs::canonical("/usr/local/cuda"), toolkit);
  const fs::path build = tmp / "build", log = tmp / "configure.log";
  const std::string t = toolkit.string();
  // NCCL through a config package only, reaching the toolkit's files through another path.
  const fs::path real = fs::canonical("/usr/local/cuda"), nccl_root = tmp / "nccl-install";
  fs::create_directory_symlink(real, nccl_root);
  const std::string libdir = fs::exists(real / "lib64" / "libnccl.so") ? "lib64" : "lib";
  write_config_package(tmp / "nccl-pkg", "nccl", "NCCL::nccl", nccl_root / libdir / "libnccl.so",
                       nccl_root / "include");
  // A cuDNN package elsewhere that CUDNN_ROOT must override.
  const std::string cudnn_libdir = fs::exists(real / "lib64" / "libcudnn.so") ? "lib64" : "lib";
  write_config_package(tmp / "cudnn-pkg", "cudnn", "CUDNN::cudnn", real / cudnn_libdir / "libcudnn.so",
                       real / "include");
  const std::string cmd = "cd '" CRACKSEG_SOURCE_DIR "' && env -u CUDA_HOME -u CUDA_PATH -u CUDA_ROOT -u CUDACXX "
                          "-u CUDAToolkit_ROOT -u CUDAHOSTCXX -u NCCL_ROOT -u NCCL_HOME -u NCCL_DIR -u CUDNN_HOME "
                          "-u CUDNN_DIR -u CMAKE_PREFIX_PATH PATH='" + path_without_cuda() +
                          "' cmake --preset cuda -G Ninja -B '" + build.string() + "' -DCUDAToolkit_ROOT='" + t +
                          "' -DCUDNN_ROOT='" + t + "' -DCMAKE_PREFIX_PATH='" + (tmp / "nccl-pkg").string() + ";" +
                          (tmp / "cudnn-pkg").string() + "' > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "configure failed:\n" << slurp(log);
  auto cache = cache_values(build / "CMakeCache.txt");
  for (const char* key : {"CMAKE_CUDA_COMPILER", "CRACKSEG_CUDNN", "CRACKSEG_CUDNN_INCLUDE"})
    EXPECT_EQ(cache[key].rfind(t, 0), 0u) << key << " = " << cache[key] << " (expected under " << t << ")";
  for (const char* key : {"CRACKSEG_NCCL", "CRACKSEG_NCCL_INCLUDE"})
    EXPECT_EQ(cache[key].rfind(nccl_root.string(), 0), 0u)
        << key << " = " << cache[key] << " (expected from the config package, under " << nccl_root << ")";
  const std::string out = slurp(log);
  EXPECT_NE(out.find("config package " + (tmp / "nccl-pkg").string()), std::string::npos) << out;
  EXPECT_FALSE(cache["CMAKE_CUDA_HOST_COMPILER"].empty());
  EXPECT_EQ(fs::canonical(cache["CMAKE_CUDA_HOST_COMPILER"]), fs::canonical(cache["CMAKE_CXX_COMPILER"]));
  const std::string ninja = slurp(build / "build.ninja");
  EXPECT_EQ(ninja.find("cudart_static"), std::string::npos) << "a static CUDA runtime is linked next to libcudart.so";
  EXPECT_NE(ninja.find("libcudart.so"), std::string::npos);
  fs::remove_all(tmp);
}
