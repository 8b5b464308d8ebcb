// Procedural crack-like images with exact masks: the built-in default dataset.
//
// Each image is a pure function of (seed, image index, H, W): every random draw comes from
// SampleRng(seed, 0, index, Purpose::synth), so images can be generated in any order, on any
// number of threads, and come out byte-identical on the same build.
//
// An image: a surface style (asphalt, concrete or plaster: base colour, multi-scale blotch
// texture, grain), a lighting gradient, stains and dark specks that are NOT cracks (hard
// negatives), then 0-3 cracks: random walks with persistent heading, width varying along
// the path, branching up to two levels, drawn dark with a soft shadow halo; sensor noise last.
// The mask is exactly the set of pixels painted as crack core (halo excluded).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "io/dataset/writer.hpp"

namespace crackseg::io {

inline constexpr const char* kSynthStyles[] = {"asphalt", "concrete", "plaster"};

// rgb: [H, W, 3] RGB; mask: [H, W] 0/1. Returns the style index (source "synth_<style>").
int synth_sample(uint64_t seed, uint64_t index, int height, int width, uint8_t* rgb, uint8_t* mask);

struct SynthOptions {
  std::filesystem::path out;
  uint32_t count = 0;
  int size = 400;          // images are size x size
  uint64_t seed = 126;
  SplitSpec split;
  int threads = 0;         // OpenMP threads for generation + compression; 0 = OpenMP default
  // Called on the writing thread after each batch with (written, total); may throw to abort.
  std::function<void(uint32_t, uint32_t)> progress;
};

struct SynthResult {
  uint32_t count = 0;
  double seconds = 0;
  uint64_t file_bytes = 0;
  double crack_fraction = 0;  // over all images
};

// Generates and writes the whole dataset (temporary file + rename; an exception, including
// an interrupt raised from `progress`, leaves no output file).
SynthResult write_synth_dataset(const SynthOptions& opt);

}  // namespace crackseg::io
