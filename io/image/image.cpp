#include "io/image/image.hpp"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <vector>

#include "src/core/error.hpp"

namespace crackseg::io {

namespace {

std::string lower_ext(const std::filesystem::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e;
}

std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot open " + path.string() + (std::filesystem::exists(path) ? " (permission?)" : " (no such file)"));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw InputError(path.string() + " is empty (0 bytes)");
  return bytes;
}

// libjpeg decodes a truncated JPEG with only a warning (grey fill below the cut), and some
// libpng builds tolerate a missing tail, so check the container's end marker ourselves.
void check_not_truncated(const std::filesystem::path& path, const std::vector<uint8_t>& b) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (b.size() >= 8 && std::equal(png_sig, png_sig + 8, b.begin())) {
    // IEND is the last chunk: "IEND" + 4-byte CRC ends the file.
    const char iend[4] = {'I', 'E', 'N', 'D'};
    const size_t tail = std::min<size_t>(b.size(), 64);
    if (std::search(b.end() - static_cast<long>(tail), b.end(), iend, iend + 4) == b.end())
      throw InputError(path.string() + " is truncated (PNG without its IEND chunk)");
    return;
  }
  if (b.size() >= 2 && b[0] == 0xFF && b[1] == 0xD8) {
    // EOI (FF D9) cannot occur inside entropy-coded data (FF is stuffed), so a missing EOI in
    // the tail means the file was cut. Some writers pad after EOI: look at the last 1 KiB.
    const size_t tail = std::min<size_t>(b.size(), 1024);
    const uint8_t eoi[2] = {0xFF, 0xD9};
    if (std::search(b.end() - static_cast<long>(tail), b.end(), eoi, eoi + 2) == b.end())
      throw InputError(path.string() + " is truncated (JPEG without its end-of-image marker)");
  }
}

cv::Mat decode(const std::filesystem::path& path, int flags) {
  const auto bytes = read_bytes(path);
  check_not_truncated(path, bytes);
  cv::Mat m;
  try {
    m = cv::imdecode(bytes, flags);
  } catch (const cv::Exception& e) {
    throw InputError("cannot decode " + path.string() + ": " + e.what());
  }
  if (m.empty() || m.rows == 0 || m.cols == 0)
    throw InputError("cannot decode " + path.string() + " (not an image, or a format OpenCV cannot read)");
  return m;
}

}  // namespace

bool is_image_file(const std::filesystem::path& path) {
  const std::string e = lower_ext(path);
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".tif" || e == ".tiff";
}

cv::Mat load_image_rgb(const std::filesystem::path& path) {
  cv::Mat m = decode(path, cv::IMREAD_UNCHANGED);
  if (m.depth() == CV_16U) m.convertTo(m, CV_8U, 1.0 / 257.0);
  else if (m.depth() != CV_8U)
    throw InputError(path.string() + ": unsupported pixel depth (OpenCV depth " + std::to_string(m.depth()) + ")");
  cv::Mat rgb;
  switch (m.channels()) {
    case 1: cv::cvtColor(m, rgb, cv::COLOR_GRAY2RGB); break;
    case 3: cv::cvtColor(m, rgb, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(m, rgb, cv::COLOR_BGRA2RGB); break;  // alpha dropped: colour is the photo
    default:
      throw InputError(path.string() + ": unsupported channel count " + std::to_string(m.channels()));
  }
  return rgb;
}

cv::Mat mask_to01(const cv::Mat& decoded, const std::string& what) {
  cv::Mat m = decoded;
  if (m.empty()) throw InputError("mask " + what + " is empty");
  double threshold = 127.0;
  if (m.depth() == CV_16U) threshold = 32767.0;
  else if (m.depth() == CV_8U || m.depth() == CV_8S) {
  } else if (m.depth() == CV_32F || m.depth() == CV_64F) {
    threshold = 0.5;  // float masks (TIFF) in [0, 1]
  } else {
    throw InputError("mask " + what + ": unsupported pixel depth (OpenCV depth " + std::to_string(m.depth()) + ")");
  }
  cv::Mat gray;
  if (m.channels() == 1) {
    gray = m;
  } else if (m.channels() == 3 || m.channels() == 4) {
    std::vector<cv::Mat> ch;
    cv::split(m, ch);
    if (m.channels() == 4 && cv::countNonZero(ch[3]) == 0)
      throw InputError("mask " + what + " has no usable values (alpha is 0 everywhere)");
    // The brightest colour channel: grey masks stored as RGB read as their grey value, and a
    // coloured crack label (pure red, say) counts as crack too.
    cv::max(ch[0], ch[1], gray);
    cv::max(gray, ch[2], gray);
  } else {
    throw InputError("mask " + what + ": unsupported channel count " + std::to_string(m.channels()));
  }
  cv::Mat out;
  cv::compare(gray, threshold, out, cv::CMP_GT);  // 255 where crack
  if (cv::countNonZero(out) == static_cast<int>(out.total()))
    throw InputError("mask " + what + " has no usable values: every pixel is crack (blank or inverted mask)");
  out /= 255;
  return out;
}

cv::Mat load_mask01(const std::filesystem::path& path) {
  // IMREAD_UNCHANGED keeps 1-bit PNGs as 0/255 grey, 16-bit as 16-bit and RGBA as 4 channels.
  return mask_to01(decode(path, cv::IMREAD_UNCHANGED), path.string());
}

cv::Mat resize_image(const cv::Mat& rgb, int height, int width) {
  if (rgb.rows == height && rgb.cols == width) return rgb;
  cv::Mat out;
  // INTER_AREA averages when shrinking; when enlarging OpenCV falls back to bilinear-like.
  cv::resize(rgb, out, cv::Size(width, height), 0, 0, cv::INTER_AREA);
  return out;
}

cv::Mat resize_mask(const cv::Mat& mask01, int height, int width) {
  if (mask01.rows == height && mask01.cols == width) return mask01;
  cv::Mat out;
  cv::resize(mask01, out, cv::Size(width, height), 0, 0, cv::INTER_NEAREST);
  return out;
}

void save_image_rgb(const std::filesystem::path& path, const uint8_t* rgb, int height, int width) {
  const cv::Mat view(height, width, CV_8UC3, const_cast<uint8_t*>(rgb));
  cv::Mat bgr;
  cv::cvtColor(view, bgr, cv::COLOR_RGB2BGR);
  if (!cv::imwrite(path.string(), bgr)) throw Error("cannot write image " + path.string());
}

void save_mask01(const std::filesystem::path& path, const uint8_t* mask, int height, int width) {
  const cv::Mat view(height, width, CV_8U, const_cast<uint8_t*>(mask));
  cv::Mat out = view * 255;
  if (!cv::imwrite(path.string(), out)) throw Error("cannot write mask " + path.string());
}

}  // namespace crackseg::io
