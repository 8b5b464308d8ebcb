// Device tensor utilities the Graph, tests and layers need: host<->device copies, fills,
// accumulation and nchw<->nhwc conversion, all on the context's stream. Functions taking
// Tensors check device, dtype and dims and throw with both shapes.
#pragma once
#include <cstdint>

#include "src/tensor/tensor.hpp"

namespace crackseg::cuda {

// Whether two tensors of the same dims have the same element order: always for rank != 4,
// C == 1 or H*W == 1; otherwise when both or neither are nhwc (plain and nchw coincide).
[[nodiscard]] bool same_layout(const Tensor& a, const Tensor& b);
// New device tensor with the same dims, dtype and format; data copied (blocks until done).
[[nodiscard]] Tensor to_device(const Tensor& host);
// New CPU tensor with the same dims, dtype and format (blocks until the copy is done).
[[nodiscard]] Tensor to_host(const Tensor& device);
// dst <- src for any device pair; same dims, dtype and layout (same_layout).
void copy(const Tensor& src, Tensor& dst);
// Host -> device without draining a stream: the host data is copied into one of a small
// ring of pinned staging buffers (the host may reuse or free `host` on return), the DMA runs
// on the context's copy stream into the slot's device buffer, overlapping the compute
// stream's earlier work, and the compute stream waits for it (an event) and copies the slot
// into `dst` in its own order, so every later kernel sees the data and no earlier one still
// reading `dst` is overwritten. A slot is reused only after its previous DMA (host wait) and
// its previous consumer (copy-stream wait) have finished (staging_ring.hpp).
// Same checks as copy(); host f32/any dtype, dst a device tensor.
void upload_async(const Tensor& host, Tensor& dst);
void zero(Tensor& t);              // any dtype, device or host
void fill(Tensor& t, float value);  // f32 device tensor
void accumulate(Tensor& dst, const Tensor& src);  // dst += src, f32 device, same dims
// Converts a 4-D f32 device tensor between nchw and nhwc (dst's format says which).
void convert_format(const Tensor& src, Tensor& dst);

// Raw launchers (context stream). dst = permute(src) + beta * dst, beta 0 or 1.
//   nchw_to_nhwc: src (N, C, S) -> dst (N, S, C);  nhwc_to_nchw: src (N, S, C) -> dst (N, C, S)
// A conv weight (O, I, kh, kw) -> (O, kh, kw, I) is nchw_to_nhwc with N=O, C=I, S=kh*kw.
void nchw_to_nhwc(const float* src, float* dst, int64_t n, int64_t c, int64_t s, float beta);
void nhwc_to_nchw(const float* src, float* dst, int64_t n, int64_t c, int64_t s, float beta);
void add_into(float* dst, const float* src, int64_t count);  // dst += src
void fill_f32(float* dst, float value, int64_t count);

}  // namespace crackseg::cuda
