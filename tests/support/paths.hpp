// Paths the tests need: the built binary, the source tree, the optional real data.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

namespace crackseg::test {

inline std::filesystem::path binary() { return CRACKSEG_BINARY; }
inline std::filesystem::path source_dir() { return CRACKSEG_SOURCE_DIR; }

// ../shared/data next to the checkout, or $CRACKSEG_TEST_DATA; empty when absent, and tests
// that need it GTEST_SKIP().
inline std::filesystem::path shared_data() {
  if (const char* env = std::getenv("CRACKSEG_TEST_DATA")) return env;
  std::filesystem::path p = CRACKSEG_TEST_DATA;
  return std::filesystem::exists(p) ? p : std::filesystem::path{};
}

// A fresh temporary folder per test, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "crackseg-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

}  // namespace crackseg::test
