#include "src/config/manifest.hpp"

#include <charconv>
#include <fstream>
#include <set>

#include "src/core/error.hpp"

namespace crackseg::config {

ManifestTask parse_manifest_line(std::string_view line, const std::string& source, std::size_t line_no) {
  const std::string where = source + ":" + std::to_string(line_no);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw InputError("sweep manifest " + where + " is not a JSON object: " + e.what());
  }
  if (!j.is_object()) throw InputError("sweep manifest " + where + " is not a JSON object");
  ManifestTask t;
  if (!j.contains("id") || !j["id"].is_number_integer() || j["id"].get<int64_t>() < 0)
    throw InputError("sweep manifest " + where + ": \"id\" must be a non-negative integer");
  t.id = j["id"].get<int64_t>();
  if (!j.contains("overrides") || !j["overrides"].is_array())
    throw InputError("sweep manifest " + where + ": \"overrides\" must be an array of \"key=value\" strings");
  for (const auto& o : j["overrides"]) {
    if (!o.is_string() || o.get<std::string>().find('=') == std::string::npos)
      throw InputError("sweep manifest " + where + ": override " + o.dump() + " is not a \"key=value\" string");
    t.overrides.push_back(o.get<std::string>());
  }
  if (j.contains("hash")) {
    if (!j["hash"].is_string()) throw InputError("sweep manifest " + where + ": \"hash\" must be a string");
    t.hash = j["hash"].get<std::string>();
  }
  for (const auto& [k, v] : j.items())
    if (k != "id" && k != "overrides" && k != "hash") t.extra[k] = v;
  return t;
}

std::vector<ManifestTask> read_manifest(const std::filesystem::path& manifest) {
  std::ifstream in(manifest);
  if (!in) throw InputError("cannot open sweep manifest " + manifest.string());
  std::vector<ManifestTask> tasks;
  std::set<int64_t> seen;
  std::string line;
  for (std::size_t n = 1; std::getline(in, line); ++n) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    ManifestTask t = parse_manifest_line(line, manifest.string(), n);
    if (!seen.insert(t.id).second)
      throw InputError("sweep manifest " + manifest.string() + ":" + std::to_string(n) + ": task id " +
                       std::to_string(t.id) + " appears twice");
    tasks.push_back(std::move(t));
  }
  if (in.bad()) throw InputError("cannot read sweep manifest " + manifest.string());
  return tasks;
}

ManifestTask read_manifest_task(const std::filesystem::path& manifest, int64_t id) {
  auto tasks = read_manifest(manifest);
  for (auto& t : tasks)
    if (t.id == id) return std::move(t);
  throw InputError("sweep manifest " + manifest.string() + " has no task " + std::to_string(id) + " (it holds " +
                   std::to_string(tasks.size()) + " tasks)");
}

TaskRef parse_task_ref(std::string_view spec) {
  const auto colon = spec.rfind(':');
  const auto bad = [&] {
    return InputError("--task '" + std::string(spec) + "' is not MANIFEST:ID (e.g. sweep/manifest.jsonl:3)");
  };
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == spec.size()) throw bad();
  TaskRef r;
  r.manifest = std::string(spec.substr(0, colon));
  const std::string_view id = spec.substr(colon + 1);
  const auto [ptr, ec] = std::from_chars(id.data(), id.data() + id.size(), r.id);
  if (ec != std::errc{} || ptr != id.data() + id.size() || r.id < 0) throw bad();
  return r;
}

ManifestTask load_task(std::string_view spec) {
  const TaskRef r = parse_task_ref(spec);
  return read_manifest_task(r.manifest, r.id);
}

}  // namespace crackseg::config
