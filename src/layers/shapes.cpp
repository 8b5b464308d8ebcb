#include "src/layers/shapes.hpp"

#include <cmath>

#include "src/core/error.hpp"
#include "src/core/rng.hpp"

namespace crackseg {

namespace {
template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

std::string shapes_text(std::span<const Dims> in) {
  std::string s;
  for (std::size_t i = 0; i < in.size(); ++i) s += (i ? ", " : "") + to_string(in[i]);
  return s.empty() ? "no inputs" : s;
}

[[noreturn]] void bad(const LayerSpec& spec, const std::string& name, std::span<const Dims> in,
                      const std::string& why) {
  throw Error(kind_name(spec) + " '" + name + "': " + why + " (inputs: " + shapes_text(in) + ")");
}

const Dims& one4(const LayerSpec& spec, const std::string& name, std::span<const Dims> in) {
  if (in.size() != 1) bad(spec, name, in, "expects exactly one input");
  if (in[0].size() != 4) bad(spec, name, in, "expects a 4-D (N, C, H, W) input");
  return in[0];
}

void expect_channels(const LayerSpec& spec, const std::string& name, std::span<const Dims> in, int64_t c) {
  if (in[0][1] != c) bad(spec, name, in, "expects " + std::to_string(c) + " input channels");
}
}  // namespace

Dims infer_output_dims(const LayerSpec& spec, std::span<const Dims> in, const std::string& name) {
  return std::visit(
      overloaded{
          [&](const Conv2dSpec& s) -> Dims {
            const Dims& x = one4(spec, name, in);
            expect_channels(spec, name, in, s.in_c);
            const int64_t ext = s.dilation * (s.kernel - 1) + 1;
            const int64_t ho = (x[2] + 2 * s.padding - ext), wo = (x[3] + 2 * s.padding - ext);
            if (ho < 0 || wo < 0 || s.stride < 1)
              bad(spec, name, in, "input smaller than the kernel extent " + std::to_string(ext));
            return {x[0], s.out_c, ho / s.stride + 1, wo / s.stride + 1};
          },
          [&](const ConvTranspose2dSpec& s) -> Dims {
            const Dims& x = one4(spec, name, in);
            expect_channels(spec, name, in, s.in_c);
            const int64_t ho = (x[2] - 1) * s.stride - 2 * s.padding + s.kernel + s.output_padding;
            const int64_t wo = (x[3] - 1) * s.stride - 2 * s.padding + s.kernel + s.output_padding;
            if (ho < 1 || wo < 1) bad(spec, name, in, "output would be empty");
            return {x[0], s.out_c, ho, wo};
          },
          [&](const MaxPool2dSpec& s) -> Dims {
            const Dims& x = one4(spec, name, in);
            const int64_t ho = x[2] + 2 * s.padding - s.kernel, wo = x[3] + 2 * s.padding - s.kernel;
            if (ho < 0 || wo < 0) bad(spec, name, in, "input smaller than the pooling window");
            return {x[0], x[1], ho / s.stride + 1, wo / s.stride + 1};
          },
          [&](const BatchNorm2dSpec& s) -> Dims {
            const Dims& x = one4(spec, name, in);
            expect_channels(spec, name, in, s.channels);
            return x;
          },
          [&](const LinearSpec& s) -> Dims {
            if (in.size() != 1 || in[0].size() != 2) bad(spec, name, in, "expects one 2-D (N, F) input");
            if (in[0][1] != s.in_f) bad(spec, name, in, "expects " + std::to_string(s.in_f) + " input features");
            return {in[0][0], s.out_f};
          },
          [&](const FlattenSpec&) -> Dims {
            const Dims& x = one4(spec, name, in);
            return {x[0], x[1] * x[2] * x[3]};
          },
          [&](const ConcatSpec&) -> Dims {
            if (in.empty()) bad(spec, name, in, "needs at least one input");
            Dims out = in[0];
            if (out.size() != 4) bad(spec, name, in, "expects 4-D inputs");
            for (std::size_t i = 1; i < in.size(); ++i) {
              if (in[i].size() != 4 || in[i][0] != out[0] || in[i][2] != out[2] || in[i][3] != out[3])
                bad(spec, name, in, "inputs differ in N, H or W");
              out[1] += in[i][1];
            }
            return out;
          },
          [&](const AddSpec&) -> Dims {
            if (in.empty()) bad(spec, name, in, "needs at least one input");
            for (const auto& d : in)
              if (d != in[0]) bad(spec, name, in, "inputs differ in shape");
            return in[0];
          },
          [&](const auto&) -> Dims {  // elementwise: relu, leaky_relu, sigmoid, softmax, dropout
            if (in.size() != 1) bad(spec, name, in, "expects exactly one input");
            if (std::holds_alternative<SoftmaxSpec>(spec) && in[0].size() != 4 && in[0].size() != 2)
              bad(spec, name, in, "expects a 4-D or 2-D input");
            return in[0];
          },
      },
      spec);
}

double forward_macs(const LayerSpec& spec, std::span<const Dims> in) {
  const Dims out = infer_output_dims(spec, in, "macs");
  return std::visit(overloaded{
                        [&](const Conv2dSpec& s) {
                          return static_cast<double>(numel(out)) * static_cast<double>(s.in_c * s.kernel * s.kernel);
                        },
                        [&](const ConvTranspose2dSpec& s) {
                          return static_cast<double>(numel(in[0])) *
                                 static_cast<double>(s.out_c * s.kernel * s.kernel);
                        },
                        [&](const LinearSpec& s) {
                          return static_cast<double>(in[0][0]) * static_cast<double>(s.in_f * s.out_f);
                        },
                        [](const auto&) { return 0.0; },
                    },
                    spec);
}

std::vector<ParamInfo> param_infos(const LayerSpec& spec) {
  return std::visit(
      overloaded{
          [](const Conv2dSpec& s) {
            const int64_t k2 = s.kernel * s.kernel;
            std::vector<ParamInfo> p{{"weight", {s.out_c, s.in_c, s.kernel, s.kernel}, s.init, s.in_c * k2, s.out_c * k2}};
            if (s.bias) p.push_back({"bias", {s.out_c}, Init::zeros, 0, 0, false});
            return p;
          },
          [](const ConvTranspose2dSpec& s) {
            // PyTorch's fans for (I, O, kh, kw): fan_in = O*k*k, fan_out = I*k*k.
            const int64_t k2 = s.kernel * s.kernel;
            std::vector<ParamInfo> p{{"weight", {s.in_c, s.out_c, s.kernel, s.kernel}, s.init, s.out_c * k2, s.in_c * k2}};
            if (s.bias) p.push_back({"bias", {s.out_c}, Init::zeros, 0, 0, false});
            return p;
          },
          [](const LinearSpec& s) {
            std::vector<ParamInfo> p{{"weight", {s.out_f, s.in_f}, s.init, s.in_f, s.out_f}};
            if (s.bias) p.push_back({"bias", {s.out_f}, Init::zeros, 0, 0, false});
            return p;
          },
          [](const BatchNorm2dSpec& s) {
            return std::vector<ParamInfo>{{"weight", {s.channels}, Init::zeros, 0, 0, false, 1.0f},
                                          {"bias", {s.channels}, Init::zeros, 0, 0, false, 0.0f}};
          },
          [](const auto&) { return std::vector<ParamInfo>{}; },
      },
      spec);
}

void init_param(Tensor& value, const ParamInfo& info, uint64_t seed, uint64_t index) {
  value.expect_dims(info.dims, ("init " + info.suffix).c_str());
  auto v = value.span<float>();
  SampleRng rng(seed, 0, index, Purpose::init);
  switch (info.init) {
    case Init::zeros:
      std::fill(v.begin(), v.end(), info.fill);
      break;
    case Init::he_normal: {
      const float sd = std::sqrt(2.0f / static_cast<float>(info.fan_in));
      for (auto& x : v) x = sd * rng.normal();
      break;
    }
    case Init::he_uniform: {
      const float lim = std::sqrt(6.0f / static_cast<float>(info.fan_in));
      for (auto& x : v) x = rng.uniform(-lim, lim);
      break;
    }
    case Init::glorot_uniform: {
      const float lim = std::sqrt(6.0f / static_cast<float>(info.fan_in + info.fan_out));
      for (auto& x : v) x = rng.uniform(-lim, lim);
      break;
    }
  }
}

uint32_t name_salt(const std::string& name) {
  uint32_t h = 2166136261u;
  for (unsigned char c : name) h = (h ^ c) * 16777619u;
  return h;
}

}  // namespace crackseg
