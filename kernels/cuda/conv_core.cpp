#include "kernels/cuda/conv_core.hpp"

#include <map>
#include <mutex>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/layer_base.hpp"

namespace crackseg::cuda {

namespace {

std::mutex g_cache_mutex;
std::map<std::string, ConvAlgos>& algo_cache() {
  static std::map<std::string, ConvAlgos> cache;
  return cache;
}

// First acceptable entry of a heuristics list (sorted by expected speed).
template <class Perf>
const Perf* pick(const Perf* perf, int count, std::size_t limit, bool deterministic, bool tf32) {
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > limit) continue;
    if (deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
    // ALLOW_CONVERSION would round fp32 data to fp16: never. Plain tensor ops on fp32 data
    // mean TF32: only when allowed.
    if (p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (!tf32 && p.mathType == CUDNN_TENSOR_OP_MATH) continue;
    return &p;
  }
  return nullptr;
}

}  // namespace

void ConvCore::plan(const Dims& x, const Dims& w, const Dims& y, int64_t padding, int64_t stride, int64_t dilation,
                    const std::string& what) {
  auto& ctx = Context::get();
  if (!x_) {
    x_ = make_tensor_desc();
    y_ = make_tensor_desc();
    w_ = make_filter_desc();
    conv_ = make_conv_desc();
  }
  set_activation_desc(x_.get(), x, what + " x");
  set_activation_desc(y_.get(), y, what + " y");
  CRACKSEG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, to_int(w[0], what),
                                                  to_int(w[1], what), to_int(w[2], what), to_int(w[3], what)));
  const int p = to_int(padding, what), s = to_int(stride, what), d = to_int(dilation, what);
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv_.get(), p, p, s, s, d, d, CUDNN_CROSS_CORRELATION,
                                                       CUDNN_DATA_FLOAT));
  // FMA math forbids TF32: CUDNN_DEFAULT_MATH would still allow it on Ampere and later.
  const bool tf32 = ctx.tf32();
  const bool det = ctx.options().deterministic;
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));

  int on = 0, oc = 0, oh = 0, ow = 0;
  CRACKSEG_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv_.get(), x_.get(), w_.get(), &on, &oc, &oh, &ow));
  if (Dims{on, oc, oh, ow} != y)
    throw Error(what + ": cuDNN computes output " + to_string(Dims{on, oc, oh, ow}) + " for input " + to_string(x) +
                ", the layer expects " + to_string(y));

  const std::size_t limit = ctx.options().conv_workspace_limit;
  const std::string key = to_string(x) + to_string(w) + to_string(y) + "/" + std::to_string(p) + "," +
                          std::to_string(s) + "," + std::to_string(d) + (tf32 ? "/tf32" : "/fma") +
                          (det ? "/det" : "/fast") + "/" + std::to_string(limit) + "/dev" +
                          std::to_string(ctx.device());
  {
    std::lock_guard lock(g_cache_mutex);
    if (auto it = algo_cache().find(key); it != algo_cache().end()) algos_ = it->second;
    else algos_.workspace = ~std::size_t{0};
  }
  if (algos_.workspace == ~std::size_t{0}) {
    cudnnHandle_t h = ctx.cudnn();
    ConvAlgos a;
    // Without TF32 the algorithm runs under FMA math whatever the heuristics reported:
    // CUDNN_DEFAULT_MATH would let cuDNN pick TF32 kernels on Ampere and later.
    auto math_for = [tf32](cudnnMathType_t reported) { return tf32 ? reported : CUDNN_FMA_MATH; };
    auto fail = [&](const char* which) {
      throw Error(what + ": cuDNN offers no " + which + " algorithm for x " + to_string(x) + ", w " + to_string(w) +
                  (det ? " that is deterministic" : "") + " within a " + std::to_string(limit >> 20) +
                  " MiB workspace" + (tf32 ? "" : " without TF32"));
    };
    int n = 0;
    cudnnConvolutionFwdAlgoPerf_t fperf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, x_.get(), w_.get(), conv_.get(), y_.get(),
                                                                CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, fperf));
    const auto* f = pick(fperf, n, limit, det, tf32);
    if (!f) fail("forward");
    a.fwd = f->algo;
    a.fwd_math = math_for(f->mathType);
    cudnnConvolutionBwdDataAlgoPerf_t dperf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
        h, w_.get(), y_.get(), conv_.get(), x_.get(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, dperf));
    const auto* bd = pick(dperf, n, limit, det, tf32);
    if (!bd) fail("backward-data");
    a.bwd_data = bd->algo;
    a.bwd_data_math = math_for(bd->mathType);
    cudnnConvolutionBwdFilterAlgoPerf_t wperf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
        h, x_.get(), y_.get(), conv_.get(), w_.get(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, wperf));
    const auto* bw = pick(wperf, n, limit, det, tf32);
    if (!bw) fail("backward-filter");
    a.bwd_filter = bw->algo;
    a.bwd_filter_math = math_for(bw->mathType);
    // The heuristics' memory estimate can differ from the exact query: ask per algorithm.
    std::size_t ws = 0, need = 0;
    CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), a.fwd_math));
    CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, x_.get(), w_.get(), conv_.get(), y_.get(), a.fwd, &need));
    ws = std::max(ws, need);
    CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), a.bwd_data_math));
    CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, w_.get(), y_.get(), conv_.get(), x_.get(),
                                                                      a.bwd_data, &need));
    ws = std::max(ws, need);
    CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), a.bwd_filter_math));
    CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, x_.get(), y_.get(), conv_.get(), w_.get(),
                                                                        a.bwd_filter, &need));
    a.workspace = std::max(ws, need);
    algos_ = a;
    std::lock_guard lock(g_cache_mutex);
    algo_cache()[key] = a;
  }
  ctx.reserve_workspace(algos_.workspace);
}

void ConvCore::forward(const float* x, const float* w, float* y, float beta) {
  auto& ctx = Context::get();
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), algos_.fwd_math));
  CRACKSEG_CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn(), &kOne, x_.get(), x, w_.get(), w, conv_.get(), algos_.fwd,
                                               ctx.workspace(), ctx.workspace_bytes(), &beta, y_.get(), y));
}

void ConvCore::backward_data(const float* dy, const float* w, float* dx, float beta) {
  auto& ctx = Context::get();
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), algos_.bwd_data_math));
  CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cudnn(), &kOne, w_.get(), w, y_.get(), dy, conv_.get(),
                                                    algos_.bwd_data, ctx.workspace(), ctx.workspace_bytes(), &beta,
                                                    x_.get(), dx));
}

void ConvCore::backward_filter(const float* x, const float* dy, float* dw, float beta) {
  auto& ctx = Context::get();
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), algos_.bwd_filter_math));
  CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn(), &kOne, x_.get(), x, y_.get(), dy, conv_.get(),
                                                      algos_.bwd_filter, ctx.workspace(), ctx.workspace_bytes(), &beta,
                                                      w_.get(), dw));
}

}  // namespace crackseg::cuda
