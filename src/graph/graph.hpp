// A model is a small DAG of layer specs built in code (src/models). The Graph instantiates
// the specs on a Backend, initialises parameters (seeded), plans memory once per input shape,
// runs forward in topological order and backward in reverse, summing gradients where a
// node's output feeds several consumers.
//
//   Graph g;
//   NodeId x = g.input();                                   // the image (N, 3, H, W)
//   NodeId c = g.add("enc1.conv1", Conv2dSpec{3, 16, 3, 1, 1}, {x});
//   NodeId r = g.add("enc1.relu1", ReluSpec{}, {c});
//   g.set_output(r);
//   g.instantiate(backend, /*init_seed=*/126);
//   const Tensor& y = g.forward(ctx, image);                // image: any format, f32
//   g.backward(ctx, dy);                                    // dy: dims of y
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "src/graph/layer.hpp"

namespace crackseg {

using NodeId = int32_t;

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(Graph&&) noexcept;
  Graph& operator=(Graph&&) noexcept;

  // ---- building (specs only; cheap, no weights) ----
  NodeId input();
  NodeId add(std::string name, LayerSpec spec, std::vector<NodeId> inputs);
  void set_output(NodeId node);
  [[nodiscard]] int64_t num_params() const;  // from specs
  [[nodiscard]] int64_t num_nodes() const;
  // Forward multiply-adds per sample for an input of (C, H, W) (shape inference over specs).
  [[nodiscard]] double forward_macs_per_sample(const Dims& chw) const;
  // Output dims for input dims (N, C, H, W), by shape inference over the specs.
  [[nodiscard]] Dims output_dims(const Dims& in) const;

  // ---- running ----
  void instantiate(Backend& backend, uint64_t init_seed);
  [[nodiscard]] bool instantiated() const;
  // The backend given to instantiate() (nullptr before); inference helpers build their own
  // graphs on it (src/train/patch_dense.cpp).
  [[nodiscard]] Backend* backend() const;
  const Tensor& forward(const StepContext& ctx, const Tensor& input);
  // dout: gradient of the loss w.r.t. the output, same dims as forward's result.
  void backward(const StepContext& ctx, const Tensor& dout);
  // All parameters in a fixed order (node order, then the layer's order).
  [[nodiscard]] std::vector<Param*> params();
  [[nodiscard]] std::vector<std::pair<std::string, Tensor*>> buffers();
  void zero_grad();
  // Batchnorm running statistics (Layer::batch_stats_size and friends) of every layer, in node
  // order: a training forward records its batch statistics; with deferral on it leaves the
  // running buffers alone and the trainer applies the step's micro-batches in global order.
  void defer_running_stats(bool defer);
  [[nodiscard]] std::size_t batch_stats_size() const;
  void read_batch_stats(std::span<float> dst) const;  // dst: batch_stats_size() floats
  void apply_batch_stats(std::span<const float> src);

  // ---- additions ----
  // Conv -> ReLU/LeakyReLU fusion (oneDNN post-ops) is on by default; call before
  // instantiate to turn it off (tests compare both; the result is the same).
  void set_fusion(bool enabled);
  // Parameter values were changed through pointers obtained earlier (e.g. an optimizer that
  // keeps Param* across steps and updates them without a backward in between). backward()
  // and params() already imply it; layers then refresh derived weight copies before the
  // next forward.
  void mark_params_changed();
  // Per-node wall-clock timers for profiling (`crackseg bench-layers`); off by default, and
  // then free. Times accumulate from set_profiling(true) (which resets them). A fused
  // activation reports zero; its conv's entry says "+relu" / "+leaky_relu".
  struct NodeTime {
    std::string name, kind;
    double forward_s = 0, backward_s = 0;
    int64_t calls = 0;
  };
  void set_profiling(bool enabled);
  [[nodiscard]] std::vector<NodeTime> profile() const;
  // Calls hook(i) during backward() as soon as params()[i]'s gradient is complete (after its
  // layer's backward), so a gradient sync can overlap communication with the rest of the
  // backward. Set after instantiate(); an empty function removes it.
  void set_grad_ready_hook(std::function<void(std::size_t)> hook);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace crackseg
