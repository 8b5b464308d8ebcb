// Graph: specs -> layers on a backend, memory planned once per input shape, forward in node
// order (nodes can only read earlier nodes, so insertion order is topological), backward in
// reverse with gradient summation for outputs that feed several consumers.
#include "src/graph/graph.hpp"

#include <functional>

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>

#include "src/core/error.hpp"
#include "src/graph/backend.hpp"
#include "src/graph/block_plan.hpp"
#include "src/layers/shapes.hpp"

namespace crackseg {

struct Graph::Impl {
  struct Node {
    std::string name;
    std::optional<LayerSpec> spec;  // empty for the input
    std::vector<NodeId> inputs;
  };
  // One input slot of a node, resolved at plan time.
  struct Edge {
    NodeId producer;
    Tensor* scratch = nullptr;  // gradient lands here, then is added to the producer's grad
  };

  std::vector<Node> nodes;
  NodeId input = -1, output = -1;
  bool fusion = true;

  // instantiated
  Backend* backend = nullptr;
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<NodeId> alias;  // alias[i] != i: node i is an activation fused into alias[i]
  bool params_dirty = true;
  // Graph::set_grad_ready_hook: called with each parameter index (params() order) once its
  // gradient for this backward is complete; param_first/param_count per node.
  std::function<void(std::size_t)> grad_ready_hook;
  std::vector<std::size_t> param_first, param_count;

  // planned per input shape
  Dims planned;
  std::vector<char> live;  // node contributes to the output
  std::vector<Dims> dims;
  std::vector<Tensor> values, grads;
  std::vector<std::vector<const Tensor*>> in_ptrs;
  std::vector<std::vector<Tensor*>> din_ptrs;
  std::vector<std::vector<Edge>> edges;
  Tensor grad_arena;                // gradient memory (BlockPlan): the views below are slices of it
  std::deque<Tensor> grad_views;    // each node's gradient and each scratch (deque: stable addresses)
  Tensor input_buf, dout_buf;
  bool input_borrowed = false;  // input_buf is the caller's tensor, not a buffer to write into

  bool profiling = false;
  std::vector<double> fwd_s, bwd_s;
  std::vector<int64_t> calls;
  using Clock = std::chrono::steady_clock;

  [[nodiscard]] NodeId resolve(NodeId i) const {
    while (alias[i] != i) i = alias[i];
    return i;
  }
  [[nodiscard]] bool runs(NodeId i) const { return i != input && alias[i] == i && live[i]; }

  [[nodiscard]] Format format_for(const Dims& d) const {
    return d.size() == 4 ? backend->activation_format() : Format::plain;
  }

  void plan(const Dims& in_dims);
  static std::vector<Dims> infer_all(const std::vector<Node>& nodes, NodeId input, const Dims& in);
};

Graph::Graph() : impl_(std::make_unique<Impl>()) {}
Graph::~Graph() = default;
Graph::Graph(Graph&&) noexcept = default;
Graph& Graph::operator=(Graph&&) noexcept = default;

NodeId Graph::input() {
  if (impl_->input >= 0) throw Error("Graph::input: the graph already has an input (node 0)");
  impl_->nodes.push_back({"input", std::nullopt, {}});
  impl_->input = static_cast<NodeId>(impl_->nodes.size() - 1);
  return impl_->input;
}

NodeId Graph::add(std::string name, LayerSpec spec, std::vector<NodeId> inputs) {
  if (impl_->backend) throw Error("Graph::add '" + name + "': graph already instantiated");
  for (const auto& n : impl_->nodes)
    if (n.name == name) throw Error("Graph::add: duplicate node name '" + name + "'");
  for (NodeId i : inputs)
    if (i < 0 || i >= static_cast<NodeId>(impl_->nodes.size()))
      throw Error("Graph::add '" + name + "': input node " + std::to_string(i) + " does not exist");
  if (inputs.empty()) throw Error("Graph::add '" + name + "': a layer needs at least one input");
  impl_->nodes.push_back({std::move(name), std::move(spec), std::move(inputs)});
  return static_cast<NodeId>(impl_->nodes.size() - 1);
}

void Graph::set_output(NodeId node) {
  if (node < 0 || node >= static_cast<NodeId>(impl_->nodes.size()))
    throw Error("Graph::set_output: node " + std::to_string(node) + " does not exist");
  impl_->output = node;
}

void Graph::set_fusion(bool enabled) {
  if (impl_->backend) throw Error("Graph::set_fusion: call before instantiate");
  impl_->fusion = enabled;
}

int64_t Graph::num_params() const {
  int64_t n = 0;
  for (const auto& node : impl_->nodes)
    if (node.spec) n += param_count(*node.spec);
  return n;
}
int64_t Graph::num_nodes() const { return static_cast<int64_t>(impl_->nodes.size()); }

// Shape inference over all nodes; returns dims per node.
std::vector<Dims> Graph::Impl::infer_all(const std::vector<Node>& nodes, NodeId input, const Dims& in) {
  if (input < 0) throw Error("Graph: no input node (call Graph::input())");
  std::vector<Dims> d(nodes.size());
  d[static_cast<std::size_t>(input)] = in;
  std::vector<Dims> ins;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (!nodes[i].spec) continue;
    ins.clear();
    for (NodeId j : nodes[i].inputs) ins.push_back(d[static_cast<std::size_t>(j)]);
    d[i] = infer_output_dims(*nodes[i].spec, ins, nodes[i].name);
  }
  return d;
}

Dims Graph::output_dims(const Dims& in) const {
  if (impl_->output < 0) throw Error("Graph::output_dims: no output set");
  return Impl::infer_all(impl_->nodes, impl_->input, in)[static_cast<std::size_t>(impl_->output)];
}

double Graph::forward_macs_per_sample(const Dims& chw) const {
  if (chw.size() != 3) throw Error("Graph::forward_macs_per_sample: expected (C, H, W), got " + to_string(chw));
  const Dims in{1, chw[0], chw[1], chw[2]};
  const auto d = Impl::infer_all(impl_->nodes, impl_->input, in);
  double macs = 0;
  std::vector<Dims> ins;
  for (const auto& node : impl_->nodes) {
    if (!node.spec) continue;
    ins.clear();
    for (NodeId j : node.inputs) ins.push_back(d[static_cast<std::size_t>(j)]);
    macs += forward_macs(*node.spec, ins);
  }
  return macs;
}

void Graph::instantiate(Backend& backend, uint64_t init_seed) {
  Impl& g = *impl_;
  if (g.backend) throw Error("Graph::instantiate: already instantiated");
  if (g.output < 0) throw Error("Graph::instantiate: no output set");
  g.layers.resize(g.nodes.size());
  g.alias.resize(g.nodes.size());
  std::vector<int> consumers(g.nodes.size(), 0);
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    g.alias[i] = static_cast<NodeId>(i);
    for (NodeId j : g.nodes[i].inputs) ++consumers[static_cast<std::size_t>(j)];
    if (g.nodes[i].spec) g.layers[i] = backend.make_layer(*g.nodes[i].spec, g.nodes[i].name);
  }
  // Parameters: SampleRng(init_seed, 0, global parameter index, Purpose::init).
  uint64_t index = 0;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (!g.layers[i]) continue;
    const auto infos = param_infos(*g.nodes[i].spec);
    const auto ps = g.layers[i]->params();
    if (infos.size() != ps.size())
      throw Error("Graph::instantiate: layer '" + g.nodes[i].name + "' exposes " + std::to_string(ps.size()) +
                  " parameters, its spec " + std::to_string(infos.size()));
    for (std::size_t k = 0; k < ps.size(); ++k) {
      Tensor host = Tensor::empty(infos[k].dims);
      init_param(host, infos[k], init_seed, index++);
      backend.upload(host, ps[k]->value);
      backend.zero(ps[k]->grad);
    }
  }
  // Fusion pass: producer -> ReLU/LeakyReLU where the producer's output feeds only the
  // activation; the producing layer decides (Layer::fuse_activation: conv, transposed conv and
  // batchnorm on the oneDNN backend accept).
  if (g.fusion)
    for (std::size_t a = 0; a < g.nodes.size(); ++a) {
      const auto& node = g.nodes[a];
      if (!node.spec || node.inputs.size() != 1) continue;
      if (!std::holds_alternative<ReluSpec>(*node.spec) && !std::holds_alternative<LeakyReluSpec>(*node.spec)) continue;
      const NodeId p = node.inputs[0];
      const auto& prod = g.nodes[static_cast<std::size_t>(p)];
      if (!prod.spec || consumers[static_cast<std::size_t>(p)] != 1 || p == g.output) continue;
      if (g.alias[static_cast<std::size_t>(p)] != p) continue;
      if (g.layers[static_cast<std::size_t>(p)]->fuse_activation(*node.spec)) g.alias[a] = p;
    }
  // Then producer (+ fused activation) -> dropout, where the dropout is the only reader
  // (Layer::fuse_dropout: batchnorm on the oneDNN backend accepts).
  if (g.fusion)
    for (std::size_t d = 0; d < g.nodes.size(); ++d) {
      const auto& node = g.nodes[d];
      if (!node.spec || node.inputs.size() != 1 || !std::holds_alternative<DropoutSpec>(*node.spec)) continue;
      const NodeId j = node.inputs[0];
      if (j == g.input || j == g.output || consumers[static_cast<std::size_t>(j)] != 1) continue;
      const NodeId p = g.resolve(j);
      if (p == g.output || consumers[static_cast<std::size_t>(p)] != 1 || !g.nodes[static_cast<std::size_t>(p)].spec) continue;
      if (g.layers[static_cast<std::size_t>(p)]->fuse_dropout(*node.spec, node.name)) g.alias[d] = p;
    }
  g.backend = &backend;
  g.params_dirty = true;
}

bool Graph::instantiated() const { return impl_->backend != nullptr; }
Backend* Graph::backend() const { return impl_->backend; }

void Graph::Impl::plan(const Dims& in_dims) {
  const std::size_t n = nodes.size();
  dims = infer_all(nodes, input, in_dims);
  planned = in_dims;
  // Liveness: only nodes on a path to the output run.
  live.assign(n, 0);
  live[static_cast<std::size_t>(output)] = 1;
  for (std::size_t i = n; i-- > 0;)
    if (live[i])
      for (NodeId j : nodes[i].inputs) live[static_cast<std::size_t>(j)] = 1;
  for (std::size_t i = 0; i < n; ++i)
    if (alias[i] != static_cast<NodeId>(i) && live[i]) live[static_cast<std::size_t>(resolve(static_cast<NodeId>(i)))] = 1;

  values.assign(n, Tensor{});
  grads.assign(n, Tensor{});
  in_ptrs.assign(n, {});
  din_ptrs.assign(n, {});
  edges.assign(n, {});
  std::vector<Dims> ins;
  // In-place activations: node i overwrites its producer p's output when i is p's only
  // running consumer, p is not the graph's output, p's backward does not read that output
  // and i's backward reads only its own (e.g. batchnorm -> LeakyReLU on oneDNN: one
  // activation-sized buffer fewer per pair). Also when p's backward reads its output only
  // through the sign and i keeps that sign wherever its gradient is nonzero (LeakyReLU ->
  // dropout: the U-Net unit conv, BN, LeakyReLU, dropout keeps one buffer instead of three).
  // Same bits either way (test_layer_onednn). Part of fusion (Graph::set_fusion).
  // reader_of[p]: the running nodes that read p's output, once per input slot.
  std::vector<std::vector<std::size_t>> reader_of(n);
  for (std::size_t i = 0; i < n; ++i)
    if (runs(static_cast<NodeId>(i)))
      for (NodeId j : nodes[i].inputs)
        if (j != input) reader_of[static_cast<std::size_t>(resolve(j))].push_back(i);
  const auto readers = [&](std::size_t p) { return reader_of[p].size(); };
  const NodeId out_node = resolve(output);
  for (std::size_t i = 0; i < n; ++i) {
    if (!runs(static_cast<NodeId>(i))) continue;
    ins.clear();
    for (NodeId j : nodes[i].inputs) ins.push_back(dims[static_cast<std::size_t>(resolve(j))]);
    layers[i]->plan(ins);
  }
  // bf16 activations (Layer::can_write_bf16_output): a producer all of whose readers take a
  // bf16 input gets a bf16 buffer. Part of fusion.
  const auto bf16_output = [&](std::size_t p) {
    const auto& rd = reader_of[p];
    return fusion && runs(static_cast<NodeId>(p)) && static_cast<NodeId>(p) != out_node && !rd.empty() &&
           layers[p]->can_write_bf16_output() && std::all_of(rd.begin(), rd.end(), [&](std::size_t c) {
             return nodes[c].inputs.size() == 1 && layers[c]->can_read_bf16_input();
           });
  };
  // Concat inputs written in place: a producer whose only reader is the concat writes its
  // output straight into the concat's channels when both layers can (Layer::
  // write_output_as_channels); it then gets no buffer of its own. Part of fusion. Into a
  // concat stored as bf16 (below) only a producer that writes them rounded to bf16; the concat
  // rounds the other inputs as it copies them (fewer bytes than an fp32 concat its bf16
  // readers would convert, and no fp32 copy kept).
  std::vector<NodeId> into_concat(n, -1);
  if (fusion)
    for (std::size_t i = 0; i < n; ++i) {
      if (!runs(static_cast<NodeId>(i)) || !std::holds_alternative<ConcatSpec>(*nodes[i].spec) ||
          !layers[i]->can_take_inputs_in_place() || dims[i].size() != 4)
        continue;
      const bool as_bf16 = bf16_output(i);
      int64_t first = 0;
      for (std::size_t k = 0; k < nodes[i].inputs.size(); ++k) {
        const NodeId p = resolve(nodes[i].inputs[k]);
        const auto pi = static_cast<std::size_t>(p);
        const int64_t ck = dims[pi][1];
        const bool sole = p != input && p != out_node && readers(pi) == 1 && into_concat[pi] < 0 &&
                          std::count(nodes[i].inputs.begin(), nodes[i].inputs.end(), nodes[i].inputs[k]) == 1;
        if (sole && layers[pi]->write_output_as_channels(first, dims[i][1], as_bf16)) {
          into_concat[pi] = static_cast<NodeId>(i);
          layers[i]->take_input_in_place(k);
        }
        first += ck;
      }
    }
  std::vector<char> bf16_out(n, 0);
  for (std::size_t p = 0; p < n; ++p) {
    if (into_concat[p] >= 0 || !bf16_output(p)) continue;
    bf16_out[p] = 1;
    layers[p]->set_output_bf16();
    for (std::size_t c : reader_of[p]) layers[c]->set_input_bf16();
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!runs(static_cast<NodeId>(i)) || into_concat[i] >= 0) continue;
    if (bf16_out[i]) {
      values[i] = alloc_buffer(dims[i], DType::bf16, format_for(dims[i]), backend->device());
      continue;
    }
    if (fusion && nodes[i].inputs.size() == 1 && layers[i]->runs_in_place()) {
      const NodeId p = resolve(nodes[i].inputs[0]);
      const auto pi = static_cast<std::size_t>(p);
      const bool p_output_free =
          layers[pi] && (!layers[pi]->backward_reads_output() ||
                         (layers[pi]->backward_reads_output_sign_only() && layers[i]->keeps_sign_where_grad_flows()));
      if (p != input && p != out_node && readers(pi) == 1 && p_output_free && dims[pi] == dims[i]) {
        values[i] = values[pi];  // shares the storage
        continue;
      }
    }
    values[i] = alloc_buffer(dims[i], DType::f32, format_for(dims[i]), backend->device());
  }
  for (std::size_t i = 0; i < n; ++i)
    if (into_concat[i] >= 0) values[i] = values[static_cast<std::size_t>(into_concat[i])];
  for (std::size_t i = 0; i < n; ++i) {  // fused activations share their conv's tensors
    if (!runs(static_cast<NodeId>(i))) continue;
    for (NodeId j : nodes[i].inputs) {
      const NodeId p = resolve(j);
      in_ptrs[i].push_back(p == input ? &input_buf : &values[static_cast<std::size_t>(p)]);
      edges[i].push_back({p});
    }
    din_ptrs[i].assign(nodes[i].inputs.size(), nullptr);
  }
  // Backward schedule: a node's gradient buffer is taken when its first consumer (in backward
  // order) runs and returned after its own backward; a second consumer's scratch lives for
  // that consumer's backward only. BlockPlan places these lifetimes in one arena; the
  // buffers are views into it.
  grad_views.clear();
  grad_arena = Tensor{};
  // bf16 gradients (Layer::can_read_bf16_dout): p's output gradient is bf16 when its only
  // reader writes it as bf16 and p would round it to bf16 anyway. Part of fusion.
  std::vector<char> bf16_grad(n, 0);
  if (fusion)
    for (std::size_t c = 0; c < n; ++c) {
      if (!runs(static_cast<NodeId>(c)) || edges[c].size() != 1 || !layers[c]->can_write_bf16_din()) continue;
      const NodeId p = edges[c][0].producer;
      const auto pi = static_cast<std::size_t>(p);
      if (p == input || p == out_node || readers(pi) != 1 || into_concat[pi] >= 0 || !layers[pi]->can_read_bf16_dout())
        continue;
      bf16_grad[pi] = 1;
      layers[c]->set_din_bf16();
      layers[pi]->set_dout_bf16();
    }
  BlockPlan bp;
  std::vector<int> grad_slot(n, -1);
  struct ScratchUse { std::size_t node, edge; int slot; };
  std::vector<ScratchUse> scratch_uses;
  const NodeId out = resolve(output);
  for (std::size_t c = n; c-- > 0;) {
    if (!runs(static_cast<NodeId>(c))) continue;
    std::vector<int> scratch_here;
    for (std::size_t k = 0; k < edges[c].size(); ++k) {
      const NodeId p = edges[c][k].producer;
      if (p == input) continue;
      const auto pi = static_cast<std::size_t>(p);
      const int64_t elems = bf16_grad[pi] ? (numel(dims[pi]) + 1) / 2 : numel(dims[pi]);  // in floats
      if (grad_slot[pi] < 0 && p != out) {
        grad_slot[pi] = bp.acquire(elems);
      } else {
        scratch_uses.push_back({c, k, bp.acquire(elems)});
        scratch_here.push_back(scratch_uses.back().slot);
      }
    }
    for (int s : scratch_here) bp.release(s);
    if (grad_slot[c] >= 0) bp.release(grad_slot[c]);
  }
  bp.finish();
  grad_arena = alloc_buffer({std::max<int64_t>(bp.arena_elems(), 1)}, DType::f32, Format::plain, backend->device());
  const auto view = [&](int slot, const Dims& d, DType t = DType::f32) -> Tensor* {
    float* at = static_cast<float*>(grad_arena.raw()) + bp.offset_of(slot);
    grad_views.push_back(Tensor::wrap(at, d, t, format_for(d), backend->device()));
    return &grad_views.back();
  };
  for (std::size_t c = n; c-- > 0;) {
    if (!runs(static_cast<NodeId>(c))) continue;
    for (std::size_t k = 0; k < edges[c].size(); ++k) {
      const NodeId p = edges[c][k].producer;
      if (p == input) continue;
      const auto pi = static_cast<std::size_t>(p);
      if (grad_slot[pi] >= 0 && !grads[pi].defined()) {  // first consumer in backward order
        grads[pi] = *view(grad_slot[pi], dims[pi], bf16_grad[pi] ? DType::bf16 : DType::f32);
        din_ptrs[c][k] = &grads[pi];
      }
    }
  }
  for (const auto& u : scratch_uses) {
    edges[u.node][u.edge].scratch = view(u.slot, dims[static_cast<std::size_t>(edges[u.node][u.edge].producer)]);
    din_ptrs[u.node][u.edge] = edges[u.node][u.edge].scratch;
  }
}

const Tensor& Graph::forward(const StepContext& ctx, const Tensor& x) {
  Impl& g = *impl_;
  if (!g.backend) throw Error("Graph::forward: call instantiate first");
  if (x.rank() != 4) throw Error("Graph::forward: expected a 4-D (N, C, H, W) input, got " + to_string(x.dims()));
  if (x.dims() != g.planned) {
    g.plan(x.dims());
    g.input_buf = Tensor{};
  }
  const Format f = g.backend->activation_format();
  if (x.format() == f && x.device() == g.backend->device()) {
    g.input_buf = x;  // shares storage; no copy
    g.input_borrowed = true;
  } else {
    if (!g.input_buf.defined() || g.input_buf.format() != f || g.input_borrowed)
      g.input_buf = alloc_buffer(x.dims(), DType::f32, f, g.backend->device());
    g.input_borrowed = false;
    g.backend->copy(x, g.input_buf);  // host batches are uploaded here
  }
  if (g.params_dirty) {
    for (auto& l : g.layers)
      if (l) l->params_changed();
    g.params_dirty = false;
  }
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (!g.runs(static_cast<NodeId>(i))) continue;
    if (!g.profiling) {
      g.layers[i]->forward(ctx, g.in_ptrs[i], g.values[i]);
      continue;
    }
    const auto t0 = Impl::Clock::now();
    g.layers[i]->forward(ctx, g.in_ptrs[i], g.values[i]);
    g.fwd_s[i] += std::chrono::duration<double>(Impl::Clock::now() - t0).count();
    ++g.calls[i];
  }
  const NodeId out = g.resolve(g.output);
  return out == g.input ? g.input_buf : g.values[static_cast<std::size_t>(out)];
}

void Graph::backward(const StepContext& ctx, const Tensor& dout) {
  Impl& g = *impl_;
  if (!g.backend || g.planned.empty()) throw Error("Graph::backward: call forward first");
  const NodeId out = g.resolve(g.output);
  const auto oi = static_cast<std::size_t>(out);
  dout.expect_dims(g.dims[oi], "Graph::backward dout");
  const Format f = g.format_for(g.dims[oi]);
  if ((dout.format() == f || dout.rank() != 4) && dout.device() == g.backend->device()) {
    g.grads[oi] = dout;
  } else {
    if (!g.dout_buf.defined() || g.dout_buf.dims() != dout.dims())
      g.dout_buf = alloc_buffer(dout.dims(), DType::f32, f, g.backend->device());
    g.backend->copy(dout, g.dout_buf);
    g.grads[oi] = g.dout_buf;
  }
  for (std::size_t c = g.nodes.size(); c-- > 0;) {
    if (!g.runs(static_cast<NodeId>(c))) continue;
    const auto t0 = Impl::Clock::now();
    g.layers[c]->backward(ctx, g.in_ptrs[c], g.values[c], g.grads[c], g.din_ptrs[c]);
    for (const auto& e : g.edges[c])
      if (e.scratch) g.backend->accumulate(g.grads[static_cast<std::size_t>(e.producer)], *e.scratch);
    if (g.profiling) g.bwd_s[c] += std::chrono::duration<double>(Impl::Clock::now() - t0).count();
    if (g.grad_ready_hook)  // the gradient sync may start sending these during earlier nodes' backward
      for (std::size_t k = 0; k < g.param_count[c]; ++k) g.grad_ready_hook(g.param_first[c] + k);
  }
  g.params_dirty = true;
}

void Graph::set_grad_ready_hook(std::function<void(std::size_t)> hook) {
  Impl& g = *impl_;
  if (!g.backend) throw Error("Graph::set_grad_ready_hook: instantiate the graph first");
  g.param_first.assign(g.layers.size(), 0);
  g.param_count.assign(g.layers.size(), 0);
  std::size_t next = 0;
  for (std::size_t k = 0; k < g.layers.size(); ++k) {
    g.param_first[k] = next;
    g.param_count[k] = g.layers[k] ? g.layers[k]->params().size() : 0;
    next += g.param_count[k];
  }
  g.grad_ready_hook = std::move(hook);
}

std::vector<Param*> Graph::params() {
  std::vector<Param*> out;
  for (auto& l : impl_->layers)
    if (l)
      for (Param* p : l->params()) out.push_back(p);
  impl_->params_dirty = true;  // the caller may write values through these pointers
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Graph::buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& l : impl_->layers)
    if (l)
      for (auto& b : l->buffers()) out.push_back(b);
  impl_->params_dirty = true;
  return out;
}

void Graph::zero_grad() {
  if (!impl_->backend) return;
  for (auto& l : impl_->layers)
    if (l)
      for (Param* p : l->params()) impl_->backend->zero(p->grad);
}

void Graph::mark_params_changed() { impl_->params_dirty = true; }

void Graph::defer_running_stats(bool defer) {
  for (auto& l : impl_->layers)
    if (l) l->set_defer_running_stats(defer);
}

std::size_t Graph::batch_stats_size() const {
  std::size_t n = 0;
  for (const auto& l : impl_->layers)
    if (l) n += l->batch_stats_size();
  return n;
}

void Graph::read_batch_stats(std::span<float> dst) const {
  if (dst.size() != batch_stats_size())
    throw Error("Graph::read_batch_stats: " + std::to_string(dst.size()) + " floats for " +
                std::to_string(batch_stats_size()));
  std::size_t at = 0;
  for (const auto& l : impl_->layers)
    if (l && l->batch_stats_size()) {
      l->read_batch_stats(dst.subspan(at, l->batch_stats_size()));
      at += l->batch_stats_size();
    }
}

void Graph::apply_batch_stats(std::span<const float> src) {
  if (src.size() != batch_stats_size())
    throw Error("Graph::apply_batch_stats: " + std::to_string(src.size()) + " floats for " +
                std::to_string(batch_stats_size()));
  std::size_t at = 0;
  for (auto& l : impl_->layers)
    if (l && l->batch_stats_size()) {
      l->apply_batch_stats(src.subspan(at, l->batch_stats_size()));
      at += l->batch_stats_size();
    }
}

void Graph::set_profiling(bool enabled) {
  impl_->profiling = enabled;
  impl_->fwd_s.assign(impl_->nodes.size(), 0.0);
  impl_->bwd_s.assign(impl_->nodes.size(), 0.0);
  impl_->calls.assign(impl_->nodes.size(), 0);
}

std::vector<Graph::NodeTime> Graph::profile() const {
  const Impl& g = *impl_;
  std::vector<NodeTime> out;
  for (std::size_t i = 0; i < g.nodes.size() && i < g.fwd_s.size(); ++i) {
    if (!g.nodes[i].spec) continue;
    NodeTime t{g.nodes[i].name, kind_name(*g.nodes[i].spec), g.fwd_s[i], g.bwd_s[i], g.calls[i]};
    for (std::size_t a = 0; a < g.nodes.size(); ++a)
      if (!g.alias.empty() && g.alias[a] == static_cast<NodeId>(i) && a != i) t.kind += "+" + kind_name(*g.nodes[a].spec);
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace crackseg
