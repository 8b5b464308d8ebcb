// The run-config schema: known sections and keys with types and defaults. Resolution
// (config.hpp) fills defaults and rejects unknown keys, naming the nearest valid key.
//
// Sections whose keys depend on a choice ([model] keys depend on model.name, [loss] keys on
// loss.name) take a DynamicKeys callback: the model and loss registries return the keys
// valid for the chosen name, so they are checked and defaulted like static keys. Without a
// callback such a section is open (extra keys pass through unchecked).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace crackseg::config {

enum class ValueType { integer, number, boolean, string, int_array, number_array, string_array, any };
[[nodiscard]] const char* to_string(ValueType t);  // "an integer", "a number", ...

struct KeySpec {
  std::string key;                   // leaf name within its section
  ValueType type = ValueType::any;
  nlohmann::json default_value;      // null: required
  std::vector<std::string> choices;  // allowed values of a string key (empty: any)
  std::optional<double> min;         // lower bound of a numeric key (inclusive)
  std::string help;
};

// Given a section's values so far (static keys resolved, e.g. "name"), the further keys it
// may hold. Throw InputError for an unknown name (listing the known ones).
using DynamicKeys = std::function<std::vector<KeySpec>(const nlohmann::json& section)>;

struct SectionSpec {
  std::string name;
  std::vector<KeySpec> keys;
  bool open = false;      // extra keys pass through (unless `dynamic` is set)
  DynamicKeys dynamic;
  std::string help;
};

class Schema {
 public:
  // The stable keys of DESIGN.md "Command line" plus crackseg's own; see schema.cpp.
  [[nodiscard]] static Schema standard();

  SectionSpec& add_section(std::string name, std::string help = {});
  [[nodiscard]] SectionSpec* find(std::string_view section);
  [[nodiscard]] const SectionSpec* find(std::string_view section) const;
  // Installs the model/loss registry callback for an open section.
  void set_dynamic_keys(std::string_view section, DynamicKeys fn);
  [[nodiscard]] const std::vector<SectionSpec>& sections() const { return sections_; }
  // Every static "section.key".
  [[nodiscard]] std::vector<std::string> dotted_keys() const;

 private:
  std::vector<SectionSpec> sections_;
};

// Edit distance of src/core/text.hpp (Levenshtein plus adjacent transposition).
[[nodiscard]] std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `dotted` ("train.lr" -> "optim.lr"): a candidate with the same
// leaf in another section costs that leaf's distance + 2, otherwise the whole name's distance.
// Empty when there are no candidates.
[[nodiscard]] std::string nearest_key(std::string_view dotted, const std::vector<std::string>& candidates);

}  // namespace crackseg::config
