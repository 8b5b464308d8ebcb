// Canonical JSON and a stable config hash, header-only so code that does not link the config
// library (crackseg_slurm, the CUDA backend) can compute the same hash as `crackseg train`.
// (The sweep manifest's "hash" is the planner's own task identity, not this hash.)
//
// Canonical form: nlohmann::json's compact dump. Objects are std::map, so keys come out sorted
// whatever order the TOML file or overrides used; integers print as integers and floats with
// the shortest round-trip spelling (1.0 stays "1.0", distinct from 1). The hash is FNV-1a 64
// over those bytes, as 16 lowercase hex digits: not cryptographic, only an identity for runs
// and sweep tasks (a collision among a sweep's few thousand configs has odds ~1e-12).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace crackseg::config {

[[nodiscard]] inline std::string canonical_json(const nlohmann::json& j) { return j.dump(); }

[[nodiscard]] inline uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

[[nodiscard]] inline std::string hex16(uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<std::size_t>(i)] = digits[v & 0xf];
  return out;
}

[[nodiscard]] inline std::string config_hash(const nlohmann::json& resolved) {
  return hex16(fnv1a64(canonical_json(resolved)));
}

}  // namespace crackseg::config
