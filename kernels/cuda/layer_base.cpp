#include "kernels/cuda/layer_base.hpp"

#include <limits>

#include "kernels/cuda/tensor_ops.hpp"

namespace crackseg::cuda {

CudaLayer::CudaLayer(const LayerSpec& spec, std::string name)
    : spec_(spec), name_(std::move(name)), ctx_(Context::get()) {
  for (auto& info : param_infos(spec_)) {
    Param p{name_ + "." + info.suffix, Tensor::empty(info.dims, DType::f32, Format::plain, Device::cuda),
            Tensor::empty(info.dims, DType::f32, Format::plain, Device::cuda), info.decay};
    zero(p.value);
    zero(p.grad);
    params_.push_back(std::move(p));
  }
}

std::vector<Param*> CudaLayer::params() {
  std::vector<Param*> out;
  for (auto& p : params_) out.push_back(&p);
  return out;
}

void CudaLayer::expect_input(const Tensor& t, const char* role) const {
  const std::string what = kind_name(spec_) + " '" + name_ + "' " + role;
  if (t.device() != Device::cuda) throw Error(what + ": expected a cuda tensor, got cpu " + to_string(t.dims()));
  if (t.dtype() != DType::f32) throw Error(what + ": expected f32, got " + to_string(t.dtype()));
  if (t.rank() == 4 && t.format() != Format::nhwc && t.c() > 1 && t.h() * t.w() > 1)
    throw Error(what + ": expected nhwc activations, got " + to_string(t.format()) + " " + to_string(t.dims()));
}

int to_int(int64_t v, const std::string& what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throw Error(what + ": dimension " + std::to_string(v) + " does not fit cuDNN's int");
  return static_cast<int>(v);
}

void set_activation_desc(cudnnTensorDescriptor_t d, const Dims& dims, const std::string& what, cudnnDataType_t type) {
  if (dims.size() == 4) {
    CRACKSEG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, type, to_int(dims[0], what),
                                                    to_int(dims[1], what), to_int(dims[2], what),
                                                    to_int(dims[3], what)));
  } else if (dims.size() == 2) {
    CRACKSEG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, type, to_int(dims[0], what),
                                                    to_int(dims[1], what), 1, 1));
  } else {
    throw Error(what + ": expected a 2-D or 4-D tensor, got " + to_string(dims));
  }
}

void set_flat_desc(cudnnTensorDescriptor_t d, int64_t count, const std::string& what) {
  CRACKSEG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1, to_int(count, what)));
}

void set_channel_desc(cudnnTensorDescriptor_t d, int64_t channels, const std::string& what) {
  CRACKSEG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, 1, to_int(channels, what), 1, 1));
}

}  // namespace crackseg::cuda
