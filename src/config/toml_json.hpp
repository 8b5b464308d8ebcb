// TOML -> JSON conversion. Configs are parsed with toml11 and held as nlohmann::json from
// then on, so the resolved config, result.json, checkpoints and the sweep manifest share
// one representation. Integers stay int64, floats double; dates and times become strings
// (TOML's own spelling) since no crackseg key is a date.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace crackseg::config {

// Parses a TOML document; syntax errors become InputError naming `source_name` and carrying
// toml11's located message.
[[nodiscard]] nlohmann::json parse_toml(std::string_view text, const std::string& source_name);
// Reads and parses a file; a missing or unreadable file is an InputError naming it.
[[nodiscard]] nlohmann::json load_toml_file(const std::filesystem::path& path);

// The value half of a `key=value` override, read as a TOML value: 3 -> int, 1e-4 -> float,
// true -> bool, "x" or 'x' -> string, [1, 2] -> array, {a = 1} -> object. Anything that is
// not a TOML value (bare words: bitwise, synth.h5, 1-2-3) is taken as the literal string.
[[nodiscard]] nlohmann::json parse_override_value(std::string_view text);

}  // namespace crackseg::config
