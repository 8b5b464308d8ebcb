#include "io/synth/synth.hpp"

#include <nlohmann/json.hpp>

#include <omp.h>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <mutex>

#include "src/core/rng.hpp"

namespace crackseg::io {

namespace {

constexpr float kPi = 3.14159265358979f;

struct Style {
  float base_lo, base_hi;      // mean brightness range
  float tint[3];               // multiplicative RGB tint
  float blotch;                // amplitude of the multi-scale texture
  float grain_lo, grain_hi;    // per-pixel grain sigma range
  float stones;                // density of light aggregate specks
};

// Asphalt: dark, coarse grain with light stones; concrete: mid grey, blotchy; plaster: light,
// warm and smooth. Ranges overlap so style is not trivially separable by brightness.
constexpr Style kStyles[3] = {
    {65.f, 115.f, {0.97f, 0.99f, 1.04f}, 10.f, 12.f, 20.f, 0.004f},
    {120.f, 180.f, {1.03f, 1.0f, 0.95f}, 16.f, 5.f, 10.f, 0.001f},
    {165.f, 215.f, {1.06f, 1.01f, 0.90f}, 9.f, 3.f, 6.f, 0.f},
};

// Smooth noise in [-1, 1] with feature size `cell`: a random grid upsampled bicubically,
// shifted by a random offset so grid lines do not align between octaves.
void add_value_noise(SampleRng& r, cv::Mat& acc, float cell, float amplitude) {
  const int h = acc.rows, w = acc.cols;
  const int gh = static_cast<int>(h / cell) + 3, gw = static_cast<int>(w / cell) + 3;
  cv::Mat grid(gh, gw, CV_32F);
  for (int y = 0; y < gh; ++y)
    for (int x = 0; x < gw; ++x) grid.at<float>(y, x) = r.uniform(-1.f, 1.f) * amplitude;
  cv::Mat up;
  const int uw = static_cast<int>(gw * cell), uh = static_cast<int>(gh * cell);
  cv::resize(grid, up, cv::Size(uw, uh), 0, 0, cv::INTER_CUBIC);
  const int ox = static_cast<int>(r.below(static_cast<uint32_t>(std::max(1, uw - w - 1)))),
            oy = static_cast<int>(r.below(static_cast<uint32_t>(std::max(1, uh - h - 1))));
  acc += up(cv::Rect(ox, oy, w, h));
}

struct CrackPainter {
  SampleRng& r;
  cv::Mat& mask;  // CV_8U, 1 = crack core
  float scale;    // size / 400: widths and steps scale with the image

  // A random walk from p with heading `angle`; width varies smoothly along the path and
  // tapers at both ends; spawns thinner branches.
  void walk(cv::Point2f p, float angle, float length, float width, int depth) {
    const float step = std::max(1.5f, 4.f * scale);
    const int steps = std::max(2, static_cast<int>(length / step));
    const float mean_angle = angle;
    float w_mod = 1.f;
    const float phase = r.uniform(0.f, 2 * kPi), freq = r.uniform(0.02f, 0.12f);
    for (int i = 0; i < steps; ++i) {
      // Persistent heading with jitter, pulled back toward the main direction: cracks
      // meander but keep going somewhere.
      angle += 0.28f * r.normal() + 0.08f * (mean_angle - angle);
      w_mod = std::clamp(w_mod + 0.08f * r.normal(), 0.5f, 1.5f);
      const float t = static_cast<float>(i) / static_cast<float>(steps);
      const float taper = std::min(1.f, std::min(t, 1.f - t) * 6.f + 0.25f);
      const float wv = width * w_mod * taper * (0.8f + 0.2f * std::sin(phase + freq * static_cast<float>(i)));
      const cv::Point2f q = p + cv::Point2f(std::cos(angle), std::sin(angle)) * step;
      const int thickness = std::max(1, static_cast<int>(std::lround(wv)));
      // Sub-pixel end points (shift 4) give less staircase-like thin cracks.
      cv::line(mask, cv::Point(static_cast<int>(p.x * 16), static_cast<int>(p.y * 16)),
               cv::Point(static_cast<int>(q.x * 16), static_cast<int>(q.y * 16)), cv::Scalar(1), thickness,
               cv::LINE_8, 4);
      p = q;
      if (p.x < -20 || p.y < -20 || p.x > mask.cols + 20 || p.y > mask.rows + 20) break;
      if (depth < 2 && r.bernoulli(depth == 0 ? 0.035f : 0.02f)) {
        const float side = r.bernoulli(0.5f) ? 1.f : -1.f;
        walk(p, angle + side * r.uniform(0.35f, 1.2f), length * r.uniform(0.15f, 0.45f),
             std::max(1.f, wv * r.uniform(0.45f, 0.8f)), depth + 1);
      }
    }
  }
};

}  // namespace

int synth_sample(uint64_t seed, uint64_t index, int height, int width, uint8_t* rgb, uint8_t* mask_out) {
  SampleRng r(seed, 0, index, Purpose::synth);
  const int h = height, w = width;
  const float size = static_cast<float>(std::min(h, w)), scale = size / 400.f;
  const int style_id = static_cast<int>(r.below(3));
  const Style& st = kStyles[style_id];

  // ---- surface: base brightness, multi-scale blotches, lighting gradient, stains -------------
  cv::Mat lum(h, w, CV_32F, cv::Scalar(r.uniform(st.base_lo, st.base_hi)));
  add_value_noise(r, lum, std::max(4.f, size / 3.f), st.blotch);
  add_value_noise(r, lum, std::max(3.f, size / 10.f), st.blotch * 0.6f);
  add_value_noise(r, lum, std::max(2.f, size / 40.f), st.blotch * 0.35f);
  {
    const float a = r.uniform(-0.25f, 0.25f), t = r.uniform(0.f, 2 * kPi);
    const float cx = std::cos(t) / size, cy = std::sin(t) / size;
    for (int y = 0; y < h; ++y) {
      float* row = lum.ptr<float>(y);
      for (int x = 0; x < w; ++x) row[x] *= 1.f + a * ((x - w / 2) * cx + (y - h / 2) * cy);
    }
  }
  {
    cv::Mat stains(h, w, CV_32F, cv::Scalar(0));
    const int n = static_cast<int>(r.below(5));
    for (int i = 0; i < n; ++i) {
      const cv::Point c(static_cast<int>(r.below(static_cast<uint32_t>(w))), static_cast<int>(r.below(static_cast<uint32_t>(h))));
      const cv::Size axes(std::max(2, static_cast<int>(r.uniform(size / 20, size / 4))),
                          std::max(2, static_cast<int>(r.uniform(size / 20, size / 4))));
      cv::ellipse(stains, c, axes, r.uniform(0.f, 180.f), 0, 360, cv::Scalar(r.uniform(-40.f, 18.f)), cv::FILLED);
    }
    if (n > 0) {
      cv::GaussianBlur(stains, stains, cv::Size(0, 0), std::max(1.f, size / 35.f));
      lum += stains;
    }
    // Dark specks and light stones: crack-coloured dots that are not cracks.
    const int specks = static_cast<int>(r.below(static_cast<uint32_t>(10 + 30 * scale * scale)));
    for (int i = 0; i < specks; ++i) {
      const cv::Point c(static_cast<int>(r.below(static_cast<uint32_t>(w))), static_cast<int>(r.below(static_cast<uint32_t>(h))));
      cv::circle(lum, c, 1 + static_cast<int>(r.below(2)), cv::Scalar(r.uniform(20.f, 60.f)), cv::FILLED);
    }
    const int stones = static_cast<int>(st.stones * static_cast<float>(h * w) / 4.f);
    for (int i = 0; i < stones; ++i) {
      const cv::Point c(static_cast<int>(r.below(static_cast<uint32_t>(w))), static_cast<int>(r.below(static_cast<uint32_t>(h))));
      cv::circle(lum, c, 1 + static_cast<int>(r.below(3)), cv::Scalar(r.uniform(100.f, 170.f)), cv::FILLED);
    }
  }

  // ---- cracks ---------------------------------------------------------------------------------
  cv::Mat mask(h, w, CV_8U, mask_out);
  mask.setTo(0);
  const float u = r.uniform();
  const int n_cracks = u < 0.03f ? 0 : u < 0.43f ? 1 : u < 0.83f ? 2 : 3;
  CrackPainter painter{r, mask, scale};
  for (int c = 0; c < n_cracks; ++c) {
    cv::Point2f p;
    float angle = r.uniform(0.f, 2 * kPi);
    if (r.bernoulli(0.65f)) {  // enter from a border, heading inward
      const int side = static_cast<int>(r.below(4));
      const float s = r.uniform(0.1f, 0.9f);
      p = side == 0 ? cv::Point2f(s * w, 0) : side == 1 ? cv::Point2f(s * w, h - 1.f)
        : side == 2 ? cv::Point2f(0, s * h) : cv::Point2f(w - 1.f, s * h);
      const float inward = side == 0 ? kPi / 2 : side == 1 ? -kPi / 2 : side == 2 ? 0.f : kPi;
      angle = inward + r.uniform(-0.7f, 0.7f);
    } else {
      p = cv::Point2f(r.uniform(0.2f, 0.8f) * w, r.uniform(0.2f, 0.8f) * h);
    }
    painter.walk(p, angle, size * r.uniform(0.7f, 1.7f), std::max(1.f, r.uniform(2.5f, 8.5f) * scale), 0);
  }

  // Crack core is dark (deep shadow), a blurred halo darkens the rim slightly.
  cv::Mat core, halo;
  mask.convertTo(core, CV_32F);
  cv::GaussianBlur(core, halo, cv::Size(0, 0), std::max(0.8f, 1.5f * scale));
  const float dark = r.uniform(0.2f, 0.5f), rim = r.uniform(0.15f, 0.35f);

  // ---- colour, grain, sensor noise -------------------------------------------------------------
  const float grain = r.uniform(st.grain_lo, st.grain_hi), chroma = r.uniform(1.f, 3.f);
  const float tint[3] = {st.tint[0] * r.uniform(0.97f, 1.03f), st.tint[1], st.tint[2] * r.uniform(0.97f, 1.03f)};
  // Irwin-Hall: the sum of the 4 bytes of a 32-bit word, centred, is close to Gaussian with
  // sigma 147.8; one Philox word per value keeps the noise cheap.
  constexpr float kIrwin = 1.f / 147.8f;
  auto gauss = [&r] { const uint32_t v = r.next_u32();
    return static_cast<float>(int(v & 255) + int((v >> 8) & 255) + int((v >> 16) & 255) + int(v >> 24) - 510); };
  for (int y = 0; y < h; ++y) {
    const float* L = lum.ptr<float>(y);
    const float* C = core.ptr<float>(y);
    const float* H = halo.ptr<float>(y);
    uint8_t* out = rgb + static_cast<size_t>(y) * w * 3;
    for (int x = 0; x < w; ++x) {
      const float shade = C[x] > 0 ? dark : 1.f - rim * H[x];
      const float g = L[x] * shade + grain * kIrwin * gauss();
      for (int ch = 0; ch < 3; ++ch) {
        const float v = g * tint[ch] + chroma * kIrwin * gauss();
        out[x * 3 + ch] = static_cast<uint8_t>(std::clamp(std::lround(v), 0l, 255l));
      }
    }
  }
  return style_id;
}

SynthResult write_synth_dataset(const SynthOptions& opt) {
  if (opt.count == 0) throw InputError("synth: --count must be at least 1");
  if (opt.size < 16 || opt.size > 8192) throw InputError("synth: --size " + std::to_string(opt.size) + " is outside 16..8192");
  const auto t0 = std::chrono::steady_clock::now();
  DatasetWriter writer(opt.out, opt.size, opt.size);
  writer.set_attribute("origin", "crackseg synth --count " + std::to_string(opt.count) + " --size " +
                                     std::to_string(opt.size) + " --seed " + std::to_string(opt.seed));
  // Read back into every run's result.json (dataset.ingest.options).
  writer.set_attribute("ingest_options",
                       nlohmann::json{{"command", "synth"}, {"count", opt.count}, {"size", opt.size}, {"seed", opt.seed},
                                      {"split", opt.split.fractions}, {"split_seed", opt.split.seed}}
                           .dump());
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  const uint32_t batch = static_cast<uint32_t>(std::max(8, 16 * threads));
  const size_t hw = static_cast<size_t>(opt.size) * static_cast<size_t>(opt.size);
  uint64_t crack = 0;
  for (uint32_t first = 0; first < opt.count; first += batch) {
    const uint32_t n = std::min(batch, opt.count - first);
    std::vector<EncodedSample> encoded(n);
    std::exception_ptr failure;
    std::mutex failure_mutex;
#pragma omp parallel num_threads(threads)
    {
      std::vector<uint8_t> img(hw * 3), mask(hw);
#pragma omp for schedule(dynamic)
      for (uint32_t k = 0; k < n; ++k) {
        try {
          const uint32_t i = first + k;
          const int style = synth_sample(opt.seed, i, opt.size, opt.size, img.data(), mask.data());
          char name[32];
          std::snprintf(name, sizeof name, "synth_%06u", i);
          encoded[k] = writer.encode(img.data(), mask.data(), name, std::string("synth_") + kSynthStyles[style]);
        } catch (...) {
          std::lock_guard<std::mutex> g(failure_mutex);
          if (!failure) failure = std::current_exception();
        }
      }
    }
    if (failure) std::rethrow_exception(failure);
    for (auto& e : encoded) {
      crack += e.crack_pixels;
      writer.append(std::move(e));
    }
    if (opt.progress) opt.progress(first + n, opt.count);
  }
  writer.finish(opt.split);
  SynthResult res;
  res.count = opt.count;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.file_bytes = std::filesystem::file_size(opt.out);
  res.crack_fraction = static_cast<double>(crack) / (static_cast<double>(hw) * opt.count);
  return res;
}

}  // namespace crackseg::io
