// Reading one config section (a TOML table converted to nlohmann::json) with errors that name
// the section, the key and the value at fault. Shared by src/losses, src/optim and
// src/metrics; trainsys's config layer may reuse it (it has no dependency beyond the json).
//
//   check_keys(sec, "optim", {"name", "lr", "betas"});   // unknown key -> InputError with the
//                                                         // nearest valid key
//   double lr = json_number(sec, "optim", "lr", 1e-3);   // wrong type -> InputError
#pragma once
#include "src/core/text.hpp"  // edit_distance
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace crackseg {

// Edit distance: insert, delete, substitute and swap of adjacent characters all cost 1.
// The valid name closest to `key` by edit distance (first one on ties); empty when none.
[[nodiscard]] std::string nearest_name(std::string_view key, std::span<const std::string_view> valid);

// Throws InputError "[<section>] unknown key 'gama' (did you mean 'gamma'?)" for the first key of
// `section` not in `valid`; also throws when `section` is neither an object nor null.
void check_keys(const nlohmann::json& section, std::string_view section_name,
                std::initializer_list<std::string_view> valid);
// Throws InputError "[<section>] unknown <what> 'x' (did you mean 'y'?; valid: a, b, c)".
[[noreturn]] void throw_unknown_name(std::string_view section_name, std::string_view what,
                                     std::string_view value, std::span<const std::string_view> valid);

// Typed getters: `def` when the key is absent; InputError naming section, key and the value
// when present with the wrong type. Integers are accepted where a number is expected.
[[nodiscard]] double json_number(const nlohmann::json& s, std::string_view section, const std::string& key,
                                 double def);
[[nodiscard]] int64_t json_int(const nlohmann::json& s, std::string_view section, const std::string& key,
                               int64_t def);
[[nodiscard]] bool json_bool(const nlohmann::json& s, std::string_view section, const std::string& key, bool def);
[[nodiscard]] std::string json_string(const nlohmann::json& s, std::string_view section, const std::string& key,
                                      const std::string& def);
[[nodiscard]] std::vector<double> json_numbers(const nlohmann::json& s, std::string_view section,
                                               const std::string& key, std::vector<double> def);

// InputError "[<section>] <key> = <value>: <why>" for values out of range.
[[noreturn]] void throw_bad_value(std::string_view section, std::string_view key, const std::string& value,
                                  std::string_view why);

}  // namespace crackseg
