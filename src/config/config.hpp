// Run configuration: a TOML file, then `key=value` overrides (sweep manifest first, command
// line last), resolved against the schema: defaults filled, types checked, unknown keys
// rejected with the nearest valid key. The resolved config is plain JSON, saved with every
// run and checkpoint, and identified by its hash (hash.hpp).
//
//   auto cfg = crackseg::config::load_run_config("run.toml", {"optim.lr=1e-4", "train.seed=7"});
//   int64_t epochs = cfg.values["train"]["epochs"];
//   cfg.hash  // "3f0c9a..."
#pragma once
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/config/hash.hpp"
#include "src/config/schema.hpp"

namespace crackseg::config {

// Where a key's value came from, for messages ("run.toml", "override 'train.epochs=ten'").
struct Origin {
  std::string where;
  std::optional<std::string> raw_text;  // the override's value text, verbatim
};

// A config before resolution: values as written plus the origin of every leaf.
struct RawConfig {
  nlohmann::json values = nlohmann::json::object();
  std::map<std::string, Origin> origins;  // dotted key -> origin
  std::string file;                       // the TOML file, for messages
};

struct ResolvedConfig {
  nlohmann::json values;  // every section and key, defaults filled
  std::string canonical;  // canonical_json(values)
  std::string hash;       // config_hash(values)
};

[[nodiscard]] RawConfig load_raw(const std::filesystem::path& toml_file);
[[nodiscard]] RawConfig raw_from_toml_text(std::string_view toml_text, const std::string& source_name);

struct Override {
  std::vector<std::string> path;  // "model.base" -> {"model", "base"}
  nlohmann::json value;
  std::string text;               // "model.base=32", for messages
};
// Splits at the first '='; the key must be dotted names ([A-Za-z0-9_-]+ each).
[[nodiscard]] Override parse_override(std::string_view text);
void apply_override(RawConfig& cfg, const Override& o);
void apply_overrides(RawConfig& cfg, std::span<const std::string> overrides);

// Checks and completes `raw` against `schema`. Errors are InputError naming the key, where
// it came from and what was expected.
[[nodiscard]] ResolvedConfig resolve(const RawConfig& raw, const Schema& schema = Schema::standard());

// load_raw + apply_overrides + resolve.
[[nodiscard]] ResolvedConfig load_run_config(const std::filesystem::path& toml_file,
                                             std::span<const std::string> overrides,
                                             const Schema& schema = Schema::standard());

// A ResolvedConfig from already-resolved JSON (e.g. read back from a checkpoint), re-checked.
[[nodiscard]] ResolvedConfig from_resolved_json(const nlohmann::json& values, const std::string& source_name,
                                                const Schema& schema = Schema::standard());

// Gradient accumulation steps a = batch / (ranks x micro_batch); InputError naming the three
// numbers when batch is not a multiple of ranks x micro_batch.
[[nodiscard]] int64_t accumulation_steps(int64_t batch, int64_t micro_batch, int64_t ranks);

}  // namespace crackseg::config
