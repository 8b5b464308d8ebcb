// The oneDNN CPU backend: nhwc activations, one engine + stream per backend instance,
// threads from oneDNN's OpenMP runtime (OMP_NUM_THREADS).
#include <cstdlib>
#include <string>

#include "kernels/cpu/dnnl_common.hpp"
#include "src/core/error.hpp"

namespace crackseg {

namespace {
template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

class OnednnBackend final : public Backend {
 public:
  OnednnBackend() : ctx_(std::make_shared<onednn::Context>()) {}
  std::string name() const override { return "onednn"; }
  Device device() const override { return Device::cpu; }
  Format activation_format() const override { return Format::nhwc; }
  void set_precision(const std::string& precision) override {
    if (precision == "fp32") {
      ctx_->bf16 = false;
    } else if (precision == "bf16") {
      if (const std::string missing = onednn::missing_bf16_isa(); !missing.empty())
        throw InputError("train.precision = \"bf16\" needs a CPU with AVX512-BF16 (or AMX) for oneDNN's bf16 "
                         "convolutions; " + missing);
      ctx_->bf16 = true;
    } else {
      throw InputError("train.precision = \"" + precision + "\": the onednn (CPU) backend computes in fp32 or bf16 (" +
                       (precision == "tf32" ? "tf32 is a CUDA tensor-core mode" : "unknown value") + ")");
    }
  }
  void set_conv_algorithm(const std::string& algorithm) override {
    if (algorithm != "direct" && algorithm != "winograd")
      throw InputError("train.conv_algorithm = \"" + algorithm + "\": the onednn backend knows direct and winograd");
    ctx_->winograd = algorithm == "winograd";
  }
  std::string precision_summary() const override {
    // The A/B switch changes the transposed convolutions' summation order: recorded with it.
    std::string convt = onednn::convt_phases_enabled()
                            ? ""
                            : "; transposed convolutions on oneDNN deconvolution (CRACKSEG_CONVT_PHASES=0)";
    if (ctx_->winograd)
      convt += "; Winograd F(4x4, 3x3) for " + std::to_string(ctx_->wino_layers) + " convolutions (" +
               std::to_string(ctx_->wino_fallbacks) + " 3x3 stride-1 ones run direct: no Winograd kernel, or too small to gain)";
    if (!ctx_->blocked_wgrad_layers.empty())  // CPUs without AVX-512 (conv_impl.hpp): another kernel, other bits
      convt += "; weight gradients of " + std::to_string(ctx_->blocked_wgrad_layers.size()) +
               " convolutions on oneDNN's blocked layout (no AVX-512)";
    if (!ctx_->small_wgrad_layers.empty())
      convt += "; weight gradients of " + std::to_string(ctx_->small_wgrad_layers.size()) +
               " convolutions on our own AVX2 kernel (no AVX-512)";
    if (!ctx_->jit_fwd_layers.empty())  // dnnl_common.hpp: another kernel than oneDNN's first choice
      convt += "; forward of " + std::to_string(ctx_->jit_fwd_layers.size()) +
               " convolutions on oneDNN's jit:avx512_core kernel, not brgconv (few input channels, small maps)";
    if (!ctx_->bf16) return "fp32" + convt;
    const std::string acts =
        ctx_->bf16_outputs.empty() && ctx_->bf16_dins.empty()
            ? ""
            : "; " + std::to_string(ctx_->bf16_outputs.size()) + " activations and " +
                  std::to_string(ctx_->bf16_dins.size()) + " gradients stored as bf16";
    if (!ctx_->amx_wgrad_layers.empty())  // amx_wgrad.hpp: another summation order than oneDNN's
      convt += "; weight gradients of " + std::to_string(ctx_->amx_wgrad_layers.size()) +
               " convolutions on our own AMX kernel";
    if (!ctx_->amx_wgrad_skipped.empty())  // dnnl_common.hpp: another kernel than oneDNN's first choice
      convt += "; weight gradients of " + std::to_string(ctx_->amx_wgrad_skipped.size()) +
               " convolutions on oneDNN's AVX512-BF16 kernel, not its AMX one (out-of-bounds writes in oneDNN 2.6)";
    const std::string narrow = ctx_->bf16_narrow_fp32.empty()
                                   ? ""
                                   : "; " + std::to_string(ctx_->bf16_narrow_fp32.size()) + " with fewer than " +
                                         std::to_string(onednn::kBf16MinIn) + " input channels run fp32";
    return "bf16 (" + std::to_string(ctx_->bf16_layers) + " convolutions; " + std::to_string(ctx_->bf16_fallbacks) +
           " without a bf16 kernel stay fp32" + narrow + acts + ")" + convt;
  }
  std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& name) override {
    using namespace onednn;
    auto c = ctx_;
    return std::visit(overloaded{
                          [&](const Conv2dSpec&) { return make_conv2d(spec, name, c); },
                          [&](const ConvTranspose2dSpec&) { return make_conv_transpose2d(spec, name, c); },
                          [&](const MaxPool2dSpec&) { return make_maxpool2d(spec, name, c); },
                          [&](const BatchNorm2dSpec&) { return make_batchnorm2d(spec, name, c); },
                          [&](const ReluSpec&) { return make_eltwise(spec, name, c); },
                          [&](const LeakyReluSpec&) { return make_eltwise(spec, name, c); },
                          [&](const SigmoidSpec&) { return make_eltwise(spec, name, c); },
                          [&](const SoftmaxSpec&) { return make_softmax(spec, name, c); },
                          [&](const DropoutSpec&) { return make_dropout(spec, name, c); },
                          [&](const LinearSpec&) { return make_linear(spec, name, c); },
                          [&](const FlattenSpec&) { return make_flatten(spec, name, c); },
                          [&](const ConcatSpec&) { return make_concat(spec, name, c); },
                          [&](const AddSpec&) { return make_add(spec, name, c); },
                      },
                      spec);
  }

 private:
  std::shared_ptr<onednn::Context> ctx_;
};
}  // namespace

std::unique_ptr<Backend> make_onednn_backend() {
  try {
    return std::make_unique<OnednnBackend>();
  } catch (const dnnl::error& e) {
    detail::rethrow_dnnl(e, "dnnl::engine(cpu, 0) / dnnl::stream");
  }
}

}  // namespace crackseg

namespace crackseg::onednn {
std::string missing_bf16_isa() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  constexpr auto bf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
  if ((isa & bf16) == bf16) return "";
  const char* name = "an older instruction set";
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_vnni: name = "AVX512-VNNI without AVX512-BF16"; break;
    case dnnl::cpu_isa::avx512_core: name = "AVX-512 without AVX512-BF16"; break;
    case dnnl::cpu_isa::avx2_vnni: name = "AVX2-VNNI"; break;
    case dnnl::cpu_isa::avx2: name = "AVX2"; break;
    case dnnl::cpu_isa::avx: name = "AVX"; break;
    case dnnl::cpu_isa::sse41: name = "SSE4.1"; break;
    default: break;
  }
  std::string out = std::string("oneDNN's best instruction set here is ") + name;
  if (const char* lim = std::getenv("ONEDNN_MAX_CPU_ISA") ? std::getenv("ONEDNN_MAX_CPU_ISA") : std::getenv("DNNL_MAX_CPU_ISA"))
    out += std::string(" (limited by the environment: MAX_CPU_ISA=") + lim + ")";
  return out;
}
}  // namespace crackseg::onednn
