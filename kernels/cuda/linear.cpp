// linear on cuBLAS. Row-major (N, I) x (O, I)^T is, in cuBLAS's column-major view,
// y^T (O x N) = W^T' (I x O, transposed) * x^T (I x N): no copies, only transposes flags.
//   forward   y  (N, O) = x W^T + b             Sgemm(T, N) + rank-1 Sgemm with ones(N)
//   backward  dx (N, I) = dy W                  Sgemm(N, N)
//             dW (O, I) += dy^T x               Sgemm(N, T), beta 1
//             db (O)    += dy^T 1               Sgemv, beta 1
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"
#include "kernels/cuda/tensor_ops.hpp"

namespace crackseg::cuda {
namespace {

class Linear final : public CudaLayer {
 public:
  using CudaLayer::CudaLayer;

  void plan(std::span<const Dims> in) override {
    (void)output_dims(in);  // validates (N, in_f)
    const int64_t n = in[0][0];
    ones_.reserve(sizeof(float) * static_cast<std::size_t>(std::max<int64_t>(n, 1)));
    fill_f32(ones_.as<float>(), 1.0f, n);
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& s = as<LinearSpec>();
    expect_input(*in[0], "input");
    const int n = to_int(in[0]->dim(0), name_), i = to_int(s.in_f, name_), o = to_int(s.out_f, name_);
    cublasHandle_t h = ctx_.cublas();
    CRACKSEG_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, o, n, i, &kOne, params_[0].value.data<float>(), i,
                                      in[0]->data<float>(), i, &kZero, out.data<float>(), o));
    if (s.bias)
      CRACKSEG_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, o, n, 1, &kOne, params_[1].value.data<float>(), o,
                                        ones_.as<float>(), 1, &kOne, out.data<float>(), o));
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& s = as<LinearSpec>();
    const int n = to_int(dout.dim(0), name_), i = to_int(s.in_f, name_), o = to_int(s.out_f, name_);
    cublasHandle_t h = ctx_.cublas();
    if (din[0])
      CRACKSEG_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, i, n, o, &kOne, params_[0].value.data<float>(), i,
                                        dout.data<float>(), o, &kZero, din[0]->data<float>(), i));
    CRACKSEG_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, i, o, n, &kOne, in[0]->data<float>(), i,
                                      dout.data<float>(), o, &kOne, params_[0].grad.data<float>(), i));
    if (s.bias)
      CRACKSEG_CUBLAS_CHECK(cublasSgemv(h, CUBLAS_OP_N, o, n, &kOne, dout.data<float>(), o, ones_.as<float>(), 1, &kOne,
                                        params_[1].grad.data<float>(), 1));
  }

 private:
  DevicePtr ones_;  // (N) of 1.0f: bias broadcast and reduction as BLAS calls
};

}  // namespace

std::unique_ptr<Layer> make_linear(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Linear>(s, name);
}

}  // namespace crackseg::cuda
