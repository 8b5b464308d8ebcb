#include "io/ingest/ingest.hpp"

#include <nlohmann/json.hpp>

#include <omp.h>

#include <opencv2/core/utility.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "io/dataset/dataset.hpp"
#include "io/image/image.hpp"
#include "io/ingest/interrupt.hpp"

namespace crackseg::io {

namespace fs = std::filesystem;

Layout parse_layout(const std::string& text) {
  if (text == "pairs") return Layout::pairs;
  if (text == "crackseg9k") return Layout::crackseg9k;
  if (text == "cfd") return Layout::cfd;
  if (text == "split-folders") return Layout::split_folders;
  throw InputError("unknown --layout '" + text + "'; expected pairs, crackseg9k, cfd or split-folders");
}

namespace {

std::vector<fs::path> image_files(const fs::path& folder) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(folder)) {
    // A link loop or dangling link named like an image is listed too (is_regular_file
    // would throw ELOOP and end the whole ingest): reading it then fails with a message
    // naming the file, which --skip-bad skips like any other bad file.
    std::error_code ec;
    const bool regular = e.is_regular_file(ec);
    if ((regular || (ec && e.is_symlink(ec))) && is_image_file(e.path())) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string rel(const fs::path& p, const fs::path& dir) { return p.lexically_relative(dir).string(); }

// Two images with one stem (a.png, a.jpg) cannot be told apart by their masks: both get
// a problem naming every file of that stem.
void mark_duplicate_stems(std::vector<IngestItem>& items, const fs::path& dir) {
  std::map<std::string, std::vector<size_t>> by_stem;
  for (size_t i = 0; i < items.size(); ++i) by_stem[items[i].image.stem().string()].push_back(i);
  for (const auto& [stem, idx] : by_stem) {
    if (idx.size() < 2) continue;
    std::string all;
    for (size_t i : idx) all += " " + rel(items[i].image, dir);
    for (size_t i : idx) items[i].problem = "duplicate name '" + stem + "':" + all;
  }
}

// `base`: the folder that file names in messages are relative to (DIR itself, or the
// dataset folder above a split-folders split).
std::vector<IngestItem> discover_pairs(const fs::path& dir, Layout layout, const fs::path& base) {
  const fs::path images = dir / "images", masks = dir / "masks";
  if (!fs::is_directory(images))
    throw InputError(dir.string() + " has no images/ folder (layouts pairs, crackseg9k and split-folders expect " +
                     "images/ and masks/ folders)");
  // Candidate masks by the stem of the image they belong to.
  std::map<std::string, std::vector<fs::path>> mask_of;
  std::vector<fs::path> photos;
  for (const auto& p : image_files(images)) {
    const std::string stem = p.stem().string();
    if (ends_with(stem, "_mask")) mask_of[stem.substr(0, stem.size() - 5)].push_back(p);
    else photos.push_back(p);
  }
  if (fs::is_directory(masks))
    for (const auto& p : image_files(masks)) {
      const std::string stem = p.stem().string();
      mask_of[ends_with(stem, "_mask") ? stem.substr(0, stem.size() - 5) : stem].push_back(p);
    }
  if (photos.empty()) throw InputError("no images found in " + images.string() + " (empty folder)");
  std::vector<IngestItem> items;
  const std::string folder_source = fs::absolute(dir).lexically_normal().filename().string().empty()
                                        ? fs::absolute(dir).lexically_normal().parent_path().filename().string()
                                        : fs::absolute(dir).lexically_normal().filename().string();
  for (const auto& p : photos) {
    IngestItem it;
    it.name = p.filename().string();
    it.image = p;
    const std::string stem = p.stem().string();
    if (layout == Layout::crackseg9k) {
      const auto us = stem.find('_');
      it.source = us == std::string::npos || us == 0 ? "unknown" : stem.substr(0, us);
    } else {
      it.source = folder_source;
    }
    const auto m = mask_of.find(stem);
    if (m == mask_of.end()) {
      it.problem = "missing mask for " + rel(p, base) + " (looked for masks/" + stem + ".*, masks/" + stem +
                   "_mask.*, images/" + stem + "_mask.*)";
    } else if (m->second.size() > 1) {
      it.problem = "several masks for " + rel(p, base) + ":";
      for (const auto& c : m->second) it.problem += " " + rel(c, base);
    } else {
      it.label = m->second.front();
    }
    items.push_back(std::move(it));
  }
  mark_duplicate_stems(items, base);
  return items;
}

// DIR/train, DIR/val (or validation), DIR/test, each a pairs folder. Source = DIR's name.
std::vector<IngestItem> discover_split_folders(const fs::path& dir) {
  const std::string source = fs::absolute(dir).lexically_normal().filename().string().empty()
                                 ? fs::absolute(dir).lexically_normal().parent_path().filename().string()
                                 : fs::absolute(dir).lexically_normal().filename().string();
  std::vector<IngestItem> items;
  const std::vector<std::pair<int, std::vector<std::string>>> folders = {
      {0, {"train"}}, {1, {"val", "validation"}}, {2, {"test"}}};
  for (const auto& [split, names] : folders) {
    fs::path found;
    for (const auto& n : names) {
      if (!fs::is_directory(dir / n)) continue;
      if (!found.empty())
        throw InputError(dir.string() + " has both " + found.filename().string() + "/ and " + n +
                         "/: one validation folder only");
      found = dir / n;
    }
    if (found.empty()) {
      if (split != 1)
        throw InputError(dir.string() + " has no " + names.front() + "/ folder (layout split-folders expects " +
                         "DIR/train and DIR/test, optionally DIR/val, each with images/ and masks/)");
      continue;
    }
    for (auto& it : discover_pairs(found, Layout::pairs, dir)) {
      it.source = source;
      it.split = split;
      items.push_back(std::move(it));
    }
  }
  // A file name present in two splits (train/images/1.png, test/images/1.png) is stored as
  // "<split>/<name>" for every copy, so /names stays unique.
  std::map<std::string, int> uses;
  for (const auto& it : items) ++uses[it.name];
  for (auto& it : items)
    if (uses[it.name] > 1) it.name = std::string(kSplitNames[it.split]) + "/" + it.name;
  return items;
}

std::vector<IngestItem> discover_cfd(const fs::path& dir) {
  const fs::path images = dir / "image", segs = dir / "seg";
  if (!fs::is_directory(images))
    throw InputError(dir.string() + " has no image/ folder (layout cfd expects DIR/image/*.jpg and DIR/seg/*.seg)");
  const auto photos = image_files(images);
  if (photos.empty()) throw InputError("no images found in " + images.string() + " (empty folder)");
  std::vector<IngestItem> items;
  for (const auto& p : photos) {
    IngestItem it;
    it.name = p.filename().string();
    it.image = p;
    it.source = "cfd";
    const fs::path seg = segs / (p.stem().string() + ".seg");
    if (fs::is_regular_file(seg)) it.label = seg;
    else it.problem = "missing mask for " + rel(p, dir) + " (no " + rel(seg, dir) + ")";
    items.push_back(std::move(it));
  }
  mark_duplicate_stems(items, dir);
  return items;
}

struct Decoded {
  EncodedSample sample;
  std::string error;
};

std::string size_text(const cv::Mat& m) { return std::to_string(m.cols) + "x" + std::to_string(m.rows); }

// Decodes, validates and resizes one item to `cv::Mat`s; errors are InputErrors naming files.
std::pair<cv::Mat, cv::Mat> load_pair(const IngestItem& it, const IngestOptions& opt, const fs::path& dir) {
  if (!it.problem.empty()) throw InputError(it.problem);
  cv::Mat img = load_image_rgb(it.image);
  cv::Mat mask = opt.layout == Layout::cfd ? read_seg_mask(it.label, opt.cfd_segments) : load_mask01(it.label);
  if (img.size() != mask.size())
    throw InputError("size mismatch: " + rel(it.image, dir) + " is " + size_text(img) + " but its mask " +
                     rel(it.label, dir) + " is " + size_text(mask));
  if (opt.height > 0) {
    img = resize_image(img, opt.height, opt.width);
    mask = resize_mask(mask, opt.height, opt.width);
  }
  return {img.isContinuous() ? img : img.clone(), mask.isContinuous() ? mask : mask.clone()};
}

// The folders' splits of the written samples; with val_from_train and no val/ folder, a
// stratified, seeded part of train becomes val.
std::array<std::vector<uint32_t>, 3> folder_splits(const std::vector<int>& written_split, const DatasetWriter& w,
                                                   const IngestOptions& opt) {
  std::array<std::vector<uint32_t>, 3> out;
  for (uint32_t i = 0; i < written_split.size(); ++i) out[static_cast<size_t>(written_split[i])].push_back(i);
  if (opt.val_from_train > 0 && out[1].empty() && !out[0].empty()) {
    if (opt.val_from_train >= 1) throw InputError("--val-from-train must be in [0, 1)");
    std::vector<std::string> src;
    for (uint32_t i : out[0]) src.push_back(w.source(i));
    SplitSpec spec;
    spec.fractions = {1 - opt.val_from_train, opt.val_from_train, 0};
    spec.seed = opt.split.seed;
    const auto parts = stratified_split(src, spec);
    std::array<std::vector<uint32_t>, 3> moved;
    for (int s = 0; s < 2; ++s)
      for (uint32_t k : parts[static_cast<size_t>(s)]) moved[static_cast<size_t>(s)].push_back(out[0][k]);
    out[0] = std::move(moved[0]);
    out[1] = std::move(moved[1]);
    std::sort(out[1].begin(), out[1].end());
  }
  return out;
}

}  // namespace

std::vector<IngestItem> discover(const fs::path& dir, Layout layout) {
  if (!fs::is_directory(dir)) throw InputError("input folder " + dir.string() + " does not exist");
  if (layout == Layout::split_folders) return discover_split_folders(dir);
  return layout == Layout::cfd ? discover_cfd(dir) : discover_pairs(dir, layout, dir);
}

IngestResult ingest(const IngestOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto items = discover(opt.dir, opt.layout);
  IngestResult res;
  auto reject = [&](const IngestItem& it, const std::string& why) {
    if (!opt.skip_bad) throw InputError(why + " (use --skip-bad to skip bad files)");
    res.skipped.emplace_back(rel(it.image, opt.dir), why);
  };

  // The first good pair fixes the dataset's size when --size is not given.
  size_t next = 0;
  std::unique_ptr<DatasetWriter> writer;
  std::string first_name;
  uint64_t crack = 0;
  std::vector<int> written_split;  // split-folders: the split of each appended sample
  for (; next < items.size() && !writer; ++next) {
    std::pair<cv::Mat, cv::Mat> pair;
    try {
      pair = load_pair(items[next], opt, opt.dir);
    } catch (const InputError& e) {
      reject(items[next], e.what());
      continue;
    }
    const auto& [img, mask] = pair;
    res.height = img.rows;
    res.width = img.cols;
    // Outside the try: a failure to create the output is not a bad input file.
    writer = std::make_unique<DatasetWriter>(opt.out, img.rows, img.cols);
    auto s = writer->encode(img.data, mask.data, items[next].name, items[next].source);
    crack += s.crack_pixels;
    writer->append(std::move(s));
    written_split.push_back(items[next].split);
    first_name = rel(items[next].image, opt.dir);
  }
  if (!writer) throw InputError("no usable image/mask pair in " + opt.dir.string() + " (all " +
                                std::to_string(items.size()) + " skipped)");
  writer->set_attribute("origin", "crackseg ingest " + opt.dir.string() + " --layout " +
                                      (opt.layout == Layout::pairs           ? "pairs"
                                       : opt.layout == Layout::cfd           ? "cfd"
                                       : opt.layout == Layout::split_folders ? "split-folders"
                                                                             : "crackseg9k"));
  // Read back into every run's result.json (dataset.ingest.options); size 0 = kept.
  writer->set_attribute("ingest_options",
                        nlohmann::json{{"command", "ingest"}, {"dir", opt.dir.string()}, {"height", opt.height},
                                       {"width", opt.width}, {"split", opt.split.fractions},
                                       {"split_seed", opt.split.seed}, {"skip_bad", opt.skip_bad},
                                       {"cfd_segments", opt.cfd_segments}}
                            .dump());

  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
  const size_t batch = static_cast<size_t>(std::max(8, 8 * threads));
  const int cv_threads = cv::getNumThreads();
  cv::setNumThreads(1);  // parallelism is over files; OpenCV's own pool would oversubscribe
  struct RestoreCv {
    int n;
    ~RestoreCv() { cv::setNumThreads(n); }
  } restore{cv_threads};
  for (size_t first = next; first < items.size(); first += batch) {
    const size_t n = std::min(batch, items.size() - first);
    std::vector<Decoded> out(n);
#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (size_t k = 0; k < n; ++k) {
      const IngestItem& it = items[first + k];
      try {
        auto [img, mask] = load_pair(it, opt, opt.dir);
        if (img.rows != res.height || img.cols != res.width)
          throw InputError(rel(it.image, opt.dir) + " is " + size_text(img) + " but " + first_name + " is " +
                           std::to_string(res.width) + "x" + std::to_string(res.height) +
                           ": all images must have one size (use --size to resize)");
        out[k].sample = writer->encode(img.data, mask.data, it.name, it.source);
      } catch (const std::exception& e) {
        out[k].error = e.what();
      }
    }
    for (size_t k = 0; k < n; ++k) {
      if (!out[k].error.empty()) {
        reject(items[first + k], out[k].error);
        continue;
      }
      crack += out[k].sample.crack_pixels;
      writer->append(std::move(out[k].sample));
      written_split.push_back(items[first + k].split);
    }
    throw_if_interrupted();
    if (opt.progress) opt.progress(static_cast<uint32_t>(first + n), static_cast<uint32_t>(items.size()));
  }
  res.written = writer->count();
  // Per-source counts come from the items actually written (skipped ones excluded).
  std::set<std::string> skipped_files;
  for (const auto& [f, why] : res.skipped) skipped_files.insert(f);
  for (const auto& it : items)
    if (!skipped_files.count(rel(it.image, opt.dir))) ++res.per_source[it.source];
  if (opt.layout == Layout::split_folders) writer->set_fixed_splits(folder_splits(written_split, *writer, opt));
  writer->finish(opt.split);
  res.crack_fraction = static_cast<double>(crack) / (double(res.height) * double(res.width) * res.written);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.file_bytes = fs::file_size(opt.out);
  return res;
}

cv::Mat read_seg_mask(const fs::path& path, const std::vector<int>& crack) {
  std::ifstream in(path);
  if (!in) throw InputError("cannot open " + path.string());
  int width = -1, height = -1;
  std::string line;
  size_t lineno = 0;
  bool data = false;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "data") {
      data = true;
      break;
    }
    if (key == "width") ls >> width;
    else if (key == "height") ls >> height;
    else if ((key == "flipflop" || key == "invert")) {
      int v = 0;
      ls >> v;
      if (key == "flipflop" && v != 0)
        throw InputError(path.string() + ":" + std::to_string(lineno) + ": flipflop " + std::to_string(v) + " is not supported");
    }
  }
  if (!data) throw InputError(path.string() + ": no 'data' line (not a Berkeley .seg file, or truncated header)");
  if (width <= 0 || height <= 0)
    throw InputError(path.string() + ": header lacks a positive width and height");
  cv::Mat mask(height, width, CV_8U, cv::Scalar(0));
  cv::Mat seen(height, width, CV_8U, cv::Scalar(0));
  const std::set<int> crack_ids(crack.begin(), crack.end());
  uint64_t covered = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream ls(line);
    long s = 0, r = 0, c0 = 0, c1 = 0;
    if (!(ls >> s >> r >> c0 >> c1) || s < 0 || r < 0 || r >= height || c0 < 0 || c1 < c0 || c1 >= width)
      throw InputError(path.string() + ":" + std::to_string(lineno) + ": bad run '" + line + "' for a " +
                       std::to_string(width) + "x" + std::to_string(height) + " image");
    uint8_t* m = mask.ptr<uint8_t>(static_cast<int>(r));
    uint8_t* v = seen.ptr<uint8_t>(static_cast<int>(r));
    const uint8_t value = crack_ids.count(static_cast<int>(s)) ? 1 : 0;
    for (long c = c0; c <= c1; ++c) {
      if (v[c]) throw InputError(path.string() + ":" + std::to_string(lineno) + ": pixel (" + std::to_string(r) +
                                 ", " + std::to_string(c) + ") labelled twice");
      v[c] = 1;
      m[c] = value;
    }
    covered += static_cast<uint64_t>(c1 - c0 + 1);
  }
  const uint64_t total = static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (covered != total)
    throw InputError(path.string() + ": runs cover " + std::to_string(covered) + " of " + std::to_string(total) +
                     " pixels (truncated file?)");
  return mask;
}

}  // namespace crackseg::io
