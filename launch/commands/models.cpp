// `crackseg models`: the model families with their parameters, parameter counts, input-size
// rules and output kinds. Specs only: nothing is allocated, so it answers instantly.
//
//   crackseg models                          DESIGN.md's reference configurations
//   crackseg models unet base=32 depth=5     one configuration (same keys as [model])
//   crackseg models --json                   machine-readable
#include <cstdio>
#include <string>
#include <vector>

#include "launch/command.hpp"
#include "src/core/error.hpp"
#include "src/models/model.hpp"

namespace {

struct Opts {
  std::vector<std::string> args;  // NAME key=value ...
  bool json = false;
  int64_t size = 0;
} opts;

// "key=value": the value as JSON when it parses as such (16, 0.25, [1,2]), else as a string.
nlohmann::json parse_value(const std::string& text) {
  auto v = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return v.is_discarded() ? nlohmann::json(text) : v;
}

std::vector<nlohmann::json> requested_configs() {
  if (opts.args.empty()) return crackseg::reference_configs();
  nlohmann::json section = {{"name", opts.args[0]}};
  for (std::size_t i = 1; i < opts.args.size(); ++i) {
    const auto& a = opts.args[i];
    const auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      throw crackseg::InputError("expected key=value after the model name, got '" + a + "'");
    std::string key = a.substr(0, eq);
    if (key.rfind("model.", 0) == 0) key = key.substr(6);
    section[key] = parse_value(a.substr(eq + 1));
  }
  return {section};
}

std::string with_commas(int64_t n) {
  std::string s = std::to_string(n), out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

int run() {
  using namespace crackseg;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& section : requested_configs()) {
    auto m = build_model(section);
    const int64_t size = opts.size > 0 ? opts.size : m->default_input_size();
    const Dims in = {1, m->in_channels, size, size};
    const Dims out = m->output_dims(1, size, size);
    rows.push_back({{"name", m->name},
                    {"config", m->config},
                    {"summary", m->summary()},
                    {"params", m->graph.num_params()},
                    {"input_rule", m->size_rule.describe()},
                    {"input", in},
                    {"output_kind", to_string(m->output)},
                    {"output", out},
                    {"forward_gmacs_per_sample", m->graph.forward_macs_per_sample({m->in_channels, size, size}) / 1e9}});
  }
  if (opts.json) {
    std::printf("%s\n", rows.dump(2).c_str());
    return cli::kOk;
  }
  // Rows are all built before printing so that a bad configuration prints only the error.
  std::printf("%-15s %-62s %13s  %-38s %s\n", "model", "parameters", "param count", "input sizes (H and W)",
              "input -> output");
  for (const auto& r : rows) {
    std::printf("%-15s %-62s %13s  %-38s %s -> %s %s\n", r["name"].get<std::string>().c_str(),
                r["summary"].get<std::string>().c_str(), with_commas(r["params"].get<int64_t>()).c_str(),
                r["input_rule"].get<std::string>().c_str(), to_string(r["input"].get<Dims>()).c_str(),
                r["output_kind"].get<std::string>().c_str(), to_string(r["output"].get<Dims>()).c_str());
  }
  return cli::kOk;
}

crackseg::cli::CommandRegistration reg{{
    .name = "models",
    .help = "list the model families: parameters, parameter counts, input sizes, outputs",
    .setup =
        [](CLI::App& app) {
          app.add_option("model", opts.args,
                         "a model name and key=value parameters (default: DESIGN.md's reference configurations)");
          app.add_flag("--json", opts.json, "print a JSON array instead of a table");
          app.add_option("--size", opts.size, "input side for the shape column (default: a typical legal size)")
              ->check(CLI::PositiveNumber);
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
