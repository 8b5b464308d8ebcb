// Training losses: one interface, built from the [loss] config section.
//
//   auto loss = make_loss(cfg["loss"], LossContext{.crack_fraction = 0.04});
//   LossOutput out = loss->forward_backward(logits, target, dlogits);   // writes dlogits
//
// Tensors (CPU, f32):
//   logits   (N, 1, H, W) for the sigmoid losses, (N, C>=2, H, W) for softmax_ce, or any
//            other shape for the elementwise losses (the patch CNN's (N, K) outputs).
//   target   float, same dims as logits, values in [0, 1] (0/1 masks; soft labels work for
//            every loss). softmax_ce also takes (N, 1, H, W) class indices 0..C-1.
//            uint8 masks are not accepted: the data loader converts once per batch.
//   dlogits  same dims AND format as logits (checked); written, never accumulated.
// Memory formats: logits/dlogits may be nchw, nhwc or plain. When target has the same layout
// (same format, or formats that coincide for these dims: plain == nchw, and every format is
// the same layout when C == 1) the kernels iterate flat; otherwise each logits element is
// mapped to the target element through Tensor::offset-style strides (slower, still exact).
//
// Normalisation (what the trainer relies on): LossOutput::loss is the loss of this micro-batch
// and dlogits = grad_scale * d(loss)/d(logits).
//  - bce, weighted_bce, balanced_bce, focal: loss = mean over all N*C*H*W elements.
//  - softmax_ce: loss = mean over the N*H*W pixels of the per-pixel cross-entropy.
//  - dice, f1: loss = one scalar from statistics summed over the whole micro-batch (no mean).
//  - bce_dice = bce_weight * bce + dice_weight * dice.
//  - pseudo_f1: no loss behind the gradient (Kobayashi eq. 11): loss = the BCE mean for logs,
//    and dlogits carries the eq. 11 weights, which are already ~1/N1 in scale (no extra 1/M).
// The trainer sums dlogits-driven gradients over micro-batches and ranks and divides by the
// number of micro-batches, so every micro-batch gradient is a per-micro-batch value as above.
//
// Numerics: all per-element math in double with log-sigmoid via softplus (stable for any
// logit; +-50 and beyond give finite values); batch sums are deterministic in the thread count
// (src/losses/parallel.hpp). LossOutput never holds NaN for finite inputs.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace crackseg {

struct LossOutput {
  double loss = 0.0;  // NaN-free; for pseudo_f1 the BCE value
  std::map<std::string, double> extra;  // e.g. "bce", "dice", "f1"
};

struct LossContext {
  // Crack-pixel fraction of the training split (the HDF5 attribute); weighted_bce needs it.
  // Negative means unknown (weighted_bce then requires `crack_fraction` in [loss]).
  double crack_fraction = -1.0;
};

class Loss {
 public:
  virtual ~Loss() = default;
  Loss() = default;
  Loss(const Loss&) = delete;
  Loss& operator=(const Loss&) = delete;

  [[nodiscard]] virtual std::string name() const = 0;
  // Checks devices, dtypes, dims and formats (throws naming both shapes), then computes.
  LossOutput forward_backward(const Tensor& logits, const Tensor& target, Tensor& dlogits,
                              double grad_scale = 1.0);

 protected:
  // Called with validated arguments: logits/dlogits f32 CPU same dims and format; target f32
  // CPU, dims equal to logits' (or (N,1,H,W) class indices for softmax_ce).
  virtual LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double grad_scale) = 0;
  // Whether a (N, 1, ...) class-index target is allowed for a (N, C, ...) logits tensor.
  [[nodiscard]] virtual bool accepts_class_index_target() const { return false; }
};

// Builds the loss named by section["name"] (default "bce"). Unknown names or keys ->
// InputError naming the nearest valid one. Keys per loss:
//   bce:           (none)
//   weighted_bce:  crack_fraction (default: LossContext's). Weights w1 = 1/(2f) for crack and
//                  w0 = 1/(2(1-f)) for background (sklearn's "balanced" class weights: the
//                  weights average to 1 over the training split), loss_i = -(w1 y log p +
//                  w0 (1-y) log(1-p)).
//   balanced_bce:  the same formula with f = sum(y)/M of the current micro-batch (M elements);
//                  a micro-batch with only one class present uses w0 = w1 = 1 (plain BCE).
//   focal:         gamma (2), alpha (0.25; weight of the crack class, 1-alpha for background
//                  as in Lin et al.; alpha < 0 disables class weighting).
//   dice:          smooth (1): loss = 1 - (2 sum(p y) + smooth) / (sum(p) + sum(y) + smooth).
//   bce_dice:      smooth, bce_weight (1), dice_weight (1).
//   f1:            eps (1): F1 = (2 TP + eps) / (2 TP + FP + FN + eps) with TP = sum(p y),
//                  FP = sum(p (1-y)), FN = sum((1-p) y) over the micro-batch; loss = -log F1.
//   pseudo_f1:     (none): dlogits_i = (p_i - 1) * w1 for crack pixels, p_i * w0 for
//                  background, w1 = 1/sum_pos(p) - 1/(N1 + sum(p)), w0 = 1/(N1 + sum(p)),
//                  N1 = sum(y); soft targets mix both terms linearly. sum_pos(p) is floored at
//                  1e-30 so the weights stay finite. extra: bce, f1 (eq. 6 without eps).
//   softmax_ce:    class_weights ([w_0, .., w_{C-1}], or "balanced" = weighted_bce's w0, w1 from
//                  the training split's crack fraction; default all 1): pixel loss = w_label x
//                  cross-entropy (soft targets: sum_c w_c t_c (lse - z_c)). Crack pixels are
//                  rare: without weights a 2-class model can settle on all-background.
[[nodiscard]] std::unique_ptr<Loss> make_loss(const nlohmann::json& loss_section, const LossContext& ctx = {});

// Names make_loss accepts.
[[nodiscard]] const std::vector<std::string_view>& loss_names();

}  // namespace crackseg
