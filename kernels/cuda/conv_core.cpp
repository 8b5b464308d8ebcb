#include "kernels/cuda/conv_core.hpp"

#include <map>
#include <mutex>

#include "kernels/cuda/bf16_ops.hpp"
#include "kernels/cuda/context.hpp"
#include "kernels/cuda/cudnn_numerics.hpp"
#include "kernels/cuda/layer_base.hpp"

namespace crackseg::cuda {

namespace {

std::mutex g_cache_mutex;
std::map<std::string, ConvAlgos>& algo_cache() {
  static std::map<std::string, ConvAlgos> cache;
  return cache;
}

// First acceptable entry of a heuristics list (sorted by expected speed): precision.hpp's
// algo_acceptable.
template <class Perf>
const Perf* pick(const Perf* perf, int count, std::size_t limit, bool deterministic, ConvPrecision prec) {
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[i];
    if (algo_acceptable(prec, p.status == CUDNN_STATUS_SUCCESS, p.memory, limit, deterministic,
                        p.determinism == CUDNN_DETERMINISTIC, from_cudnn(p.mathType)))
      return &p;
  }
  return nullptr;
}

int64_t count_of(const Dims& d) {
  int64_t n = 1;
  for (int64_t v : d) n *= v;
  return n;
}

}  // namespace

void ConvCore::plan(const Dims& x, const Dims& w, const Dims& y, int64_t padding, int64_t stride, int64_t dilation,
                    KeptOperand kept, const std::string& what) {
  auto& ctx = Context::get();
  if (!x_) {
    x_ = make_tensor_desc();
    y_ = make_tensor_desc();
    xc_ = make_tensor_desc();
    yc_ = make_tensor_desc();
    w_ = make_filter_desc();
    conv_ = make_conv_desc();
  }
  kept_ = kept;
  count_x_ = count_of(x), count_w_ = count_of(w), count_y_ = count_of(y);
  const ConvPrecision want = ctx.conv_precision();
  // bf16 where cuDNN has an algorithm for every pass on bf16 operands; a geometry without
  // one stays fp32, as on the CPU (counted in Context::bf16_fallbacks, shown by
  // precision_summary).
  bool fell_back = false;
  if (want == ConvPrecision::bf16) {
    try {
      configure(ConvPrecision::bf16, x, w, y, padding, stride, dilation, what);
    } catch (const Error&) {
      fell_back = true;
    }
  }
  if (want != ConvPrecision::bf16 || fell_back)
    configure(fell_back ? ConvPrecision::fp32 : want, x, w, y, padding, stride, dilation, what);
  if (want == ConvPrecision::bf16 && !counted_) {
    counted_ = true;
    (fell_back ? ctx.bf16_fallbacks : ctx.bf16_layers) += 1;
  }
  if (bf16()) {  // bf16 buffers: once here, never per step
    const Bf16ConvBuffers b = bf16_conv_buffers(x, w, y, kept);
    kept_lp_.reserve(b.kept);
    if (b.weights > w_lp_.bytes()) w_lp_valid_ = false;
    w_lp_.reserve(b.weights);
    ctx.reserve_bf16(b.in, b.out);
  }
  ctx.reserve_workspace(algos_.workspace);
}

void ConvCore::configure(ConvPrecision prec, const Dims& x, const Dims& w, const Dims& y, int64_t padding,
                         int64_t stride, int64_t dilation, const std::string& what) {
  auto& ctx = Context::get();
  if (prec != precision_) w_lp_valid_ = false;
  precision_ = prec;
  // The three passes take the same types (precision.hpp conv_numerics); the math type is
  // set per pass below.
  const CudnnPassConfig cfg = cudnn_config(prec, ConvPass::forward, CUDNN_TENSOR_OP_MATH);
  const cudnnDataType_t operand = cfg.tensors;
  set_activation_desc(x_.get(), x, what + " x");
  set_activation_desc(y_.get(), y, what + " y");
  set_activation_desc(xc_.get(), x, what + " x", operand);
  set_activation_desc(yc_.get(), y, what + " y", operand);
  CRACKSEG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w_.get(), cfg.filter, CUDNN_TENSOR_NHWC, to_int(w[0], what),
                                                  to_int(w[1], what), to_int(w[2], what), to_int(w[3], what)));
  const int p = to_int(padding, what), s = to_int(stride, what), d = to_int(dilation, what);
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv_.get(), p, p, s, s, d, d, CUDNN_CROSS_CORRELATION,
                                                       cfg.compute));
  const bool det = ctx.options().deterministic;
  // FMA math forbids TF32: CUDNN_DEFAULT_MATH would still allow it on Ampere and later.
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), cfg.math));

  int on = 0, oc = 0, oh = 0, ow = 0;
  CRACKSEG_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv_.get(), xc_.get(), w_.get(), &on, &oc, &oh, &ow));
  if (Dims{on, oc, oh, ow} != y)
    throw Error(what + ": cuDNN computes output " + to_string(Dims{on, oc, oh, ow}) + " for input " + to_string(x) +
                ", the layer expects " + to_string(y));

  const std::size_t limit = ctx.options().conv_workspace_limit;
  const std::string key = to_string(x) + to_string(w) + to_string(y) + "/" + std::to_string(p) + "," +
                          std::to_string(s) + "," + std::to_string(d) + "/" + precision_name(prec) +
                          (det ? "/det" : "/fast") + "/" + std::to_string(limit) + "/dev" +
                          std::to_string(ctx.device());
  {
    std::lock_guard lock(g_cache_mutex);
    if (auto it = algo_cache().find(key); it != algo_cache().end()) {
      algos_ = it->second;
      return;
    }
  }
  cudnnHandle_t h = ctx.cudnn();
  ConvAlgos a;
  // fp32: FMA whatever the heuristics reported (CUDNN_DEFAULT_MATH would let cuDNN pick
  // TF32 kernels on Ampere and later); tf32: as reported; bf16: tensor-op math.
  auto math_of = [prec](ConvPass pass, cudnnMathType_t reported) { return cudnn_config(prec, pass, reported).math; };
  auto fail = [&](const char* which) {
    throw Error(what + ": cuDNN offers no " + which + " algorithm for x " + to_string(x) + ", w " + to_string(w) +
                (det ? " that is deterministic" : "") + " within a " + std::to_string(limit >> 20) +
                " MiB workspace" +
                (prec == ConvPrecision::fp32   ? " without TF32"
                 : prec == ConvPrecision::bf16 ? " on bf16 operands"
                                               : ""));
  };
  int n = 0;
  cudnnConvolutionFwdAlgoPerf_t fperf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, xc_.get(), w_.get(), conv_.get(), yc_.get(),
                                                              CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, fperf));
  const auto* f = pick(fperf, n, limit, det, prec);
  if (!f) fail("forward");
  a.fwd = f->algo;
  a.fwd_math = math_of(ConvPass::forward, f->mathType);
  cudnnConvolutionBwdDataAlgoPerf_t dperf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
      h, w_.get(), yc_.get(), conv_.get(), xc_.get(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, dperf));
  const auto* bd = pick(dperf, n, limit, det, prec);
  if (!bd) fail("backward-data");
  a.bwd_data = bd->algo;
  a.bwd_data_math = math_of(ConvPass::backward_data, bd->mathType);
  cudnnConvolutionBwdFilterAlgoPerf_t wperf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
      h, xc_.get(), yc_.get(), conv_.get(), w_.get(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, wperf));
  const auto* bw = pick(wperf, n, limit, det, prec);
  if (!bw) fail("backward-filter");
  a.bwd_filter = bw->algo;
  a.bwd_filter_math = math_of(ConvPass::backward_filter, bw->mathType);
  // The heuristics' memory estimate can differ from the exact query: ask per algorithm.
  std::size_t ws = 0, need = 0;
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), a.fwd_math));
  CRACKSEG_CUDNN_CHECK(
      cudnnGetConvolutionForwardWorkspaceSize(h, xc_.get(), w_.get(), conv_.get(), yc_.get(), a.fwd, &need));
  ws = std::max(ws, need);
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), a.bwd_data_math));
  CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, w_.get(), yc_.get(), conv_.get(), xc_.get(),
                                                                    a.bwd_data, &need));
  ws = std::max(ws, need);
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), a.bwd_filter_math));
  CRACKSEG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, xc_.get(), yc_.get(), conv_.get(), w_.get(),
                                                                      a.bwd_filter, &need));
  a.workspace = std::max(ws, need);
  algos_ = a;
  std::lock_guard lock(g_cache_mutex);
  algo_cache()[key] = a;
}

void ConvCore::weights_changed(const float* w) {
  if (!bf16()) return;
  round_to_bf16(w, w_lp_.as<uint16_t>(), count_w_);
  w_lp_valid_ = true;
}

const void* ConvCore::bf16_weights(const float* w) {
  if (!w_lp_valid_) weights_changed(w);  // re-planned into bf16 since the last parameter change
  return w_lp_.get();
}

const uint16_t* ConvCore::bf16_operand(const float* src, KeptOperand role, int64_t count) {
  auto& ctx = Context::get();
  if (role == kept_) {  // the layer's input: this layer's own copy
    round_to_bf16(src, kept_lp_.as<uint16_t>(), count);
    return kept_lp_.as<uint16_t>();
  }
  if (!ctx.bf16_in_holds(this, src)) {
    round_to_bf16(src, ctx.bf16_in(), count);
    ctx.set_bf16_in_source(this, src);
  }
  return ctx.bf16_in();
}

void ConvCore::forward(const float* x, const float* w, float* y, float beta) {
  auto& ctx = Context::get();
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), algos_.fwd_math));
  if (!bf16()) {
    CRACKSEG_CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn(), &kOne, x_.get(), x, w_.get(), w, conv_.get(),
                                                 algos_.fwd, ctx.workspace(), ctx.workspace_bytes(), &beta, y_.get(),
                                                 y));
    return;
  }
  const uint16_t* xb = bf16_operand(x, KeptOperand::x, count_x_);
  CRACKSEG_CUDNN_CHECK(cudnnConvolutionForward(ctx.cudnn(), &kOne, xc_.get(), xb, w_.get(), bf16_weights(w), conv_.get(),
                                               algos_.fwd, ctx.workspace(), ctx.workspace_bytes(), &kZero, yc_.get(),
                                               ctx.bf16_out()));
  widen_bf16(ctx.bf16_out(), y, count_y_, beta);
}

void ConvCore::backward_data(const float* dy, const float* w, float* dx, float beta) {
  auto& ctx = Context::get();
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), algos_.bwd_data_math));
  if (!bf16()) {
    CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cudnn(), &kOne, w_.get(), w, y_.get(), dy, conv_.get(),
                                                      algos_.bwd_data, ctx.workspace(), ctx.workspace_bytes(), &beta,
                                                      x_.get(), dx));
    return;
  }
  const uint16_t* dyb = bf16_operand(dy, KeptOperand::dy, count_y_);
  CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardData(ctx.cudnn(), &kOne, w_.get(), bf16_weights(w), yc_.get(), dyb,
                                                    conv_.get(), algos_.bwd_data, ctx.workspace(),
                                                    ctx.workspace_bytes(), &kZero, xc_.get(), ctx.bf16_out()));
  widen_bf16(ctx.bf16_out(), dx, count_x_, beta);
}

void ConvCore::backward_filter(const float* x, const float* dy, float* dw, float beta) {
  auto& ctx = Context::get();
  CRACKSEG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv_.get(), algos_.bwd_filter_math));
  if (!bf16()) {
    CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn(), &kOne, x_.get(), x, y_.get(), dy, conv_.get(),
                                                        algos_.bwd_filter, ctx.workspace(), ctx.workspace_bytes(),
                                                        &beta, w_.get(), dw));
    return;
  }
  // The kept operand was rounded by this step's forward; the other one may still be in the
  // shared buffer from this layer's data gradient just before (same source pointer).
  const uint16_t* xb = kept_ == KeptOperand::x ? kept_lp_.as<uint16_t>() : bf16_operand(x, KeptOperand::x, count_x_);
  const uint16_t* dyb =
      kept_ == KeptOperand::dy ? kept_lp_.as<uint16_t>() : bf16_operand(dy, KeptOperand::dy, count_y_);
  CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn(), &kOne, xc_.get(), xb, yc_.get(), dyb, conv_.get(),
                                                      algos_.bwd_filter, ctx.workspace(), ctx.workspace_bytes(),
                                                      &kZero, w_.get(), ctx.bf16_out()));
  widen_bf16(ctx.bf16_out(), dw, count_w_, beta);
  // The layer's backward ends here: a later step's source at the same address is new data.
  ctx.set_bf16_in_source(nullptr, nullptr);
}

}  // namespace crackseg::cuda
