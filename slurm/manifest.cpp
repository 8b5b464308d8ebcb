#include "slurm/manifest.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include <unistd.h>

#include "src/core/error.hpp"

namespace crackseg::sweep {

std::vector<std::string> ManifestTask::all_overrides() const {
  auto all = overrides;
  all.push_back("train.seed=" + std::to_string(seed));
  return all;
}

std::string ManifestTask::configuration() const {
  std::string out;
  for (const auto& o : overrides) out += (out.empty() ? "" : " ") + o;
  return out;
}

std::string task_hash(std::vector<std::string> overrides, uint64_t seed) {
  std::sort(overrides.begin(), overrides.end());
  uint64_t h = 0xcbf29ce484222325ull;
  auto eat = [&](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;  // separator that cannot occur in UTF-8 text
    h *= 0x100000001b3ull;
  };
  for (const auto& o : overrides) eat(o);
  eat("train.seed=" + std::to_string(seed));
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string task_dir_name(int64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "task-%04lld", static_cast<long long>(id));
  return buf;
}

std::string manifest_line(const ManifestTask& t) {
  nlohmann::ordered_json j;
  j["id"] = t.id;
  j["overrides"] = t.overrides;
  j["seed"] = t.seed;
  j["hash"] = t.hash;
  j["dir"] = t.dir;
  return j.dump();  // escapes newlines and quotes: one task per physical line, always
}

ManifestTask parse_manifest_line(std::string_view line, const std::string& where) {
  ManifestTask t;
  try {
    const auto j = nlohmann::json::parse(line);
    t.id = j.at("id").get<int64_t>();
    t.overrides = j.at("overrides").get<std::vector<std::string>>();
    t.seed = j.at("seed").get<uint64_t>();
    t.hash = j.at("hash").get<std::string>();
    t.dir = j.at("dir").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": bad manifest line: " + e.what());
  }
  if (t.dir.empty() || t.dir.find('/') != std::string::npos || t.dir == "." || t.dir == "..")
    throw InputError(where + ": manifest \"dir\" must be a plain folder name, got '" + t.dir + "'");
  return t;
}

std::vector<ManifestTask> read_manifest(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError("cannot open manifest " + path.string());
  std::vector<ManifestTask> tasks;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    tasks.push_back(parse_manifest_line(line, path.string() + ":" + std::to_string(n)));
  }
  return tasks;
}

void write_manifest(const std::filesystem::path& path, const std::vector<ManifestTask>& tasks) {
  // Write-then-rename: a running array task never sees a half-written manifest.
  const auto tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw Error("cannot write " + tmp);
    for (const auto& t : tasks) out << manifest_line(t) << '\n';
    if (!out.flush()) throw Error("write failed: " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

ManifestTask read_manifest_task(const std::filesystem::path& manifest, int64_t id) {
  std::ifstream in(manifest);
  if (!in) throw InputError("cannot open manifest " + manifest.string());
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto t = parse_manifest_line(line, manifest.string() + ":" + std::to_string(n));
    if (t.id == id) return t;
  }
  throw InputError("manifest " + manifest.string() + " has no task with id " + std::to_string(id));
}

TaskRef parse_task_ref(std::string_view spec) {
  const auto colon = spec.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == spec.size())
    throw InputError("--task expects MANIFEST:ID, got '" + std::string(spec) + "'");
  TaskRef ref;
  ref.manifest = std::string(spec.substr(0, colon));
  const auto num = spec.substr(colon + 1);
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), ref.id);
  if (ec != std::errc{} || p != num.data() + num.size() || ref.id < 0)
    throw InputError("--task: bad task id '" + std::string(num) + "' in '" + std::string(spec) + "'");
  return ref;
}

std::filesystem::path task_output_dir(const std::filesystem::path& manifest, const ManifestTask& task) {
  return std::filesystem::absolute(manifest).parent_path() / task.dir;
}

}  // namespace crackseg::sweep
