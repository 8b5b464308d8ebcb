// The `crackseg` command: one binary, subcommands registered from launch/commands/.
// Errors become exit codes here and nowhere else.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>

#include "launch/command.hpp"
#ifdef CRACKSEG_HAVE_CUDA
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/train_kit.hpp"
#endif
#include "src/core/error.hpp"
#include "src/core/runtime.hpp"

namespace crackseg::cli {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace crackseg::cli

int main(int argc, char** argv) {
  using namespace crackseg;
#ifdef CRACKSEG_HAVE_CUDA
  cuda::register_cuda_backend();   // make_backend("cuda") (crackseg_cuda links after crackseg_nn)
  cuda::register_cuda_training();  // train.device = "cuda": device loss, optimizer, NCCL sync
#endif
  CLI::App app{"crackseg: data-parallel crack segmentation training on HPC clusters"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("crackseg ") + CRACKSEG_VERSION_STRING);
  auto& reg = cli::registry();
  std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, const cli::Command*>> subs;
  for (const auto& c : reg) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    c.setup(*sub);
    subs.emplace_back(sub, &c);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? cli::kOk : cli::kBadInput;
  }
  const cli::Command* chosen = nullptr;
  for (auto& [sub, c] : subs)
    if (sub->parsed()) chosen = c;
  try {
    std::unique_ptr<Runtime> runtime;
    runtime = std::make_unique<Runtime>(&argc, &argv, chosen->needs_mpi);
    return chosen->run();
  } catch (const InputError& e) {
    std::fprintf(stderr, "crackseg %s: error: %s\n", chosen->name.c_str(), e.what());
    return cli::kBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crackseg %s: error: %s\n", chosen->name.c_str(), e.what());
    return cli::kError;
  }
}
