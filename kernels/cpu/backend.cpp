// The oneDNN backend (stub until the per-op files land).
#include "src/core/error.hpp"
#include "src/graph/layer.hpp"

namespace crackseg {
std::unique_ptr<Backend> make_onednn_backend() { throw Error("onednn backend: not built yet"); }
}  // namespace crackseg
