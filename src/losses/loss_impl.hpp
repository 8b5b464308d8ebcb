// Constructors of the concrete losses (internal; users call make_loss).
#pragma once
#include <vector>
#include <memory>

#include "src/losses/loss.hpp"

namespace crackseg::lossimpl {

[[nodiscard]] std::unique_ptr<Loss> make_bce();
// Fixed per-class weights (weighted_bce).
[[nodiscard]] std::unique_ptr<Loss> make_weighted_bce(double w0, double w1);
[[nodiscard]] std::unique_ptr<Loss> make_balanced_bce();
[[nodiscard]] std::unique_ptr<Loss> make_focal(double gamma, double alpha);
[[nodiscard]] std::unique_ptr<Loss> make_pseudo_f1();
[[nodiscard]] std::unique_ptr<Loss> make_dice(double smooth);
[[nodiscard]] std::unique_ptr<Loss> make_bce_dice(double smooth, double bce_weight, double dice_weight);
[[nodiscard]] std::unique_ptr<Loss> make_f1(double eps);
// class_weights: one per class (empty = all 1): pixel loss w_label * CE.
[[nodiscard]] std::unique_ptr<Loss> make_softmax_ce(std::vector<double> class_weights = {});

}  // namespace crackseg::lossimpl
