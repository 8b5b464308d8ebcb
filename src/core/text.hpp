// Small text helpers shared by every "did you mean ...?" message (config keys, model names
// and keys, loss/optimizer keys).
#pragma once
#include <cstddef>
#include <string_view>

namespace crackseg {

// Optimal string alignment distance: Levenshtein (insert, delete, substitute: 1 each) plus
// adjacent transposition as 1 ("dcie" -> "dice"), the commonest typo in a key.
[[nodiscard]] std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace crackseg
