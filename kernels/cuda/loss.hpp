// The training losses on the device, same formulas and normalisation as src/losses (see
// src/losses/loss.hpp: mean over elements for bce/weighted_bce/balanced_bce/focal, one
// scalar from micro-batch sums for dice/f1, the eq. 11 weights for pseudo_f1, mean over
// pixels for softmax_ce; dlogits = grad_scale * d(loss)/d(logits), written).
//
//   cuda::DeviceLoss loss(cuda::device_loss_spec(cfg["loss"], ctx));  // after make_loss() validated it
//   LossOutput out = loss.forward_backward(logits, target, dlogits);
//
// Per-element math in double; batch sums are reduced per block and then across blocks in a
// fixed order (fixed grid), so results are identical run to run. Returning the scalar loss
// synchronises the stream once per call (the host needs the sums for the gradient weights
// of balanced_bce, dice, f1 and pseudo_f1 anyway).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "src/losses/loss.hpp"
#include "src/tensor/tensor.hpp"

namespace crackseg::cuda {

struct DeviceLossSpec {
  std::string name = "bce";  // as make_loss: bce | weighted_bce | balanced_bce | focal | dice | bce_dice | f1 | pseudo_f1 | softmax_ce
  double w0 = 1.0, w1 = 1.0;  // weighted_bce class weights
  double gamma = 2.0, alpha = 0.25;  // focal
  double smooth = 1.0, bce_weight = 1.0, dice_weight = 1.0;  // dice, bce_dice
  double eps = 1.0;  // f1
};

// Reads the [loss] section with make_loss's defaults. Call make_loss on the same section
// first: it rejects unknown names, keys and values with messages naming them.
[[nodiscard]] DeviceLossSpec device_loss_spec(const nlohmann::json& section, const LossContext& ctx = {});

class DeviceLoss {
 public:
  explicit DeviceLoss(DeviceLossSpec spec);
  [[nodiscard]] const std::string& name() const { return spec_.name; }
  // logits, target, dlogits: f32 cuda tensors; target dims equal logits' (or (N, 1, H, W)
  // class indices for softmax_ce); dlogits same dims and format as logits.
  LossOutput forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits, double grad_scale = 1.0);

 private:
  DeviceLossSpec spec_;
};

// Raw passes (used by DeviceLoss; exposed for tests). Element layout of logits and target
// must coincide (checked by DeviceLoss). `sums` receives K double sums.
enum class SigmoidPass { bce, focal, sum_y, overlap_stats, dice_grad, f1_grad, pseudo_f1_grad };
struct SigmoidPassArgs {
  SigmoidPass pass = SigmoidPass::bce;
  double a = 0, b = 0, c = 0, d = 0, e = 0;  // pass parameters (see losses.cu)
  double scale = 1.0;                       // dlogits = scale * g
};
void sigmoid_loss_pass(const SigmoidPassArgs& args, const float* logits, const float* target, float* dlogits,
                       int64_t count, double* sums, int num_sums);
// Softmax + CE over C channels. Layout: element (n, c, s) at n*sn + c*sc + s*ss for logits;
// the target uses the same strides (probabilities) or (n, s) -> n*S + s (class indices).
// sums = {sum of per-pixel CE, count of invalid class indices}.
struct SoftmaxCeArgs {
  int64_t n = 0, c = 0, s = 0;          // batch, classes, pixels per item
  int64_t sn = 0, sc = 0, ss = 0;       // logits strides
  bool index_target = false;
  double scale = 1.0;                   // dlogits = scale / (N*S) * (softmax - t)
};
void softmax_ce_pass(const SoftmaxCeArgs& args, const float* logits, const float* target, float* dlogits,
                     double* sums);

}  // namespace crackseg::cuda
